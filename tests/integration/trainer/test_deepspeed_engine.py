"""engine.sharding deepspeed: ZeRO-2/3 on 2 CPU Ray workers (gloo), held to the single-process update.

Mirrors test_ray_engine.py (same probe, same batch, same tolerance). DeepSpeed is optional
(the gpu extra); without it these tests are skipped. Its first use compiles a small C++ op
(about a minute), cached afterwards.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tests.integration.trainer.ray_probe import ADVANTAGES, LENGTHS, UPDATE
from tests.integration.trainer.test_ray_engine import (
    _assert_same_update,
    _config,
    _probe,
)
from tests.unit.trainer.algo.conftest import make_rollouts
from trainer.config import TrainConfig
from trainer.engine.build import build_local_policy, build_processor_for

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (pip install 'triune[gpu]')",
)


def _zero_config(root: Path, stage: int) -> TrainConfig:
    config = _config(root, sharding="deepspeed", zero_stage=stage)
    data = json.loads(config.model_dump_json())
    data["model"]["lr"]["connector"] = 3e-3  # per-group learning rates: the connector's differs
    return TrainConfig.model_validate(data, strict=False)


@pytest.mark.parametrize("stage", [2, 3])
def test_two_zero_workers_update_the_weights_as_one_process_does(
    ray_head, synth_dir, tmp_path, stage
) -> None:
    metrics, _ = _assert_same_update(ray_head, _zero_config(synth_dir, stage), tmp_path)
    # ZeRO keeps the gradients in flat partitions: no per-layer norms
    assert not [k for k in metrics if k.startswith("grad_norm/")]


def test_two_zero3_workers_on_packed_rows_update_as_one_process(ray_head, synth_dir, tmp_path) -> None:
    data = json.loads(_zero_config(synth_dir, 3).model_dump_json())
    data["algo"]["remove_padding"] = True  # the packed forward through DeepSpeed's engine
    _assert_same_update(ray_head, TrainConfig.model_validate(data, strict=False), tmp_path)


def test_a_checkpoint_of_two_zero3_workers_resumes_in_one_process_and_back(
    ray_head, synth_dir, tmp_path
) -> None:
    config = _zero_config(synth_dir, 3)
    result = _probe(ray_head, "save", config, tmp_path)
    assert "error" not in result, result.get("error")
    assert (tmp_path / "policy" / "config.json").is_file() and (tmp_path / "optimizer.pt").is_file()
    optimizer = torch.load(tmp_path / "optimizer.pt", weights_only=True)
    assert optimizer["scheduler"]["last_epoch"] == 1
    state = optimizer["optimizer"]["state"]
    assert state and all(isinstance(name, str) for name in state)  # keyed by parameter name
    assert [group["name"] for group in optimizer["optimizer"]["param_groups"]] == ["connector", "llm"]

    # one process, no DeepSpeed: the same weights, and Adam's moments came along
    processor = build_processor_for(config)
    local_config = TrainConfig.model_validate(
        json.loads(config.model_dump_json()) | {"engine": {}}, strict=False
    )
    local = build_local_policy(local_config, processor, torch.device("cpu"))
    local.load(tmp_path)
    saved = result["weights"]
    loaded = local.model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    exp_avg = {id(p): n for n, p in local.model.named_parameters()}
    for param, values in local.optimizer.state.items():
        assert torch.equal(values["exp_avg"], state[exp_avg[id(param)]]["exp_avg"])
    metrics = local.update(make_rollouts(processor, LENGTHS, seed=1), ADVANTAGES, UPDATE)
    assert metrics["actor/optimizer_steps"] == 2.0

    # and back: the one-process checkpoint (optimizer keyed by position) loads into 2 ZeRO-2 workers
    back = tmp_path / "back"
    back.mkdir()
    local.save(back)
    result = _probe(ray_head, "load", _zero_config(synth_dir, 2), back)
    assert "error" not in result, result.get("error")
    after = local.model.state_dict()
    assert all(torch.equal(result["loaded"][k], after[k]) for k in after)
    want = local.update(make_rollouts(processor, LENGTHS, seed=1), ADVANTAGES, UPDATE)
    got = result["next_metrics"]
    assert got["actor/optimizer_steps"] == 2.0
    # the same step from the same state: the moments and the schedule were restored
    assert got["actor/grad_norm"] == pytest.approx(want["actor/grad_norm"], rel=1e-4)
    assert got["actor/lr"] == want["actor/lr"]
