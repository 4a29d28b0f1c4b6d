"""The web server goes away while a real trainer runs, and comes back: the run goes on, and every
metric it logged meanwhile arrives afterwards, once."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.faults.conftest import count_points
from tests.integration.faults.stack import ROOT
from tests.integration.trainer.conftest import small_config
from trainer.config import build_run_spec, load_config
from trainer.data.synth import generate_dataset

pytestmark = pytest.mark.slow


def _local_points(metrics: Path) -> dict[tuple[int, str, str], float | None]:
    points = {}
    if not metrics.exists():
        return points
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:  # the line being written
            continue
        if "key" in obj:
            points[(obj["step"], obj["source"] or "", obj["key"])] = obj["value"]
    return points


class Trainer:
    """``python -m trainer train`` of a run spec reporting to the stack, as a Ray job runs it."""

    def __init__(self, stack, seeded: dict, folder: Path, total_steps: int) -> None:
        data = folder / "synth"
        generate_dataset(str(data), per_source=8, image_size=56)
        config = small_config(data, ("synth_math", "synth_counting"), total_steps=total_steps)
        config["tracking"]["http"] = {"url": stack.url, "run_id": "local", "retry_interval_s": 0.2}
        config["checkpoint"] = {**config.get("checkpoint", {}), "every": 0}
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        spec = folder / "spec.json"
        run_spec = build_run_spec(load_config(path), run_id=str(seeded["run"]), platform_url=stack.url)
        spec.write_text(run_spec.to_json(), encoding="utf-8")
        out = folder / "out"
        self.metrics, self.spool, self.log = (
            out / "metrics.jsonl",
            out / "metrics_spool.jsonl",
            folder / "trainer.log",
        )
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT),
            "TRIUNE_RUN_TOKEN": seeded["run_token"],
        }
        argv = ["train", "--spec", spec.as_uri(), "--output-dir", str(out), "--threads", "1"]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trainer", *argv],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until(self, what: str, predicate, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise AssertionError(f"the trainer exited ({self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def last_step(self) -> int:
        return max((step for step, _, _ in _local_points(self.metrics)), default=0)

    def finish(self) -> None:
        assert self.process.wait(600) == 0, self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def _running_trainer(stack, seeded: dict, folder: Path, total_steps: int) -> Iterator[Trainer]:
    """A :class:`Trainer`, killed at the end if still running, with the web server up again."""
    trainer = Trainer(stack, seeded, folder, total_steps)
    try:
        yield trainer
    finally:
        trainer.kill()
        if stack.web is None:
            stack.start_web()


def _assert_every_point_stored_once(stack, run_id: int, trainer: Trainer, total_steps: int) -> None:
    local = _local_points(trainer.metrics)
    assert max(step for step, _, _ in local) == total_steps
    assert not trainer.spool.exists()
    stored = count_points(stack, run_id)
    assert stored["steps"] == sorted({step for step, _, _ in local})
    assert stored["count"] == len(local)
    assert stored["sum"] == pytest.approx(sum(v for v in local.values() if v is not None), rel=1e-9)


# TRIUNE_SLOW=1 keeps the web server down for a full minute (and trains long enough for that).
OUTAGE_S = 60.0 if os.environ.get("TRIUNE_SLOW") else 0.0


def test_the_run_goes_on_while_the_control_plane_is_down_and_no_metric_is_lost(stack, seeded, tmp_path):
    total = 400 if OUTAGE_S else 40
    with _running_trainer(stack, seeded, tmp_path, total_steps=total) as trainer:
        trainer.wait_until("two steps", lambda: trainer.last_step() >= 2)
        stack.stop_web()
        down_at, down_since = trainer.last_step(), time.monotonic()
        trainer.wait_until(
            "four steps with the web server down",
            lambda: trainer.last_step() >= down_at + 4 and time.monotonic() - down_since >= OUTAGE_S,
        )
        assert trainer.spool.exists()  # the points of those steps wait on the trainer's disk
        spooled, outage = len(trainer.spool.read_text().splitlines()), time.monotonic() - down_since
        trained = trainer.last_step() - down_at
        stack.start_web()
        trainer.finish()
    _assert_every_point_stored_once(stack, seeded["run"], trainer, total)
    print(
        f"web server down {outage:.0f} s: {trained} steps trained meanwhile, {spooled} points spooled,"
        " all stored"
    )


def test_a_run_that_ends_while_the_control_plane_is_down_delivers_when_it_returns(stack, seeded, tmp_path):
    with _running_trainer(stack, seeded, tmp_path, total_steps=4) as trainer:
        trainer.wait_until("the first step", lambda: trainer.last_step() >= 1)
        stack.stop_web()
        # The run is over; its trainer waits (tracking.http.close_wait_s) for the platform.
        trainer.wait_until(
            "the trainer to wait for the platform", lambda: "waiting up to" in trainer.log.read_text()
        )
        assert trainer.last_step() == 4 and trainer.spool.exists()
        stack.start_web()
        trainer.finish()
    _assert_every_point_stored_once(stack, seeded["run"], trainer, 4)
