"""After the first rollouts the run warns when predicted boxes lie outside the configured frame."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from trainer.config import build_run_spec, config_from_dict
from trainer.engine import open_session, run_loop

from .conftest import small_config

DETECTION = ("synth_detection", "synth_grounding")


class BoxWriter:
    """Wraps a rollout backend: every response's text becomes an answer with the given boxes."""

    def __init__(self, backend, boxes: list[list[int]]) -> None:
        self.backend = backend
        items = ", ".join(f"{{'bbox_2d': {box}, 'label': 'circle'}}" for box in boxes)
        self.text = f"<think>\nx\n</think>\n<answer>\n[{items}]\n</answer>"

    def generate(self, prompts, **kwargs):
        return [
            dataclasses.replace(r, response_text=self.text) for r in self.backend.generate(prompts, **kwargs)
        ]


def _run(synth_dir: Path, tmp_path: Path, boxes: list[list[int]], console: bool):
    data = small_config(synth_dir, DETECTION, reward={"workers": 1}, tracking={"console": console})
    data["total_steps"] = 2
    config = config_from_dict(data)
    spec = build_run_spec(config, run_id="frame")
    with open_session(config, list(spec.sources), output_dir=tmp_path / "out") as session:
        session.runtime = dataclasses.replace(
            session.runtime, backend=BoxWriter(session.runtime.backend, boxes)
        )
        summary = run_loop(session)
    lines = (tmp_path / "out" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    events = [e for e in map(json.loads, lines) if e.get("event") == "box_frame"]
    return summary, events


@pytest.mark.parametrize("console", [True, False])
def test_relative_boxes_under_the_pixel_frame_are_reported_once(synth_dir, tmp_path, capsys, console) -> None:
    # 56-pixel images, boxes written on 0-1000: every one lies outside the image (2 boxes x 4 responses).
    summary, events = _run(synth_dir, tmp_path, [[100, 120, 600, 700], [0, 0, 900, 950]], console)
    expected = (
        "8 of 8 predicted boxes lie outside the image the model saw: the model seems to write 0-1000 "
        "relative coordinates (as Qwen2-VL does) but data.box_coordinates is pixel; set "
        "data.box_coordinates=relative1000 if so, or detection rewards will stay near 0"
    )
    assert summary.warnings == [expected]
    assert [(e["step"], e["message"]) for e in events] == [(1, expected)]
    captured = capsys.readouterr()
    if console:
        assert f"[box_frame] step 1: {expected}" in captured.out
    else:
        assert f"warning: {expected}" in captured.err


def test_boxes_inside_the_frame_raise_no_warning(synth_dir, tmp_path) -> None:
    summary, events = _run(synth_dir, tmp_path, [[1, 2, 30, 40], [10, 10, 50, 50]], console=False)
    assert summary.warnings == [] and events == []
