"""A non-finite loss skips the optimizer step and is counted; ``algo.max_nan_steps`` in a row stop the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import trainer.engine.build as build_module
from trainer.__main__ import main
from trainer.config import build_run_spec, config_from_dict
from trainer.engine import TrainingStopped, open_session, run_loop

from .conftest import small_config

STOP_MESSAGE = (
    "stopped at step 2: 2 steps in a row had a NaN/Inf loss or gradient norm (algo.max_nan_steps = 2); "
    "lower algo.lr, check the data of the last steps, or train in float32"
)


class NanSwitch:
    """A forward hook on the LM head that turns its output to NaN in gradient-enabled forwards.

    Generation and the old-log-prob recompute run without gradients and stay finite; only the
    training forward, hence the loss, becomes NaN.
    """

    def __init__(self) -> None:
        self.on = True

    def __call__(self, module, inputs, output):
        if self.on and torch.is_grad_enabled():
            return output * float("nan")
        return output

    def install(self, model) -> None:
        model.get_output_embeddings().register_forward_hook(self)


def _session(synth_dir: Path, tmp_path: Path, **sections):
    config = config_from_dict(small_config(synth_dir, reward={"workers": 1}, **sections))
    spec = build_run_spec(config, run_id="nan-test")
    return open_session(config, list(spec.sources), output_dir=tmp_path / "out")


def _events(path: Path) -> Iterator[dict]:
    for line in path.read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if "event" in obj:
            yield obj


def test_a_nan_step_is_skipped_counted_and_the_run_goes_on(synth_dir: Path, tmp_path: Path) -> None:
    switch = NanSwitch()
    with _session(synth_dir, tmp_path, algo={"max_nan_steps": 2}) as session:
        state = session.state
        switch.install(state.policy.model)
        before = {k: v.clone() for k, v in state.policy.model.state_dict().items()}
        first = run_loop(session, max_steps=1)
        assert first.skipped_updates == 1
        assert (state.step, state.nan_streak, state.skipped_total) == (1, 1, 1)
        assert first.last_metrics[(None, "actor/skipped_steps")] == 1.0
        assert first.last_metrics[(None, "actor/optimizer_steps")] == 0.0
        assert (None, "actor/pg_loss") not in first.last_metrics  # NaN is omitted, never logged
        after = state.policy.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # the optimizer step was skipped

        switch.on = False
        rest = run_loop(session, max_steps=2)
        assert rest.skipped_updates == 0 and (state.step, state.nan_streak, state.skipped_total) == (3, 0, 1)
        assert rest.last_metrics[(None, "actor/skipped_steps")] == 0.0
        assert rest.last_metrics[(None, "actor/optimizer_steps")] == 1.0
        assert any(not torch.equal(before[k], v) for k, v in state.policy.model.state_dict().items())
    nan_events = [e for e in _events(tmp_path / "out" / "metrics.jsonl") if e["event"] == "nan_step"]
    assert [(e["step"], e["message"]) for e in nan_events] == [
        (
            1,
            "non-finite loss or gradient norm: 1 optimizer step(s) skipped "
            "(1 step(s) in a row; the run stops at 2)",
        )
    ]


def test_max_nan_steps_in_a_row_stop_the_run(synth_dir: Path, tmp_path: Path) -> None:
    with _session(synth_dir, tmp_path, algo={"max_nan_steps": 2}) as session:
        NanSwitch().install(session.state.policy.model)
        with pytest.raises(TrainingStopped) as stopped:
            run_loop(session)
        assert str(stopped.value) == STOP_MESSAGE
        assert session.state.step == 2
    events = list(_events(tmp_path / "out" / "metrics.jsonl"))
    assert [e["event"] for e in events] == ["nan_step", "nan_step", "stopped"]
    assert events[-1]["message"] == STOP_MESSAGE


def test_the_command_exits_1_with_the_message(
    synth_dir: Path, tmp_path: Path, write_config, monkeypatch, capsys
) -> None:
    build = build_module.build_model

    def build_with_nan(config, device):
        model = build(config, device)
        NanSwitch().install(model)
        return model

    monkeypatch.setattr(build_module, "build_model", build_with_nan)
    config = write_config(synth_dir, algo={"max_nan_steps": 2}, reward={"workers": 1})
    code = main(["train", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines()[-1] == f"train: {STOP_MESSAGE}"
    assert "[nan_step] step 2: non-finite loss" in captured.out
