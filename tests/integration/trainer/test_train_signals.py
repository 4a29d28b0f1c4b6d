"""Stopping a training process with a signal, and ``--resume auto``, as the platform runs them.

Each run is a real ``python -m trainer train --spec file://...`` process in its own session,
started from outside the repository, with the spec where the platform writes it
(``<storage>/runs/<id>/spec.json``) and an absolute ``output_dir`` beside it. Signals go to the
whole process group, the reward workers included, as Ray's ``stop_job`` sends them. The tests
wait on what the process prints (a deadline, no fixed sleeps).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from trainer.__main__ import main
from trainer.checkpoint import MARKER, check_checkpoint, latest_complete
from trainer.config import build_run_spec, config_from_dict, load_run_spec
from trainer.engine import StopRequest, open_session, run_loop

from .conftest import SOURCES, checkpoint_state, small_config

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 300.0
STEPS = 4


class Trainer:
    """A training process in its own session; its output lines are read as they come."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainer", "train", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # as Ray starts an entrypoint: the signals can go to its group
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            (self.out if name == "out" else self.err).append(line.rstrip("\n"))
            self.lines.put((name, line.rstrip("\n")))
        self.lines.put((name, ""))

    def wait_for_line(self, prefix: str, stream: str = "out") -> str:
        """The first line of ``stream`` starting with ``prefix``; fails at the deadline or at exit."""
        deadline = time.monotonic() + DEADLINE_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                name, line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if name == stream and line.startswith(prefix):
                return line
        self.kill()
        pytest.fail(f"no line starting with {prefix!r} on std{stream}; stderr:\n" + "\n".join(self.err))

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def wait(self) -> int:
        """The exit status, once the process and everything it started (its group) are gone."""
        try:
            code = self.process.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the trainer did not exit; stderr:\n" + "\n".join(self.err))
        for reader in self._readers:
            reader.join(timeout=DEADLINE_S)
        deadline = time.monotonic() + 60
        while _group_alive(self.process.pid):  # the reward workers and their forkserver
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail("processes of the trainer's group outlived it by 60 s")
            time.sleep(0.1)
        return code

    def kill(self) -> None:
        if _group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _write_spec(storage: Path, run_id: str, synth_dir: Path, **sections) -> tuple[str, Path]:
    """The spec as the platform writes it; returns its file:// URI and the run's output_dir."""
    folder = storage / "runs" / run_id
    output = folder / "output"
    data = small_config(synth_dir, SOURCES, reward={"workers": 1}, **sections)
    data["output_dir"] = str(output)
    spec = build_run_spec(config_from_dict(data), run_id=run_id)
    assert all(uri.startswith("file:///") for s in spec.sources for uri in s.train + s.test)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(spec.to_json(), encoding="utf-8")
    return f"file://{folder / 'spec.json'}", output


def _step_counts(output: Path, key: str = "actor/lr") -> Counter[int]:
    """How many times each step logged the global ``key`` (once per finished step)."""
    counts: Counter[int] = Counter()
    for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if obj.get("key") == key and obj["source"] is None:
            counts[obj["step"]] += 1
    return counts


def _points(output: Path) -> set[tuple]:
    """Metric points without timings, de-duplicated."""
    points = set()
    for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if "key" in obj and not obj["key"].startswith("perf/"):
            points.add((obj["step"], obj["source"] or "", obj["key"], obj["value"]))
    return points


