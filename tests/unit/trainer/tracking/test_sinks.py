"""Points, the JSONL and console sinks, the progress bar, fan-out and building from config."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from trainer.config.schema import HttpTrackingConfig, TrackingConfig
from trainer.tracking import (
    ConsoleSink,
    HttpSink,
    JsonlSink,
    MultiSink,
    ProgressBar,
    Tracker,
    build_tracker,
    format_duration,
    metrics_to_points,
    read_points,
)
from trainer.tracking.console import short_names


class Ticks:
    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


# -- points -------------------------------------------------------------------------------------


def test_points_are_ordered_global_first_and_undefined_values_dropped() -> None:
    metrics = {
        ("ocr", "count"): 2,
        (None, "reward/final"): 0.5,
        ("math", "count"): 1,
        ("math", "reward/accuracy"): float("nan"),
        (None, "count"): 3,
    }
    assert metrics_to_points(7, metrics) == [
        {"step": 7, "source": None, "key": "count", "value": 3.0},
        {"step": 7, "source": None, "key": "reward/final", "value": 0.5},
        {"step": 7, "source": "math", "key": "count", "value": 1.0},
        {"step": 7, "source": "ocr", "key": "count", "value": 2.0},
    ]


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_points_need_a_valid_step(step: object) -> None:
    with pytest.raises(ValueError) as info:
        metrics_to_points(step, {})  # type: ignore[arg-type]
    assert str(info.value) == f"step must be an integer >= 0, got {step!r}"


# -- JSONL --------------------------------------------------------------------------------------


def test_jsonl_writes_one_line_per_point_flushed_each_step(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    sink = JsonlSink(path, clock=lambda: 123.0)
    sink.log(0, {(None, "reward/final"): 0.25, ("math", "count"): 4})
    # readable before close: flushed after every call
    assert path.read_text().splitlines() == [
        '{"step":0,"source":null,"key":"reward/final","value":0.25}',
        '{"step":0,"source":"math","key":"count","value":4.0}',
    ]
    sink.log_event("checkpoint", "saved step 0", step=0, data={"path": "ckpt/0"})
    sink.close()
    sink.close()  # twice is harmless
    assert json.loads(path.read_text().splitlines()[-1]) == {
        "event": "checkpoint",
        "message": "saved step 0",
        "step": 0,
        "data": {"path": "ckpt/0"},
        "time": 123.0,
    }


def test_jsonl_appends_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with JsonlSink(path) as first:
        first.log(0, {(None, "count"): 1})
    with JsonlSink(path) as resumed:
        resumed.log(1, {(None, "count"): 2})
        resumed.log_event("finished", "done")
    assert list(read_points(path)) == [
        {"step": 0, "source": None, "key": "count", "value": 1.0},
        {"step": 1, "source": None, "key": "count", "value": 2.0},
    ]


def test_jsonl_ends_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step":0,"source":null,"key":"count","value":1.0}\n{"step":1,"sour')
    with JsonlSink(path) as sink:
        sink.log(2, {(None, "count"): 3.0})
    lines = path.read_text().splitlines()
    assert lines[1] == '{"step":1,"sour'
    assert json.loads(lines[2]) == {"step": 2, "source": None, "key": "count", "value": 3.0}
    assert [p["step"] for p in read_points(path)] == [0, 2]


def test_jsonl_keeps_hostile_strings_intact(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    source = 'a"b\n\x00é' + "x" * 5000
    with JsonlSink(path) as sink:
        sink.log(0, {(source, "count"): 1.0})
    assert path.read_text(encoding="utf-8").count("\n") == 1
    assert next(read_points(path))["source"] == source


# -- console ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.4, "42s"), (59.6, "1m00s"), (288, "4m48s"), (7384, "2h03m"), (-5, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("names", "short"),
    [
        (["synth_math", "synth_ocr"], {"synth_math": "math", "synth_ocr": "ocr"}),
        (["math"], {"math": "math"}),
        (["mm_math", "v3det_train"], {"mm_math": "mm_math", "v3det_train": "v3det_train"}),
        (["a_b", "a_bc"], {"a_b": "b", "a_bc": "bc"}),
        (["averyveryverylongname"], {"averyveryverylongname": "averyveryver"}),
        (["x_", "x_a"], {"x_": "x_", "x_a": "a"}),
    ],
)
def test_short_names(names: list[str], short: dict[str, str]) -> None:
    assert short_names(names) == short


def test_console_line_per_step() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(100, stream=stream, clock=Ticks(0.0))
    metrics = {
        (None, "reward/final"): 0.5321,
        ("synth_math", "reward/accuracy"): 0.41,
        ("synth_detection", "reward/accuracy"): 0.2249,
        (None, "perf/step_time"): 3.2,
    }
    sink.log(12, metrics)
    # ETA: 88 steps left x 3.2 s = 281.6 s -> 4m42s
    assert (
        stream.getvalue()
        == "step 12/100 | reward 0.532 | acc detection 0.22 math 0.41 | 3.20 s/step | ETA 4m42s\n"
    )


def test_console_measures_step_time_when_it_is_not_logged() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(10, stream=stream, clock=Ticks(100.0, 102.0, 106.0))
    sink.log(1, {})
    sink.log(2, {})
    sink.log(3, {})
    assert stream.getvalue().splitlines() == [
        "step 1/10",
        "step 2/10 | 2.00 s/step | ETA 16s",  # 8 left x 2 s
        "step 3/10 | 4.00 s/step | ETA 21s",  # 7 left x mean(2, 4) = 21 s
    ]


def test_console_events() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(10, stream=stream)
    sink.log_event("nan_step", "loss was NaN; step skipped", step=4)
    sink.log_event("finished", "done")
    assert stream.getvalue() == "[nan_step] step 4: loss was NaN; step skipped\n[finished]: done\n"


# -- progress bar -------------------------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_file_writes_a_line_per_tenth() -> None:
    stream = io.StringIO()
    with ProgressBar(20, "eval", stream=stream, clock=Ticks(0.0, 10.0), width=10) as bar:
        for _ in range(20):
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # 0 %, 10 % ... 90 %, and the final line
    assert lines[0] == "eval [----------] 1/20 5% 0.1/s ETA 3m10s"  # 1 item in 10 s, 19 left
    assert lines[-1] == "eval [##########] 20/20 100% 2.0/s"


def test_progress_on_a_terminal_redraws_one_line_when_due() -> None:
    stream = Tty()
    ticks = Ticks(0.0, 1.0, 1.05, 2.0, 2.0)
    bar = ProgressBar(4, "score", stream=stream, clock=ticks, min_interval_s=0.5, width=4)
    for _ in range(3):
        bar.update()
    bar.close()
    # drawn at t=1 and t=2; the update at t=1.05 is too soon
    assert stream.getvalue() == (
        "\rscore [#---] 1/4 25% 1.0/s ETA 3s"
        "\rscore [###-] 3/4 75% 1.5/s ETA 1s"
        "\rscore [###-] 3/4 75% 1.5/s ETA 1s\n"
    )


def test_progress_without_a_total() -> None:
    stream = io.StringIO()
    with ProgressBar(None, stream=stream, clock=Ticks(0.0, 4.0)) as bar:
        bar.update(8)
    assert stream.getvalue() == "8 done 2.0/s\n"


def test_progress_refuses_a_negative_total() -> None:
    with pytest.raises(ValueError, match="total must be >= 0 or None, got -1"):
        ProgressBar(-1)


# -- fan-out ------------------------------------------------------------------------------------


class Recorder(Tracker):
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def log(self, step: int, metrics: Mapping) -> None:
        self.calls.append(("log", step))
        if self.fail:
            raise RuntimeError("sink down")

    def log_event(self, kind: str, message: str, *, step=None, data=None) -> None:  # noqa: ANN001
        self.calls.append(("event", kind))

    def close(self) -> None:
        self.calls.append(("close",))


def test_multisink_calls_every_sink_even_when_one_fails() -> None:
    first, broken, last = Recorder(), Recorder(fail=True), Recorder()
    multi = MultiSink([first, broken, last])
    with pytest.raises(RuntimeError, match="sink down"):
        multi.log(1, {})
    multi.log_event("eval", "started")
    multi.close()
    for sink in (first, broken, last):
        assert sink.calls == [("log", 1), ("event", "eval"), ("close",)]


def test_tracker_defaults_ignore_events() -> None:
    class Minimal(Tracker):
        def log(self, step: int, metrics: Mapping) -> None:
            pass

    with Minimal() as tracker:
        tracker.log_event("x", "y")


# -- from config --------------------------------------------------------------------------------


def test_build_tracker_from_config(tmp_path: Path) -> None:
    http = HttpTrackingConfig(url="http://127.0.0.1:9", run_id="r1", spool="spool/s.jsonl")
    config = TrackingConfig(jsonl="m.jsonl", console=True, http=http)
    tracker = build_tracker(config, output_dir=tmp_path, total_steps=5, environ={"TRIUNE_RUN_TOKEN": "t"})
    jsonl, console, sink = tracker.sinks
    assert isinstance(jsonl, JsonlSink) and jsonl.path == tmp_path / "m.jsonl"
    assert isinstance(console, ConsoleSink) and console.total_steps == 5
    assert isinstance(sink, HttpSink)
    assert sink.spool_path == tmp_path / "spool" / "s.jsonl"
    assert sink.endpoint == "http://127.0.0.1:9/api/v1/runs/r1/metrics/"


def test_build_tracker_with_everything_off(tmp_path: Path) -> None:
    tracker = build_tracker(TrackingConfig(jsonl=None, console=False), output_dir=tmp_path, total_steps=1)
    assert tracker.sinks == []


def test_absolute_jsonl_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    tracker = build_tracker(
        TrackingConfig(jsonl=str(target), console=False), output_dir=tmp_path / "out", total_steps=1
    )
    assert tracker.sinks[0].path == target  # type: ignore[attr-defined]


def test_http_tracking_needs_the_token_variable(tmp_path: Path) -> None:
    config = TrackingConfig(
        console=False, http=HttpTrackingConfig(url="http://h", run_id="r", token_env="MY_TOKEN")
    )
    with pytest.raises(ValueError) as info:
        build_tracker(config, output_dir=tmp_path, total_steps=1, environ={})
    assert str(info.value) == (
        "tracking.http: environment variable MY_TOKEN is empty or not set; it must hold the run-scoped "
        "token the platform issued"
    )
