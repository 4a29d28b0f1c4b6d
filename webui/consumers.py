from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from control.errors import NotFound
from control.models import Run
from control.selectors.projects import object_get_for_user
from control.selectors.runs import metric_points_after

CATCH_UP_LIMIT = 20_000


@database_sync_to_async
def _run_for(user, run_id: int) -> Run | None:
    try:
        return object_get_for_user(Run.objects.all(), user=user, pk=run_id, label="run")
    except NotFound:
        return None


@database_sync_to_async
def _points_after(run: Run, step: int) -> list[dict]:
    qs = metric_points_after(run=run, step=step).values("step", "key", "source", "value")
    return list(qs[:CATCH_UP_LIMIT])


class RunConsumer(AsyncJsonWebsocketConsumer):
    """Live metrics of one run.

    Events sent: ``metrics.points`` (new points) and ``alerts.fired``. The page sends
    ``{"type": "catch_up", "after_step": N}`` on (re)connect and receives every point
    after its last step, so no gap appears.
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
        points = await _points_after(self.run, after)
        await self.send_json({"type": "metrics.points", "points": points, "catch_up": True})

    async def metrics_points(self, event: dict) -> None:
        await self.send_json({"type": "metrics.points", "points": event["points"]})

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
