"""The run websocket (webui.consumers.RunConsumer) over the real ASGI app and a Redis channel layer."""

from __future__ import annotations

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://testserver"
WAIT = 10  # seconds a message may take to arrive before the test fails
CATCH_UP_HELP = 'send {"type": "catch_up", "after_step": <int>}'


@pytest.fixture
async def layer(settings):
    """A Redis channel layer of its own prefix, so other test runs on the same Redis never cross."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"test-{uuid.uuid4().hex}", "expiry": 30},
        }
    }
    channel_layer = get_channel_layer()
    yield channel_layer
    await channel_layer.flush()
    await channel_layer.close_pools()


@pytest.fixture
def cookie_for(db):
    """The session cookie header of ``user`` logged in, as the browser sends it (an async call)."""
    from django.test import Client

    def login(user) -> bytes:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    async def make(user) -> bytes:
        return await database_sync_to_async(login)(user)

    return make


@pytest.fixture
def fired(monkeypatch):
    """Alert deliveries that would be enqueued, recorded instead of sent to a worker."""
    calls: list[tuple] = []
    monkeypatch.setattr("control.services.alerts.enqueue_task", lambda *args: calls.append(args))
    return calls


class Socket:
    """A WebsocketCommunicator that always disconnects."""

    def __init__(self, run_id: int, *, cookie: bytes | None = None, origin: bytes | None = ORIGIN) -> None:
        from control.asgi import application

        headers = [(b"origin", origin)] if origin else []
        if cookie:
            headers.append((b"cookie", cookie))
        self.communicator = WebsocketCommunicator(application, f"/ws/runs/{run_id}/", headers=headers)

    async def __aenter__(self) -> Socket:
        self.connected, self.code = await self.communicator.connect(timeout=WAIT)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.communicator.disconnect()

    async def send(self, data) -> None:
        await self.communicator.send_json_to(data)

    async def receive(self) -> dict:
        return await self.communicator.receive_json_from(timeout=WAIT)


async def test_an_anonymous_connection_is_refused(layer, run):
    async with Socket(run.pk) as socket:
        assert (socket.connected, socket.code) == (False, 4401)


async def test_a_forged_session_cookie_is_anonymous(layer, run):
    async with Socket(run.pk, cookie=b"sessionid=" + b"x" * 32) as socket:
        assert (socket.connected, socket.code) == (False, 4401)


async def test_a_non_member_is_refused(layer, run, other_user, cookie_for):
    async with Socket(run.pk, cookie=await cookie_for(other_user)) as socket:
        assert (socket.connected, socket.code) == (False, 4404)


async def test_a_missing_run_is_refused(layer, user, cookie_for):
    async with Socket(987654, cookie=await cookie_for(user)) as socket:
        assert (socket.connected, socket.code) == (False, 4404)


@pytest.mark.parametrize("origin", [b"http://evil.example.com", None])
async def test_a_foreign_or_missing_origin_is_refused(origin, layer, run, user, cookie_for):
    async with Socket(run.pk, cookie=await cookie_for(user), origin=origin) as socket:
        assert socket.connected is False


async def test_a_viewer_may_watch(layer, run, viewer, cookie_for):
    async with Socket(run.pk, cookie=await cookie_for(viewer)) as socket:
        assert socket.connected is True


@database_sync_to_async
def _stored_at(run) -> str:
    """The time the run's points were stored at (one ingest: one transaction, one time)."""
    from control.models import MetricPoint

    (time,) = set(MetricPoint.objects.filter(run=run).values_list("created_at", flat=True))
    return time.isoformat()


async def test_a_member_receives_points_of_an_ingest(layer, run, user, cookie_for, ingest):
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        assert socket.connected
        await database_sync_to_async(ingest)(run, (0, "reward/final", "geo", 0.5), (0, "actor/lr", "", None))
        message = await socket.receive()
    # The points come with the time they were stored at (what x = wall time draws).
    assert message.pop("time") == await _stored_at(run)
    assert message == {
        "type": "metrics.points",
        "points": [
            {"step": 0, "key": "reward/final", "source": "geo", "value": 0.5},
            {"step": 0, "key": "actor/lr", "source": "", "value": None},
        ],
    }


async def test_a_member_receives_points_posted_through_the_api(layer, run, user, cookie_for, run_client_for):
    job = await database_sync_to_async(run_client_for)(run)
    body = {"points": [{"step": 4, "key": "reward/accuracy", "source": "chart", "value": 0.75}]}
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        response = await database_sync_to_async(job.post)(
            f"/api/v1/runs/{run.pk}/metrics/", body, format="json"
        )
        assert response.status_code == 200
        message = await socket.receive()
    assert message.pop("time") == await _stored_at(run)
    assert message == {
        "type": "metrics.points",
        "points": [{"step": 4, "key": "reward/accuracy", "source": "chart", "value": 0.75}],
    }


