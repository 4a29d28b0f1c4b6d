"""HttpSink against a real local HTTP server: delivery, batching, spooling, replay, refusal."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trainer.tracking import HttpSink, HttpSinkError, metrics_endpoint, metrics_to_points

TOKEN = "run-token-123"


class FakePlatform:
    """The ingest endpoint: records each accepted request; answers scripted statuses first."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []  # consumed one per request; 200 when empty
        self.lock = threading.Lock()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with platform.lock:
                    status = platform.statuses.pop(0) if platform.statuses else 200
                    if status == 200:
                        platform.requests.append(
                            {
                                "path": self.path,
                                "auth": self.headers.get("Authorization"),
                                "type": self.headers.get("Content-Type"),
                                "body": json.loads(body),
                            }
                        )
                reply = b'{"ok": true}' if status == 200 else b'{"message": "no"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def points(self) -> list[dict]:
        return [p for r in self.requests for p in r["body"]["points"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    server = FakePlatform()
    yield server
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def step_metrics(step: int) -> dict:
    return {
        (None, "reward/final"): step / 10,
        ("math", "reward/accuracy"): 0.5,
        ("det", "count"): float(step),
    }


def make_sink(url: str, tmp_path: Path, clock: Clock | None = None, **kwargs: object) -> HttpSink:
    return HttpSink(
        url,
        "run-1",
        TOKEN,
        spool_path=tmp_path / "spool.jsonl",
        clock=clock or Clock(),
        timeout_s=5.0,
        opener=urllib.request.build_opener(urllib.request.ProxyHandler({})),  # ignore proxy variables
        **kwargs,  # type: ignore[arg-type]
    )


def test_points_are_posted_with_the_run_token(platform: FakePlatform, tmp_path: Path) -> None:
    sink = make_sink(platform.url, tmp_path)
    sink.log(3, step_metrics(3))
    assert len(platform.requests) == 1
    request = platform.requests[0]
    assert request["path"] == "/api/v1/runs/run-1/metrics/"
    assert request["auth"] == f"Bearer {TOKEN}"
    assert request["type"] == "application/json"
    assert request["body"] == {
        "points": [
            {"step": 3, "source": None, "key": "reward/final", "value": 0.3},
            {"step": 3, "source": "det", "key": "count", "value": 3.0},
            {"step": 3, "source": "math", "key": "reward/accuracy", "value": 0.5},
        ]
    }
    assert sink.pending == 0 and not sink.spool_path.exists()


def test_large_steps_are_split_into_batches_in_order(platform: FakePlatform, tmp_path: Path) -> None:
    sink = make_sink(platform.url, tmp_path, batch_size=2)
    metrics = {("s", f"reward/k{i}"): float(i) for i in range(5)}
    sink.log(0, metrics)
    assert [len(r["body"]["points"]) for r in platform.requests] == [2, 2, 1]
    assert platform.points() == metrics_to_points(0, metrics)


def test_unreachable_platform_spools_then_replays_in_order(tmp_path: Path) -> None:
    down = FakePlatform()
    port, url = down.port, down.url
    down.stop()  # nothing listens on the port now: connections are refused
    clock = Clock()
    sink = make_sink(url, tmp_path, clock, retry_interval_s=30.0)
    for step in range(3):
        sink.log(step, step_metrics(step))  # no exception: the run goes on
    assert sink.pending == 9
    spooled = [json.loads(line) for line in sink.spool_path.read_text().splitlines()]
    assert spooled == [p for s in range(3) for p in metrics_to_points(s, step_metrics(s))]

    up = FakePlatform(port)
    try:
        clock.now += 10  # within the retry interval the platform is left alone
        sink.log(3, step_metrics(3))
        assert up.requests == []
        assert sink.pending == 12

        clock.now += 30  # retry interval over: the spool goes first, then the new step
        sink.log(4, step_metrics(4))
        expected = [p for s in range(5) for p in metrics_to_points(s, step_metrics(s))]
        assert up.points() == expected  # everything, in order, exactly once
        assert sink.pending == 0 and not sink.spool_path.exists()

        sink.log(5, step_metrics(5))  # back to direct delivery
        assert up.points()[len(expected) :] == metrics_to_points(5, step_metrics(5))
    finally:
        up.stop()


@pytest.mark.parametrize("status", [503, 500, 429, 408])
def test_retryable_statuses_spool(platform: FakePlatform, tmp_path: Path, status: int) -> None:
    clock = Clock()
    sink = make_sink(platform.url, tmp_path, clock, retry_interval_s=5.0)
    platform.statuses = [status]
    sink.log(0, step_metrics(0))
    assert sink.pending == 3 and platform.requests == []
    clock.now += 5
    sink.log(1, step_metrics(1))
    assert platform.points() == metrics_to_points(0, step_metrics(0)) + metrics_to_points(1, step_metrics(1))
    assert sink.pending == 0


def test_failure_in_the_middle_of_a_replay_loses_and_duplicates_nothing(
    platform: FakePlatform, tmp_path: Path
) -> None:
    clock = Clock()
    sink = make_sink(platform.url, tmp_path, clock, batch_size=2, retry_interval_s=1.0)
    platform.statuses = [503]
    sink.log(0, step_metrics(0))  # 3 points spooled
    platform.statuses = [503]
    clock.now += 1
    sink.log(1, step_metrics(1))  # the replay fails at once: 6 points spooled
    assert sink.pending == 6
    platform.statuses = [200, 503]  # first batch of the replay accepted, the second refused
    clock.now += 1
    sink.log(2, step_metrics(2))
    assert len(platform.points()) == 2
    assert sink.pending == 7  # 6 + 3 - 2
    clock.now += 1
    sink.log(3, step_metrics(3))
    expected = [p for s in range(4) for p in metrics_to_points(s, step_metrics(s))]
    assert platform.points() == expected
    assert sink.pending == 0


def test_a_spool_left_by_an_earlier_process_is_replayed_first(platform: FakePlatform, tmp_path: Path) -> None:
    down = FakePlatform()
    url = down.url
    down.stop()
    crashed = make_sink(url, tmp_path)
    crashed.log(0, step_metrics(0))
    crashed.log(1, step_metrics(1))
    assert crashed.pending == 6

    resumed = make_sink(platform.url, tmp_path)  # same spool file, platform reachable
    assert resumed.pending == 6
    resumed.log(2, step_metrics(2))
    assert platform.points() == [p for s in range(3) for p in metrics_to_points(s, step_metrics(s))]


def test_a_refusal_raises_and_keeps_the_points(platform: FakePlatform, tmp_path: Path) -> None:
    sink = make_sink(platform.url, tmp_path)
    platform.statuses = [401]
    with pytest.raises(HttpSinkError) as info:
        sink.log(0, step_metrics(0))
    assert str(info.value) == (
        f"{platform.url}/api/v1/runs/run-1/metrics/ refused 3 metric points: HTTP 401 "
        '{"message": "no"}; '
        f"they are kept in {tmp_path / 'spool.jsonl'} and sent again by the next log"
    )
    assert sink.pending == 3
    sink.log(1, step_metrics(1))  # the token works again: nothing was lost
    assert platform.points() == metrics_to_points(0, step_metrics(0)) + metrics_to_points(1, step_metrics(1))


def test_close_delivers_the_spool_without_waiting(tmp_path: Path) -> None:
    down = FakePlatform()
    port, url = down.port, down.url
    down.stop()
    sink = make_sink(url, tmp_path, retry_interval_s=1e9)
    sink.log(0, step_metrics(0))
    sink.close()  # still down: no exception, the points stay spooled
    assert sink.pending == 3
    up = FakePlatform(port)
    try:
        sink.close()
        assert up.points() == metrics_to_points(0, step_metrics(0))
        assert sink.pending == 0
    finally:
        up.stop()


def test_a_torn_spool_line_is_skipped(tmp_path: Path) -> None:
    down = FakePlatform()
    port, url = down.port, down.url
    down.stop()
    spool = tmp_path / "spool.jsonl"
    spool.write_text('{"step": 0, "source": null, "key": "count", "value": 1.0}\n{"step": 1, "sou')
    sink = make_sink(url, tmp_path)
    assert sink.pending == 2
    sink.log(2, {(None, "count"): 2.0})  # spooled after the torn line, not glued to it
    platform = FakePlatform(port)
    try:
        sink.close()
    finally:
        platform.stop()
    assert platform.points() == [
        {"step": 0, "source": None, "key": "count", "value": 1.0},
        {"step": 2, "source": None, "key": "count", "value": 2.0},
    ]


@pytest.mark.parametrize(
    ("url", "run_id", "endpoint"),
    [
        ("http://h:8000", "run-1", "http://h:8000/api/v1/runs/run-1/metrics/"),
        ("http://h:8000/", "run-1", "http://h:8000/api/v1/runs/run-1/metrics/"),
        ("https://h/base", "a/../b c", "https://h/base/api/v1/runs/a%2F..%2Fb%20c/metrics/"),
    ],
)
def test_metrics_endpoint(url: str, run_id: str, endpoint: str) -> None:
    assert metrics_endpoint(url, run_id) == endpoint


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token": ""}, "token must be a non-empty string (the run-scoped bearer token)"),
        ({"batch_size": 0}, "batch_size must be > 0, got 0"),
        ({"close_wait_s": -1}, "close_wait_s must be >= 0, got -1"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"token": TOKEN, "spool_path": tmp_path / "s.jsonl"} | kwargs
    with pytest.raises(ValueError) as info:
        HttpSink("http://h", "r", **args)  # type: ignore[arg-type]
    assert str(info.value) == message


class SleepUntilUp:
    """``sleep`` of the sink: advances its clock, and starts the platform after ``up_after`` sleeps."""

    def __init__(self, clock: Clock, port: int, up_after: int) -> None:
        self.clock, self.port, self.up_after = clock, port, up_after
        self.slept: list[float] = []
        self.platform: FakePlatform | None = None

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.now += seconds
        if len(self.slept) == self.up_after:
            self.platform = FakePlatform(self.port)


def test_close_waits_for_the_platform_to_come_back(tmp_path: Path) -> None:
    down = FakePlatform()
    port, url = down.port, down.url
    down.stop()
    clock = Clock()
    sleep = SleepUntilUp(clock, port, up_after=3)
    sink = make_sink(url, tmp_path, clock, retry_interval_s=5.0, close_wait_s=60.0, sleep=sleep)
    sink.log(0, step_metrics(0))
    try:
        sink.close()
        assert sleep.slept == [5.0, 5.0, 5.0]
        assert sleep.platform is not None and sleep.platform.points() == metrics_to_points(0, step_metrics(0))
        assert sink.pending == 0 and not (tmp_path / "spool.jsonl").exists()
    finally:
        if sleep.platform is not None:
            sleep.platform.stop()


def test_close_gives_up_after_close_wait_s_and_keeps_the_spool(tmp_path: Path) -> None:
    down = FakePlatform()
    url = down.url
    down.stop()
    clock = Clock()
    sleep = SleepUntilUp(clock, 0, up_after=-1)
    sink = make_sink(url, tmp_path, clock, retry_interval_s=0.0, close_wait_s=2.5, sleep=sleep)
    sink.log(0, step_metrics(0))
    sink.close()
    # Never faster than once a second, and never past the deadline.
    assert sleep.slept == [1.0, 1.0, 0.5]
    assert sink.pending == 3 and (tmp_path / "spool.jsonl").exists()


def test_close_does_not_wait_out_a_refusal(platform: FakePlatform, tmp_path: Path) -> None:
    clock = Clock()
    sleep = SleepUntilUp(clock, 0, up_after=-1)
    sink = make_sink(platform.url, tmp_path, clock, retry_interval_s=1e9, close_wait_s=600.0, sleep=sleep)
    platform.statuses = [503, 401]
    sink.log(0, step_metrics(0))
    sink.close()
    assert sleep.slept == [] and sink.pending == 3
