from __future__ import annotations

import json
from datetime import datetime

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from control.errors import NotFound
from control.models import Run
from control.selectors.projects import object_get_for_user
from control.selectors.runs import metric_points_after

# Points in one catch-up frame at most (~70 bytes each as JSON, so ~350 kB): a page that was away
# longer gets the first complete steps here and reads the rest from the downsampled series API.
CATCH_UP_LIMIT = 5_000


@database_sync_to_async
def _run_for(user, run_id: int) -> Run | None:
    try:
        return object_get_for_user(Run.objects.all(), user=user, pk=run_id, label="run")
    except NotFound:
        return None


@database_sync_to_async
def _points_after(run: Run, step: int) -> tuple[list[dict], int | None]:
    """The points after ``step``, at most CATCH_UP_LIMIT, in whole steps; and the step they end at
    when more points follow (None when these are all).

    One point past the limit is read to know whether more follow; the step it belongs to is
    left out entirely, so a page never draws half a step and then asks after it.
    """
    qs = metric_points_after(run=run, step=step).values("step", "key", "source", "value", "created_at")
    points = list(qs[: CATCH_UP_LIMIT + 1])
    if len(points) <= CATCH_UP_LIMIT:
        return points, None
    cut = points[CATCH_UP_LIMIT]["step"]
    return [p for p in points[:CATCH_UP_LIMIT] if p["step"] < cut], cut - 1


def _step_times(points: list[dict]) -> dict[str, str]:
    """When each step of ``points`` was stored (its latest point), taking ``created_at`` off the points:
    a step's points come in one batch or a few, so one time a step is what a chart's wall-time axis
    needs, at a fraction of the bytes of one a point."""
    times: dict[int, datetime] = {}
    for point in points:
        created = point.pop("created_at")
        if point["step"] not in times or created > times[point["step"]]:
            times[point["step"]] = created
    return {str(step): time.isoformat() for step, time in times.items()}


class RunConsumer(AsyncJsonWebsocketConsumer):
    """Live metrics of one run.

    Events sent: ``metrics.points`` (new points, with ``time``: when they were stored),
    ``run.status`` and ``alerts.fired``. A page
    loads its history from the series API up to step S, connects, and sends
    ``{"type": "catch_up", "after_step": S}``; it receives the points after S (and ``step_times``,
    when each step was stored) in one frame
    ``{"type": "metrics.points", "points": [...], "catch_up": true, "more": false}``, so no gap
    appears between its history and the live points. A frame never holds more than
    CATCH_UP_LIMIT points: when more follow, it holds the whole steps up to K and says
    ``"more": true, "through_step": K``, and the page reads the steps after K from the series
    API (downsampled) instead.
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.run = await _run_for(user, int(self.scope["url_route"]["kwargs"]["run_id"]))
        if self.run is None:
            await self.close(code=4404)
            return
        self.group = f"run.{self.run.pk}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        # The base class raises on a binary or empty frame, which drops the connection.
        if not text_data:
            await self.send_json({"type": "error", "message": "send text frames holding JSON"})
            return
        await super().receive(text_data=text_data, **kwargs)

    async def receive_json(self, content, **kwargs) -> None:
        if not isinstance(content, dict) or content.get("type") != "catch_up":
            await self.send_json(
                {"type": "error", "message": 'send {"type": "catch_up", "after_step": <int>}'}
            )
            return
        after = content.get("after_step", -1)
        if not isinstance(after, int) or isinstance(after, bool):
            await self.send_json({"type": "error", "message": "after_step must be an integer"})
            return
        points, through = await _points_after(self.run, after)
        frame = {
            "type": "metrics.points",
            "points": points,
            "step_times": _step_times(points),
            "catch_up": True,
            "more": through is not None,
        }
        if through is not None:
            frame["through_step"] = through
        await self.send_json(frame)

    async def metrics_points(self, event: dict) -> None:
        frame = {"type": "metrics.points", "points": event["points"]}
        if "time" in event:
            frame["time"] = event["time"]
        await self.send_json(frame)

    async def run_status(self, event: dict) -> None:
        await self.send_json({"type": "run.status", "run": event["run"]})

    async def alerts_fired(self, event: dict) -> None:
        await self.send_json({"type": "alerts.fired", "alert": event["alert"]})

    @classmethod
    async def decode_json(cls, text_data):
        try:
            return json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the recursion limit
            return None
