"""End to end in subprocesses: ``python -m trainer synth`` then a few ``tiny-cpu-demo`` steps.

Checks the exit status, one progress line per step, and that the metrics file holds every
metric family of DESIGN.md §6, per source and over the whole step.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from trainer.config import build_run_spec, load_config

ROOT = Path(__file__).resolve().parents[3]
STEPS = 3
SOURCES = (
    "synth_math",
    "synth_puzzle",
    "synth_science",
    "synth_chart",
    "synth_ocr",
    "synth_counting",
    "synth_detection",
    "synth_grounding",
)
OVERRIDES = (
    "rollout.prompts_per_step=2",
    "rollout.n=3",
    "rollout.max_response_length=16",
    f"total_steps={STEPS}",
    f"eval.every={STEPS}",
    "eval.max_samples_per_source=1",
    # synth_detection drawn nearly every time (the others' weights sum to 13)
    f"data.sources.{SOURCES.index('synth_detection')}.weight=80.0",
    "algo.kl.kind=k3",  # the KL term on, so that actor/kl is logged too
    "algo.kl.coef=0.01",
    "reward.workers=1",
)
# Families every source of a step has (and the whole step, source null).
SOURCE_KEYS = (
    "count",
    "reward_errors",
    "reward/final",
    "reward/accuracy",
    "reward/format",
    "response_length/mean",
    "response_length/clip_ratio",
    "reflection/ratio",
    "reflection_word/wait",
    "grpo/frac_zero_std",
    "grpo/reward_std",
    "grpo/adv_abs_mean",
    "response_length/drift",
)
DETECTION_KEYS = (
    "detection/iou@50",
    "detection/iou@99",
    "detection/precision@75",
    "detection/recall@95",
    "detection/map",
    "detection/map50",
    "detection/map75",
    "reward/weighted_iou_score_max_label",  # the detection breakdown under reward/
)
GLOBAL_KEYS = (
    "detection/iou_threshold",
    "actor/pg_loss",
    "actor/clipfrac",
    "actor/clipfrac_lower",
    "actor/kl",
    "actor/entropy",
    "actor/grad_norm",
    "actor/lr",
    "perf/step_time",
    "perf/rollout_time",
    "perf/reward_time",
    "perf/update_time",
    "perf/tokens_per_s",
    "perf/peak_memory",
)


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    work = tmp_path_factory.mktemp("e2e")
    synth = _python(
        "synth", "--out", str(work / "synth"), "--per-source", "8", "--image-size", "84", cwd=work
    )
    assert synth.returncode == 0, synth.stderr
    sets = [a for o in (f"data.root={work / 'synth'}", *OVERRIDES) for a in ("--set", o)]
    out = work / "out"
    train = _python(
        "train", "--config", "tiny-cpu-demo", *sets, "--output-dir", str(out), "--threads", "1", cwd=work
    )
    return train, out


def _points(out: Path) -> tuple[dict[int, dict[str | None, set[str]]], list[dict]]:
    points: dict[int, dict[str | None, set[str]]] = defaultdict(lambda: defaultdict(set))
    events = []
    for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if "event" in obj:
            events.append(obj)
        else:
            points[obj["step"]][obj["source"]].add(obj["key"])
    return points, events


def test_exit_status_and_a_progress_line_per_step(run) -> None:
    train, out = run
    assert train.returncode == 0, train.stderr
    progress = [line for line in train.stdout.splitlines() if re.match(r"^step [1-9]\d*/\d+ \|", line)]
    assert [line.split(" |")[0] for line in progress] == [f"step {k}/{STEPS}" for k in range(1, STEPS + 1)]
    assert all(" s/step" in line and "reward " in line for line in progress)
    assert train.stdout.splitlines()[-1].startswith(f"train: finished {STEPS} step(s) in ")
    assert (out / "config.yaml").is_file()


def test_sources_are_the_presets_in_its_order() -> None:
    # OVERRIDES address data.sources by index
    assert tuple(s.name for s in load_config("tiny-cpu-demo").data.sources) == SOURCES


def test_every_metric_family_per_source_and_global(run) -> None:
    _, out = run
    points, _ = _points(out)
    assert sorted(points) == list(range(STEPS + 1))  # step 0: the evaluation before training
    seen_detection = False
    for step in range(1, STEPS + 1):
        by_source = points[step]
        drawn = [s for s in by_source if s is not None and "count" in by_source[s]]
        assert drawn, f"step {step} has no per-source metrics"
        for source in [*drawn, None]:
            missing = set(SOURCE_KEYS) - by_source[source]
            assert not missing, f"step {step}, source {source}: missing {sorted(missing)}"
        if "synth_detection" in drawn:
            seen_detection = True
            assert not set(DETECTION_KEYS) - by_source["synth_detection"]
        missing_global = set(GLOBAL_KEYS) - by_source[None]
        assert not missing_global, f"step {step}: missing {sorted(missing_global)}"
        assert any(k.startswith("grad_norm/language.") for k in by_source[None])
        assert any(k.startswith("grad_norm/vision.") for k in by_source[None])  # the ViT trains too
        assert "actor/skipped_steps" in by_source[None]
    assert seen_detection


@pytest.mark.parametrize("step", [0, STEPS])
def test_evaluation_before_training_and_every_n_steps(run, step: int) -> None:
    _, out = run
    points, events = _points(out)
    for source in [*SOURCES, None]:
        assert {"eval/final", "eval/accuracy", "eval/format", "eval/count"} <= points[step][source]
    assert "eval/weighted_iou_score_max_label" in points[step]["synth_detection"]
    assert [e["step"] for e in events if e["event"] == "eval"] == [0, STEPS]
    assert events[-1]["event"] == "finished"


def test_a_run_spec_runs_the_same_way(tmp_path: Path, run) -> None:
    _, out = run
    data_root = out.parent / "synth"
    config = load_config(
        "tiny-cpu-demo",
        [
            f"data.root={data_root}",
            "rollout.prompts_per_step=1",
            "rollout.n=2",
            "rollout.max_response_length=8",
        ]
        + ["eval.before_training=false", "eval.every=0", "total_steps=5"],
    )
    spec = tmp_path / "spec.json"
    spec.write_text(build_run_spec(config, run_id="run-7").to_json(), encoding="utf-8")
    train = _python(
        "train",
        "--spec",
        f"file://{spec}",
        "--output-dir",
        str(tmp_path / "out"),
        "--steps",
        "1",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    assert "step 1/5 |" in train.stdout and "step 2/5" not in train.stdout
    points, _ = _points(tmp_path / "out")
    assert sorted(points) == [1]