async def test_points_of_another_run_do_not_arrive(layer, project, run, make_run, user, cookie_for, ingest):
    other = await database_sync_to_async(make_run)(project)
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        await database_sync_to_async(ingest)(other, (0, "k", "", 1.0))
        await database_sync_to_async(ingest)(run, (9, "k", "", 2.0))
        # The first message is this run's point: the other run's never came.
        assert (await socket.receive())["points"] == [{"step": 9, "key": "k", "source": "", "value": 2.0}]


async def test_a_firing_alert_is_pushed_and_its_delivery_enqueued(
    layer, project, run, user, cookie_for, ingest, make_rule, fired
):
    from control.models import Alert

    await database_sync_to_async(make_rule)(project, name="collapse")
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        await database_sync_to_async(ingest)(run, (3, "reward/accuracy", "geo", 0.1))
        events = [await socket.receive(), await socket.receive()]
    alert = await database_sync_to_async(Alert.objects.get)(run=run)
    by_type = {e["type"]: e for e in events}
    assert by_type["alerts.fired"] == {
        "type": "alerts.fired",
        "alert": {
            "id": alert.pk,
            "message": alert.message,
            "severity": "warning",
            "source": "geo",
            "key": "reward/accuracy",
            "step": 3,
            "rule": "collapse",
        },
    }
    assert by_type["metrics.points"]["points"] == [
        {"step": 3, "key": "reward/accuracy", "source": "geo", "value": 0.1}
    ]
    assert fired == [("workers.tasks.alert_deliver", alert.pk)]


@pytest.mark.parametrize(
    ("after_step", "steps"),
    [(2, [3, 4]), (-1, [0, 1, 2, 3, 4]), (4, []), (10**30, []), (-(10**30), [0, 1, 2, 3, 4])],
)
async def test_catch_up_sends_the_points_after_a_step(
    after_step, steps, layer, run, user, cookie_for, ingest
):
    await database_sync_to_async(ingest)(run, *[(s, "reward/final", "geo", s / 4) for s in range(5)])
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        await socket.send({"type": "catch_up", "after_step": after_step})
        message = await socket.receive()
    assert message["type"] == "metrics.points" and message["catch_up"] is True
    assert message["more"] is False and "through_step" not in message
    assert [p["step"] for p in message["points"]] == steps
    assert [p["value"] for p in message["points"]] == [s / 4 for s in steps]
    assert message["step_times"] == {str(step): await _stored_at(run) for step in steps}


async def test_catch_up_without_a_step_sends_everything(layer, run, user, cookie_for, ingest):
    await database_sync_to_async(ingest)(run, (0, "k", "", 1.0), (1, "k", "", 2.0))
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        await socket.send({"type": "catch_up"})
        assert [p["step"] for p in (await socket.receive())["points"]] == [0, 1]


def _ingest_many(run, points: list[tuple]) -> None:
    """Ingest through the service 10,000 points a call (its limit per batch)."""
    from control.services.metrics import PointIn, metric_points_ingest

    batch = [PointIn(step=s, key=k, source=src, value=v) for s, k, src, v in points]
    for i in range(0, len(batch), 10_000):
        metric_points_ingest(run=run, points=batch[i : i + 10_000])


async def test_a_long_catch_up_comes_in_frames_of_at_most_5000_points_in_whole_steps(
    layer, run, user, cookie_for
):
    # 1,200 steps of 10 series: 12,000 points. Frames end on a step boundary: 5,000 points are
    # steps 0-499 (500 steps x 10), the next 5,000 steps 500-999, the last 2,000 steps 1000-1199.
    sources = [f"s{i}" for i in range(5)]
    points = [
        (step, key, source, step + i / 10)
        for step in range(1200)
        for key in ("reward/final", "count")
        for i, source in enumerate(sources)
    ]
    await database_sync_to_async(_ingest_many)(run, points)
    frames = []
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        after = -1
        while True:
            await socket.send({"type": "catch_up", "after_step": after})
            raw = await socket.communicator.receive_from(timeout=WAIT)
            frames.append((len(raw), json.loads(raw)))
            if not frames[-1][1]["more"]:
                break
            after = frames[-1][1]["through_step"]
    first = frames[0][1]
    assert (len(first["points"]), first["more"], first["through_step"]) == (5000, True, 499)
    assert [(len(f["points"]), f["more"], f.get("through_step")) for _, f in frames] == [
        (5000, True, 499),
        (5000, True, 999),
        (2000, False, None),
    ]
    assert max(size for size, _ in frames) < 400_000  # bytes: ~70 a point, never the whole run
    received = [(p["step"], p["key"], p["source"], p["value"]) for _, f in frames for p in f["points"]]
    assert sorted(received) == sorted(points)  # every point once: no gap, no overlap


