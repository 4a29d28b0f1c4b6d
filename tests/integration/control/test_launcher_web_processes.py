"""``./triune up --web-processes 2`` for real: two daphne processes on one listening socket.

The launcher's own helpers start them, as ``up`` does, against the test database. Which process
accepted a connection is read from the kernel (``psutil``: the process holding the socket whose
peer is our end), so the test adds nothing to the views. Both must serve HTTP, and a point
ingested through the shared port must reach websockets held by either process (the Redis channel
layer carries it across).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import time
from urllib.parse import quote

import aiohttp
import psutil
import pytest

from control.embedded import free_port
from control.launcher import web_answers, web_processes_start, web_socket

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_REQUESTS = 40
MAX_SOCKETS = 40  # opened until each process holds a websocket; an even spread needs 2 or 3
DEADLINE_S = 60


def _owner(pids: list[int], local: tuple[str, int]) -> int | None:
    """The pid of ``pids`` holding the accepted end of our connection from ``local``."""
    for pid in pids:
        for conn in psutil.Process(pid).net_connections("tcp"):
            if conn.raddr and (conn.raddr.ip, conn.raddr.port) == local:
                return pid
    return None


@pytest.fixture
def web(tmp_path):
    """Two web processes sharing a port; yields (port, pids); stops them by pid."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    host = quote(db["HOST"] or "127.0.0.1", safe="")
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{host}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DEBUG": "0",
    }
    port = free_port()
    sock = web_socket("127.0.0.1", port)
    with (tmp_path / "web.log").open("wb") as log:
        try:
            procs = web_processes_start(sock, 2, env=env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            sock.close()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not web_answers("127.0.0.1", port):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                pytest.fail(f"the web processes did not start:\n{(tmp_path / 'web.log').read_text()[-3000:]}")
            time.sleep(0.1)
        yield port, [p.pid for p in procs]
        assert [p.poll() for p in procs] == [None, None], "a web process exited under the test"
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def test_up_takes_two_web_processes_on_one_port(web) -> None:
    port, pids = web
    served: dict[int | None, int] = {}
    statuses = []
    deadline = time.monotonic() + DEADLINE_S
    # The second process may still be importing Django when the first answers: until it accepts,
    # the first takes every connection; go on (bounded) until both have served.
    while len(served) < HEALTH_REQUESTS or set(pids) - set(served):
        if len(statuses) >= 10 * HEALTH_REQUESTS or time.monotonic() > deadline:
            break
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            statuses.append((response.status, json.loads(response.read())))
            # Asked while the connection is open (keep-alive): the process holding it served it.
            pid = _owner(pids, conn.sock.getsockname())
            served[pid] = served.get(pid, 0) + 1
        finally:
            conn.close()
    assert len(statuses) >= HEALTH_REQUESTS
    assert all(status == (200, {"status": "ok"}) for status in statuses), statuses
    assert set(served) == set(pids), f"connections served per pid: {served}"


def test_points_reach_websockets_held_by_either_process(web, user, project, make_run) -> None:
    from django.test import Client

    from control.services.tokens import api_token_create

    port, pids = web
    run = make_run(project)
    _, token = api_token_create(user=user, name="ingest", run=run)
    browser = Client()
    browser.force_login(user)
    session = browser.cookies["sessionid"].value
    base = f"http://127.0.0.1:{port}"

    async def scenario() -> tuple[dict[int, int], list[dict]]:
        headers = {"Origin": base, "Cookie": f"sessionid={session}"}
        async with aiohttp.ClientSession() as http_session:
            sockets, held = [], {}
            try:
                while set(pids) - set(held) and len(sockets) < MAX_SOCKETS:
                    ws = await http_session.ws_connect(
                        f"ws://127.0.0.1:{port}/ws/runs/{run.pk}/", headers=headers
                    )
                    sockets.append(ws)
                    pid = _owner(pids, ws.get_extra_info("sockname")[:2])
                    held[pid] = held.get(pid, 0) + 1
                # Joined its run's group once the server answered a message (catch_up of nothing).
                for ws in sockets:
                    await ws.send_json({"type": "catch_up", "after_step": 10**6})
                    assert (await ws.receive_json(timeout=20))["catch_up"] is True
                body = {"points": [{"step": 7, "source": "", "key": "perf/step_time", "value": 1.5}]}
                async with http_session.post(
                    f"{base}/api/v1/runs/{run.pk}/metrics/",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status == 200, await response.text()
                frames = [await ws.receive_json(timeout=20) for ws in sockets]
            finally:
                for ws in sockets:
                    await ws.close()
        return held, frames

    held, frames = asyncio.run(scenario())
    assert set(held) == set(pids), f"websockets held per pid: {held}"
    for frame in frames:
        assert frame["type"] == "metrics.points"
        assert frame["points"] == [{"step": 7, "key": "perf/step_time", "source": "", "value": 1.5}]
