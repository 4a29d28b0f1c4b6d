"""What ``./triune up`` and the reward service listen on by default: loopback only, never 0.0.0.0.

The Ray head's dashboard serves the Jobs API (submit any command to the cluster), Redis holds the
broker, the reward service runs verifiers on what it is sent: none of them may be reachable from
another machine unless a deployment says so. Checked on the command lines and addresses they would
use; nothing is started but the reward service's HTTP thread, on a free port, closed at once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from control.embedded import EmbeddedRay, EmbeddedRedis
from control.launcher import parse_command
from tests.unit.control.test_embedded_ray import PORTS

LOOPBACK = "127.0.0.1"
ANY = ("0.0.0.0", "::", "[::]")


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_ray_head_binds_its_node_dashboard_and_jobs_api_to_loopback(tmp_path: Path) -> None:
    ray = EmbeddedRay(tmp_path / "ray", num_cpus=1, ports=dict(PORTS))
    command = ray.command()
    # --node-ip-address places the GCS, raylet and dashboard agent; --dashboard-host the dashboard,
    # which serves the Jobs API.
    assert _option(command, "--node-ip-address") == LOOPBACK
    assert _option(command, "--dashboard-host") == LOOPBACK
    assert not any(value in ANY for value in command)
    assert not any(value in ANY for value in ray.environment().values())


def test_embedded_redis_binds_loopback_in_protected_mode(tmp_path: Path, monkeypatch) -> None:
    started: list[list[str]] = []

    class Recorded:
        def __init__(self, args, **kwargs) -> None:
            started.append(list(args))

        def poll(self) -> None:
            return None

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    monkeypatch.setattr("control.embedded.port_open", lambda host, port, timeout=0.5: True)
    url = EmbeddedRedis(tmp_path / "redis", port=41007).start()
    [command] = started
    assert _option(command, "--bind") == LOOPBACK
    assert _option(command, "--protected-mode") == "yes"
    assert url == "redis://127.0.0.1:41007/0"


def test_the_web_server_listens_on_loopback_unless_told(monkeypatch) -> None:
    monkeypatch.delenv("TRIUNE_HOST", raising=False)
    assert parse_command(["up"]).host == LOOPBACK
    monkeypatch.setenv("TRIUNE_HOST", "0.0.0.0")  # a deployment's own choice
    assert parse_command(["up"]).host == "0.0.0.0"


def test_the_reward_service_binds_loopback_by_default() -> None:
    from trainer.rewards.service import RewardService, build_parser

    assert build_parser().parse_args(["--port", "0"]).host == LOOPBACK
    # The pool is used only once a request arrives; none does.
    with RewardService(pool=None, token="t") as service:
        assert service.address.startswith("http://127.0.0.1:")