async def test_a_step_larger_than_a_frame_is_left_to_the_series_api(layer, run, user, cookie_for):
    # Steps 0-1 hold 2 points each; step 2 alone holds 6,000 (more than a frame): the first frame
    # ends before it, and a catch-up after step 1 sends no point but says more from step 2 on.
    small = [(s, "reward/final", src, 1.0) for s in (0, 1) for src in ("a", "b")]
    large = [(2, f"grad_norm/language.{i}", "", float(i)) for i in range(6000)]
    await database_sync_to_async(_ingest_many)(run, small + large)
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        await socket.send({"type": "catch_up", "after_step": -1})
        first = await socket.receive()
        await socket.send({"type": "catch_up", "after_step": first["through_step"]})
        second = await socket.receive()
        await socket.send({"type": "catch_up", "after_step": 2})
        third = await socket.receive()
    first_steps = [p["step"] for p in first["points"]]
    assert (first_steps, first["more"], first["through_step"]) == ([0, 0, 1, 1], True, 1)
    assert (second["points"], second["more"], second["through_step"]) == ([], True, 1)
    assert (third["points"], third["more"]) == ([], False)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"text": "not json"}, CATCH_UP_HELP),
        ({"text": "[1, 2]"}, CATCH_UP_HELP),
        ({"text": '"catch_up"'}, CATCH_UP_HELP),
        ({"text": "null"}, CATCH_UP_HELP),
        ({"text": '{"type": "subscribe"}'}, CATCH_UP_HELP),
        ({"text": '{"type": "catch_up", "after_step": "3"}'}, "after_step must be an integer"),
        ({"text": '{"type": "catch_up", "after_step": 1.5}'}, "after_step must be an integer"),
        ({"text": '{"type": "catch_up", "after_step": true}'}, "after_step must be an integer"),
        ({"text": '{"type": "catch_up", "after_step": null}'}, "after_step must be an integer"),
        ({"text": "[" * 100_000}, CATCH_UP_HELP),
        ({"text": ""}, "send text frames holding JSON"),
        ({"bytes": b"\x00\x01"}, "send text frames holding JSON"),
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "null",
        "unknown-type",
        "step-string",
        "step-float",
        "step-bool",
        "step-null",
        "deep",
        "empty",
        "binary",
    ],
)
async def test_a_malformed_message_gets_an_error_and_the_socket_stays_usable(
    frame, message, layer, run, user, cookie_for, ingest
):
    await database_sync_to_async(ingest)(run, (0, "k", "", 1.0))
    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        await socket.communicator.send_input({"type": "websocket.receive", **frame})
        assert await socket.receive() == {"type": "error", "message": message}
        await socket.send({"type": "catch_up", "after_step": -1})
        assert [p["step"] for p in (await socket.receive())["points"]] == [0]


async def test_every_watcher_of_a_run_receives_the_points(layer, run, user, viewer, cookie_for, ingest):
    async with (
        Socket(run.pk, cookie=await cookie_for(user)) as first,
        Socket(run.pk, cookie=await cookie_for(viewer)) as second,
    ):
        await database_sync_to_async(ingest)(run, (1, "k", "", 1.0))
        expected = {
            "type": "metrics.points",
            "points": [{"step": 1, "key": "k", "source": "", "value": 1.0}],
            "time": await _stored_at(run),
        }
        assert await first.receive() == expected
        assert await second.receive() == expected


async def test_a_member_sees_each_state_change_of_the_run(layer, run, user, cookie_for):
    from control.services.run_lifecycle import run_transition

    def launch_and_submit():
        run_transition(run=run, to="queued", reason="launched", attempt=1)
        run_transition(run=run, to="submitted", reason="sent", ray_submission_id="job")

    async with Socket(run.pk, cookie=await cookie_for(user)) as socket:
        assert socket.connected
        await database_sync_to_async(launch_and_submit)()
        first, second = await socket.receive(), await socket.receive()
    assert first["type"] == second["type"] == "run.status"
    assert (first["run"]["status"], second["run"]["status"]) == ("queued", "submitted")
    assert second["run"] == {
        "id": run.pk,
        "status": "submitted",
        "attempt": 1,
        "last_step": -1,
        "total_steps": 10,
        "resumed_from_step": None,
        "error": "",
    }


async def test_the_channel_layer_waits_for_messages_longer_than_a_socket_read_timeout(settings):
    """An idle websocket must survive: receive() blocks in Redis until a message comes."""
    import asyncio

    from channels_redis.core import RedisChannelLayer

    config = dict(settings.CHANNEL_LAYERS["default"]["CONFIG"], prefix=f"test-{uuid.uuid4().hex}")
    layer = RedisChannelLayer(**config)
    channel = await layer.new_channel()
    try:
        # Nothing arrives: our own 7 s limit ends the wait, not a Redis read timeout at 5 s.
        with pytest.raises(asyncio.TimeoutError) as caught:
            await asyncio.wait_for(layer.receive(channel), 7)
        assert type(caught.value) is asyncio.TimeoutError
        await layer.send(channel, {"type": "hello"})
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "hello"}
    finally:
        await layer.flush()
        await layer.close_pools()