def _events(output: Path, kind: str) -> list[dict]:
    lines = (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [obj for obj in map(json.loads, lines) if obj.get("event") == kind]


def test_sigterm_saves_the_last_step_and_resume_auto_finishes_it(synth_dir: Path, tmp_path: Path) -> None:
    # checkpoint.every 0: only the last step is saved on schedule, so the stop writes its own
    storage = tmp_path / "storage"
    straight_uri, straight = _write_spec(
        storage, "straight", synth_dir, total_steps=STEPS, checkpoint={"every": 0, "keep_last": None}
    )
    uri, output = _write_spec(
        storage, "stopped", synth_dir, total_steps=STEPS, checkpoint={"every": 0, "keep_last": None}
    )
    first = Trainer("--spec", uri, "--threads", "1", cwd=tmp_path)
    first.wait_for_line(f"step 1/{STEPS} |")
    first.signal(signal.SIGTERM)
    assert first.wait() == 143, "\n".join(first.err)
    stopped = [line for line in first.out if line.startswith("train: stopped by SIGTERM after step ")]
    assert len(stopped) == 1, first.out
    step = int(stopped[0].split("after step ")[1].split(";")[0])
    assert 1 <= step < STEPS  # the step under way when the signal came was finished, not more
    checkpoint = output / "checkpoints" / f"step_{step:08d}"
    assert stopped[0] == f"train: stopped by SIGTERM after step {step}; checkpoint in {checkpoint}"
    assert (checkpoint / MARKER).is_file() and check_checkpoint(checkpoint).step == step
    assert latest_complete(output / "checkpoints").path == checkpoint
    assert "train: SIGTERM received; stopping after the current step (send it again to stop at once)" in (
        first.err
    )
    assert sorted(_step_counts(output).items()) == [(k, 1) for k in range(1, step + 1)]
    assert [e["data"] for e in _events(output, "stopped")] == [
        {"signal": "SIGTERM", "checkpoint": str(checkpoint)}
    ]

    second = Trainer("--spec", uri, "--threads", "1", "--resume", "auto", cwd=tmp_path)
    assert second.wait() == 0, "\n".join(second.err)
    assert f"train: resumed from {checkpoint} at step {step}" in second.out
    assert second.out[-1].startswith(f"train: finished {STEPS - step} step(s) in ")
    # every step exactly once across both attempts: none repeated, none skipped after the checkpoint
    assert sorted(_step_counts(output).items()) == [(k, 1) for k in range(1, STEPS + 1)]

    # and the two attempts are the run that was never stopped (rewards of the stopped step included)
    run = Trainer("--spec", straight_uri, "--threads", "1", cwd=tmp_path)
    assert run.wait() == 0, "\n".join(run.err)
    assert _points(output) == _points(straight)
    a, b = (checkpoint_state(latest_complete(o / "checkpoints")) for o in (output, straight))
    assert a["step"] == b["step"] == STEPS and a["sampler"] == b["sampler"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resume_auto_without_a_checkpoint_starts_at_step_0(synth_dir: Path, tmp_path: Path) -> None:
    uri, output = _write_spec(tmp_path / "storage", "fresh", synth_dir, total_steps=1)
    run = Trainer("--spec", uri, "--resume", "auto", cwd=tmp_path)
    assert run.wait() == 0, "\n".join(run.err)
    assert f"train: no checkpoint yet in {output / 'checkpoints'}; starting from step 0" in run.out
    assert run.out[-1].startswith("train: finished 1 step(s) in ")
    assert latest_complete(output / "checkpoints").step == 1


def test_sigint_stops_the_same_way_with_130(synth_dir: Path, tmp_path: Path) -> None:
    uri, output = _write_spec(tmp_path / "storage", "ctrl-c", synth_dir, total_steps=STEPS)
    run = Trainer("--spec", uri, "--threads", "1", cwd=tmp_path)
    run.wait_for_line(f"step 1/{STEPS} |")
    run.signal(signal.SIGINT)
    assert run.wait() == 130, "\n".join(run.err)
    saved = latest_complete(output / "checkpoints")
    assert run.out[-1] == f"train: stopped by SIGINT after step {saved.step}; checkpoint in {saved.path}"


def test_a_second_sigterm_ends_the_process_at_once(synth_dir: Path, tmp_path: Path) -> None:
    uri, output = _write_spec(tmp_path / "storage", "twice", synth_dir, total_steps=STEPS)
    run = Trainer("--spec", uri, "--threads", "1", cwd=tmp_path)
    run.wait_for_line(f"step 1/{STEPS} |")
    run.signal(signal.SIGTERM)
    run.wait_for_line("train: SIGTERM received", stream="err")
    run.signal(signal.SIGTERM)
    assert run.wait() == -signal.SIGTERM
    assert not any(line.startswith("train: stopped by") for line in run.out)


def test_a_stop_before_any_step_writes_no_checkpoint(synth_dir: Path, tmp_path: Path) -> None:
    uri, output = _write_spec(tmp_path / "storage", "early", synth_dir, total_steps=STEPS)
    assert main(["train", "--spec", uri, "--steps", "1"]) == 0
    saved = latest_complete(output / "checkpoints")
    spec = load_run_spec(uri)
    stop = StopRequest()
    stop.request(signal.SIGTERM)  # arrived while the session was being built
    with open_session(spec.config, spec.sources, resume="auto") as session:
        summary = run_loop(session, stop=stop)
    # the checkpoint resumed from is the last finished step: it is named, not written again
    assert (summary.stopped_by, summary.last_checkpoint, summary.steps, summary.checkpoints) == (
        "SIGTERM",
        saved.path,
        0,
        [],
    )
    assert latest_complete(output / "checkpoints").manifest == saved.manifest
    with open_session(spec.config, spec.sources, output_dir=tmp_path / "fresh") as session:
        summary = run_loop(session, stop=stop)
    assert (summary.stopped_by, summary.last_checkpoint, summary.steps) == ("SIGTERM", None, 0)
    assert not (tmp_path / "fresh" / "checkpoints").exists()
    assert [e["data"] for e in _events(tmp_path / "fresh", "stopped")] == [
        {"signal": "SIGTERM", "checkpoint": None}
    ]
