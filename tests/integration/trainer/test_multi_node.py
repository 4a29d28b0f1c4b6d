"""Two Ray nodes that share no folder: the workers on one, the driver on the other, outputs on S3.

The warm-started model, and the copy of a ``model.path`` URI, are written on the driver's node and
sent to the workers. Both nodes run on this machine (a head with no CPU for the driver, a node
with 2 CPUs for the workers); the run's folders are the S3 server's, and what crosses between the
nodes goes through Ray. The run stops after step 2, resumes (staging emptied, as on a new driver
node), and ends with the weights of the same run trained straight on one node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3_server import BUCKET, empty_bucket, s3_options
from trainer.checkpoint import list_complete
from trainer.checkpoint.remote import STAGING_ENV
from trainer.models import save_tiny

from .conftest import checkpoint_state

ROOT = Path(__file__).resolve().parents[3]
ENGINE = {"kind": "ray", "workers": 2, "timeout_s": 120}


@pytest.fixture(scope="module")
def two_nodes():
    """A head with 0 CPUs (the driver attaches to it) and a node with 2 CPUs (the workers go there)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def _train(address: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "trainer", "train", "--threads", "1", *args]
    env = dict(os.environ) | env | {"RAY_ADDRESS": address}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _weights_and_moments(checkpoint) -> tuple[dict, dict]:
    state = checkpoint_state(checkpoint)
    return state["model"], state["optimizer"]["state"]


def test_workers_on_another_node_checkpoint_to_s3_and_resume(
    two_nodes, ray_head, s3_endpoint, synth_dir, tmp_path, write_config
) -> None:
    options = s3_options(s3_endpoint)
    s3 = empty_bucket(options)
    staging = tmp_path / "staging"
    env = {f"FSSPEC_S3_{key.upper()}": value for key, value in options.items()} | {STAGING_ENV: str(staging)}
    config = write_config(
        synth_dir,
        engine=ENGINE,
        total_steps=3,
        reward={"workers": 1},
        checkpoint={"every": 2},
        warm_start={"steps": 2, "batch_size": 4},  # its model is written on the driver's node only
    )
    uri = f"s3://{BUCKET}/runs/9/output"

    first = _train(two_nodes, env, "--config", str(config), "--output-dir", uri, "--steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 of 2 workers on other nodes than the driver" in first.stdout
    assert "warm_start is on the driver's node only: sent to 2 worker(s)" in first.stdout
    shutil.rmtree(staging)  # the next attempt's driver is on a node that never saw the run
    second = _train(two_nodes, env, "--config", str(config), "--output-dir", uri, "--resume", "latest")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "copied the checkpoint of step 2" in second.stdout and "at step 2" in second.stdout
    assert "warm-start: reusing" in second.stdout  # copied down from S3 with the other outputs
    assert "sent to 2 worker(s)" in second.stdout
    assert "train: finished 1 step(s)" in second.stdout

    here = tmp_path / "from-s3"
    s3.invalidate_cache()
    s3.get(f"{BUCKET}/runs/9/output/", str(here), recursive=True)
    got = list_complete(here / "checkpoints", verify_hashes=True)
    assert [c.step for c in got] == [2, 3]

    # the same run straight on one node, both workers beside the driver
    ray_env = ray_head.head.environment() | {STAGING_ENV: str(staging)}
    straight = tmp_path / "straight"
    ray_address = f"127.0.0.1:{ray_head.head.ports['gcs']}"
    done = _train(ray_address, ray_env, "--config", str(config), "--output-dir", str(straight))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "other nodes than the driver" not in done.stdout
    want = list_complete(straight / "checkpoints")[-1]
    weights, moments = _weights_and_moments(got[-1])
    want_weights, want_moments = _weights_and_moments(want)
    assert weights.keys() == want_weights.keys()
    for name in weights:
        assert (weights[name] - want_weights[name]).abs().max().item() < 1e-6, name
    assert moments.keys() == want_moments.keys()


def test_a_model_on_s3_reaches_the_workers_on_another_node(
    two_nodes, s3_endpoint, synth_dir, tmp_path, write_config
) -> None:
    options = s3_options(s3_endpoint)
    s3 = empty_bucket(options)
    s3.put(str(save_tiny(tmp_path / "model", arch="qwen2_vl")), f"{BUCKET}/models/tiny", recursive=True)
    env = {f"FSSPEC_S3_{key.upper()}": value for key, value in options.items()}
    env |= {STAGING_ENV: str(tmp_path / "staging")}
    uri = f"s3://{BUCKET}/models/tiny"
    config = write_config(synth_dir, engine=ENGINE, total_steps=1, reward={"workers": 1}, model={"path": uri})
    done = _train(two_nodes, env, "--config", str(config), "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"train: model.path {uri}: copying" in done.stdout  # to the driver's node
    assert "is on the driver's node only: sent to 2 worker(s)" in done.stdout
    assert "train: finished 1 step(s)" in done.stdout
