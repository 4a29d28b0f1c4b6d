"""engine.kind ray: data-parallel workers on a real Ray head, held to the single-process update.

The engine runs in a process of its own joined to the session's head (as the trainer does
inside a Ray job, see ray_probe.py); the single-process reference runs here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.integration.trainer.conftest import small_config
from tests.integration.trainer.ray_probe import ADVANTAGES, LENGTHS, update_for
from tests.unit.trainer.algo.conftest import make_rollouts
from trainer.checkpoint import latest_complete
from trainer.config import TrainConfig
from trainer.engine.build import build_local_policy, build_processor_for

ROOT = Path(__file__).resolve().parents[3]


def _config(root: Path, prompts: int = 2, **engine: object) -> TrainConfig:
    data = small_config(root, engine={"kind": "ray", "workers": 2, "timeout_s": 120, **engine})
    data["rollout"]["prompts_per_step"] = prompts
    data["model"]["freeze"] = ["vit"]  # the connector trains too: more of the model is compared
    data["algo"]["lr"] = 1e-3  # a visible step
    return TrainConfig.model_validate(data, strict=False)


def _probe(ray_head, action: str, config: TrainConfig, tmp_path: Path) -> dict:
    out = tmp_path / f"{action}.pt"
    env = ray_head.head.environment() | {"RAY_ADDRESS": f"127.0.0.1:{ray_head.head.ports['gcs']}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.trainer.ray_probe",
            action,
            config.model_dump_json(),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out, weights_only=False)


def _single_process(config: TrainConfig) -> tuple[dict[str, torch.Tensor], dict[str, float], dict]:
    processor = build_processor_for(config)
    local = TrainConfig.model_validate(json.loads(config.model_dump_json()) | {"engine": {}}, strict=False)
    policy = build_local_policy(local, processor, torch.device("cpu"))
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    metrics = policy.update(make_rollouts(processor, LENGTHS), ADVANTAGES, update_for(config))
    return policy.model.state_dict(), metrics, before


def _assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], before: dict) -> None:
    """Equal up to float summation order, which Adam amplifies only where a gradient is ~eps.

    Adam's first steps move a weight by about lr in the gradient's sign, so a gradient element
    near 0 may flip sign between two summation orders: such elements are allowed, but they must
    be rare (< 0.1 %) and their difference small next to the step (< 5 %). A wrong reduction
    (a mean instead of a sum, a worker's share missing) moves most elements elsewhere.
    """
    assert set(got) == set(want)
    step = max(float((want[k] - before[k]).abs().max()) for k in want)
    moved = [k for k in want if not torch.allclose(want[k], before[k], atol=1e-6)]
    assert len(moved) > 10 and step > 1e-4  # the update moved the weights: the comparison means something
    differing = total = 0
    for key in want:
        difference = (got[key].float() - want[key].float()).abs()
        assert float(difference.max()) < 0.05 * step, key
        differing += int((difference > 1e-6).sum())
        total += difference.numel()
    assert differing < 1e-3 * total, f"{differing} of {total} elements differ"


def _assert_same_update(ray_head, config, tmp_path: Path) -> tuple[dict, dict]:
    """Two workers' update of ``config`` against one process's: weights and actor metrics equal.

    Returns both metric dicts for checks of their own.
    """
    want, want_metrics, before = _single_process(config)
    result = _probe(ray_head, "update", config, tmp_path)
    assert "error" not in result, result.get("error")
    _assert_same_weights(result["weights"], want, before)
    metrics = result["metrics"]
    assert metrics["actor/optimizer_steps"] == want_metrics["actor/optimizer_steps"] == 2.0
    for key in ("actor/pg_loss", "actor/entropy", "actor/clipfrac", "actor/grad_norm", "actor/ppo_kl"):
        assert metrics[key] == pytest.approx(want_metrics[key], rel=1e-4, abs=1e-6), key
    return metrics, want_metrics


@pytest.mark.parametrize("sharding", ["none", "fsdp"])
def test_two_workers_update_the_weights_as_one_process_does(ray_head, synth_dir, tmp_path, sharding) -> None:
    metrics, want_metrics = _assert_same_update(ray_head, _config(synth_dir, sharding=sharding), tmp_path)
    layers = [k for k in want_metrics if k.startswith("grad_norm/")]
    assert layers and all(metrics[k] == pytest.approx(want_metrics[k], rel=1e-4, abs=1e-7) for k in layers)


@pytest.mark.parametrize(
    "algo",
    [
        {"remove_padding": True},  # packed rows, attended sequence by sequence
        {"micro_batch_tokens": 120},  # each worker cuts its share its own way; all run the most passes
    ],
    ids=["packed", "token-budget"],
)
def test_two_fsdp_workers_update_as_one_process_with_padding_options(
    ray_head, synth_dir, tmp_path, algo
) -> None:
    data = json.loads(_config(synth_dir, sharding="fsdp").model_dump_json())
    data["algo"].update(algo)
    _assert_same_update(ray_head, TrainConfig.model_validate(data, strict=False), tmp_path)


def test_a_checkpoint_of_two_sharded_workers_resumes_on_one(ray_head, synth_dir, tmp_path) -> None:
    result = _probe(ray_head, "save_then_resume", _config(synth_dir, sharding="fsdp"), tmp_path)
    assert "error" not in result, result.get("error")
    assert (tmp_path / "policy" / "config.json").is_file() and (tmp_path / "optimizer.pt").is_file()
    saved, loaded = result["weights"], result["loaded"]
    assert saved.keys() == loaded.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    # the optimizer's moments came along: Adam's second step is not its first
    assert result["next_metrics"]["actor/optimizer_steps"] == 2.0
    optimizer = torch.load(tmp_path / "optimizer.pt", weights_only=True)
    assert optimizer["scheduler"]["last_epoch"] == 1 and optimizer["optimizer"]["state"]


def test_more_workers_than_the_cluster_holds_is_refused_before_placement(
    ray_head, synth_dir, tmp_path
) -> None:
    result = _probe(ray_head, "start", _config(synth_dir, prompts=8, workers=8, cpus_per_worker=1), tmp_path)
    assert "8 workers × 1 CPU = 8 CPU, but the Ray cluster has 2" in result["error"]
    assert "engine.cpus_per_worker" in result["error"]
    result = _probe(ray_head, "start", _config(synth_dir, workers=1, gpus_per_worker=1), tmp_path)
    assert "1 workers × 1 GPU = 1 GPU, but the Ray cluster has 0" in result["error"]


def test_a_worker_that_dies_mid_step_fails_the_step_with_a_clear_message(
    ray_head, synth_dir, tmp_path
) -> None:
    result = _probe(ray_head, "kill", _config(synth_dir), tmp_path)
    assert result["error"].startswith("a training worker died during the update"), result["error"]


def _train(ray_head, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = ray_head.head.environment() | {"RAY_ADDRESS": f"127.0.0.1:{ray_head.head.ports['gcs']}"}
    command = [sys.executable, "-m", "trainer", "train", "--threads", "1", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _steps(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted({obj["step"] for obj in map(json.loads, lines) if "event" not in obj and obj.get("step")})


def test_the_train_command_trains_on_two_workers_and_resumes_on_one(
    ray_head, synth_dir, tmp_path, write_config
) -> None:
    engine = {"kind": "ray", "workers": 2, "timeout_s": 120}
    config = write_config(synth_dir, engine=engine, total_steps=3, reward={"workers": 1})
    out = tmp_path / "out"
    first = _train(ray_head, "--config", str(config), "--output-dir", str(out), "--steps", "2", cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "train: finished 2 step(s)" in first.stdout
    assert _steps(out) == [1, 2]
    checkpoint = out / "checkpoints" / "step_00000002"
    assert (checkpoint / "policy" / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
    assert "model" not in torch.load(checkpoint / "trainer_state.pt", weights_only=True)

    # the same run on one worker continues at step 3 (the engine is not part of the config's identity)
    one = write_config(synth_dir, engine=engine | {"workers": 1}, total_steps=3, reward={"workers": 1})
    second = _train(ray_head, "--config", str(one), "--output-dir", str(out), "--resume", "latest", cwd=ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from {checkpoint} at step 2" in second.stdout
    assert _steps(out) == [1, 2, 3]


def _policy_workers() -> list[psutil.Process]:
    """The processes of the Ray actors holding the policy (their title names the class)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("PolicyWorker" in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def test_a_worker_killed_mid_run_stops_the_run_and_the_last_checkpoint_resumes(
    ray_head, synth_dir, tmp_path, write_config
) -> None:
    engine = {"kind": "ray", "workers": 2, "timeout_s": 120}
    config = write_config(
        synth_dir, engine=engine, total_steps=40, checkpoint={"every": 1}, reward={"workers": 1}
    )
    out = tmp_path / "out"
    env = ray_head.head.environment() | {"RAY_ADDRESS": f"127.0.0.1:{ray_head.head.ports['gcs']}"}
    command = [sys.executable, "-m", "trainer", "train", "--threads", "1", "--config", str(config)]
    trainer = subprocess.Popen(
        [*command, "--output-dir", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints" / "step_00000002" / "COMPLETE").exists():
            assert trainer.poll() is None, trainer.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no second checkpoint within 300 s"
            time.sleep(0.2)
        workers = _policy_workers()
        assert len(workers) == 2
        workers[1].kill()
        _, err = trainer.communicate(timeout=300)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 1, err[-3000:]
    assert "a training worker died" in err and "with --resume latest" in err
    done = _steps(out)
    last = latest_complete(out / "checkpoints")
    assert last is not None and last.step >= 2 and done[-1] in (last.step, last.step + 1)

    resumed = _train(
        ray_head, "--config", str(config), "--output-dir", str(out), "--resume", "latest", cwd=ROOT
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {last.path} at step {last.step}" in resumed.stdout
    assert _steps(out) == list(range(1, 41))


def test_the_trainer_runs_as_a_ray_job_on_its_workers(ray_head, synth_dir, tmp_path, write_config) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    engine = {"kind": "ray", "workers": 2, "timeout_s": 120}
    config = write_config(synth_dir, engine=engine, total_steps=2, reward={"workers": 1})
    out = tmp_path / "job"
    client = JobSubmissionClient(f"http://127.0.0.1:{ray_head.dashboard_port}", headers=ray_head.headers)
    job = client.submit_job(
        entrypoint=f"python -m trainer train --threads 1 --config {config} --output-dir {out}",
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}},
    )
    deadline = time.monotonic() + 300
    while (status := client.get_job_status(job)) not in (
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    ):
        assert time.monotonic() < deadline, "the job did not finish within 300 s"
        time.sleep(0.5)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "train: finished 2 step(s)" in logs
    assert _steps(out) == [1, 2]


def test_workers_that_cannot_be_placed_beside_the_entrypoint_say_what_is_free(
    ray_head, synth_dir, tmp_path, write_config
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    # the entrypoint holds 1 of the head's 2 CPUs: 2 workers of 1 CPU fit the cluster, not what is free
    engine = {"kind": "ray", "workers": 2, "timeout_s": 5}
    config = write_config(synth_dir, engine=engine, total_steps=2, reward={"workers": 1})
    client = JobSubmissionClient(f"http://127.0.0.1:{ray_head.dashboard_port}", headers=ray_head.headers)
    job = client.submit_job(
        entrypoint=f"python -m trainer train --threads 1 --config {config} --output-dir {tmp_path / 'out'}",
        entrypoint_num_cpus=1,
    )
    deadline = time.monotonic() + 300
    finished = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
    while (status := client.get_job_status(job)) not in finished:
        assert time.monotonic() < deadline, "the job did not finish within 300 s"
        time.sleep(0.5)
    logs = client.get_job_logs(job)
    assert status == JobStatus.FAILED, logs[-3000:]
    assert "2 workers could not be placed within 5 s: 1 of the 2 CPU needed free" in logs, logs[-3000:]
    assert "lower engine.cpus_per_worker or engine.workers" in logs


def test_scoring_actors_score_as_the_local_pool_and_survive_a_killed_actor(
    ray_head, synth_dir, tmp_path
) -> None:
    from tests.integration.trainer.scoring_probe import REQUESTS, summary
    from trainer.rewards import RewardPool

    config = _config(synth_dir, workers=1)
    config = TrainConfig.model_validate(
        config.model_dump()
        | {"reward": config.reward.model_dump() | {"actors": 2, "cpus_per_actor": 0.25, "workers": 1}}
    )
    out = tmp_path / "scores.json"
    env = ray_head.head.environment() | {"RAY_ADDRESS": f"127.0.0.1:{ray_head.head.ports['gcs']}"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.trainer.scoring_probe", config.model_dump_json(), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    with RewardPool(workers=1, timeout_s=config.reward.timeout_s) as pool:
        want = summary(pool.score(REQUESTS))
    assert result["first"] == want
    assert {r["rewards"]["accuracy_reward"] for r in want} == {0.0, 1.0}  # the comparison means something
    # The killed actor was restarted by Ray and scored its share again.
    assert result["second"] == want
    assert result["after"][0] != result["pids"][0] and result["after"][1] == result["pids"][1]


def test_the_train_command_scores_on_actors(ray_head, synth_dir, tmp_path, write_config) -> None:
    engine = {"kind": "ray", "workers": 1, "timeout_s": 120}
    reward = {"workers": 1, "actors": 2, "cpus_per_actor": 0.25}
    config = write_config(synth_dir, engine=engine, total_steps=2, reward=reward)
    out = tmp_path / "out"
    done = _train(ray_head, "--config", str(config), "--output-dir", str(out), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train: finished 2 step(s)" in done.stdout
    assert _steps(out) == [1, 2]
    rewards = [
        obj for obj in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if obj.get("key") == "reward/final" and obj.get("source")
    ]  # fmt: skip
    assert rewards and all(r["value"] is not None for r in rewards)
