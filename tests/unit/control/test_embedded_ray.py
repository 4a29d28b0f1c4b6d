"""The local Ray head's command line and environment, without starting it."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from control.embedded import RAY_TEMP_DIR_MAX, EmbeddedRay, ensure_ray_token, ray_temp_dir

ROOT = Path(__file__).resolve().parents[3]
PORTS = {
    "gcs": 41001,
    "dashboard": 41002,
    "agent": 41003,
    "client": 41004,
    "dashboard_metrics": 41005,
    "autoscaler_metrics": 41006,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("TRIUNE_RAY_CPUS", "TRIUNE_RAY_GPUS", "TRIUNE_RAY_OBJECT_STORE_MB"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_a_short_data_dir_is_rays_temp_dir() -> None:
    short = Path("/tmp/tr/ray")
    assert ray_temp_dir(short) == short


def test_a_long_data_dir_gets_a_short_stable_temp_dir_in_tmp() -> None:
    long = Path("/srv/" + "triune-data-" * 5 + "/ray")
    temp = ray_temp_dir(long)
    # Ray's plasma socket adds 64 characters; a unix socket path holds at most 107.
    assert len(str(temp)) <= RAY_TEMP_DIR_MAX and len(str(temp)) + 64 <= 107
    assert temp.parent == Path("/tmp") and temp.name.startswith("triune-ray-")
    assert ray_temp_dir(long) == temp and ray_temp_dir(long / "other") != temp


def test_the_token_is_made_once_and_only_the_owner_reads_it(tmp_path: Path) -> None:
    path = ensure_ray_token(tmp_path / "ray")
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0  # 32 random bytes as hex
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_ray_token(tmp_path / "ray").read_text() == token


def test_the_command_binds_loopback_with_every_port_explicit(tmp_path: Path, clean_env) -> None:
    ray = EmbeddedRay(tmp_path / "ray", num_cpus=1, ports=dict(PORTS))
    command = ray.command()
    assert command[0] == str(Path(sys.executable).parent / "ray")
    assert command[1:4] == ["start", "--head", "--block"]
    assert _option(command, "--node-ip-address") == "127.0.0.1"
    assert _option(command, "--dashboard-host") == "127.0.0.1"
    assert _option(command, "--port") == "41001"  # never Ray's default 6379, the machine's Redis
    assert _option(command, "--dashboard-port") == "41002"
    assert _option(command, "--dashboard-agent-listen-port") == "41003"
    assert _option(command, "--ray-client-server-port") == "41004"
    assert (_option(command, "--min-worker-port"), _option(command, "--max-worker-port")) == ("0", "0")
    assert _option(command, "--num-cpus") == "1"
    assert _option(command, "--num-gpus") == "0"
    assert _option(command, "--object-store-memory") == str(512 * 1024**2)
    assert _option(command, "--include-dashboard") == "true"
    assert "--disable-usage-stats" in command
    assert _option(command, "--temp-dir") == str(ray_temp_dir(tmp_path / "ray"))


def test_resources_come_from_the_environment(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("TRIUNE_RAY_CPUS", "3")
    clean_env.setenv("TRIUNE_RAY_GPUS", "0.5")
    clean_env.setenv("TRIUNE_RAY_OBJECT_STORE_MB", "200")
    command = EmbeddedRay(tmp_path, ports=dict(PORTS)).command()
    assert _option(command, "--num-cpus") == "3"
    assert _option(command, "--num-gpus") == "0.5"
    assert _option(command, "--object-store-memory") == str(200 * 1024**2)


def test_without_settings_the_head_offers_every_cpu_and_no_gpu(tmp_path: Path, clean_env) -> None:
    ray = EmbeddedRay(tmp_path)
    assert (ray.num_cpus, ray.num_gpus, ray.object_store_mb) == (float(os.cpu_count() or 1), 0.0, 512)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("two", "TRIUNE_RAY_CPUS must be a number, got 'two'"),
        ("-1", "TRIUNE_RAY_CPUS must be at least 0, got '-1'"),
    ],
)
def test_bad_resource_settings_are_refused(tmp_path: Path, clean_env, value: str, error: str) -> None:
    clean_env.setenv("TRIUNE_RAY_CPUS", value)
    with pytest.raises(RuntimeError) as exc_info:
        EmbeddedRay(tmp_path)
    assert str(exc_info.value) == error


def test_the_environment_runs_jobs_with_this_venv_and_token_auth(tmp_path: Path, clean_env) -> None:
    clean_env.setenv("PATH", "/usr/bin:/bin")
    clean_env.setenv("PYTHONPATH", "/opt/extra")
    clean_env.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    clean_env.setenv("RAY_AUTH_TOKEN", "someone-elses")
    ray = EmbeddedRay(tmp_path / "ray", ports=dict(PORTS))
    env = ray.environment()
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin", "/bin"]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/opt/extra"]
    assert (env["RAY_AUTH_MODE"], env["RAY_AUTH_TOKEN_PATH"]) == (
        "token",
        str(tmp_path / "ray" / "auth_token"),
    )
    assert "RAY_ADDRESS" not in env and "RAY_AUTH_TOKEN" not in env
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    # Without it ray start swaps --node-ip-address 127.0.0.1 for the machine's address.
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert (env["DASHBOARD_METRIC_PORT"], env["AUTOSCALER_METRIC_PORT"]) == ("41005", "41006")


def test_ports_are_distinct_and_never_6379(tmp_path: Path, clean_env) -> None:
    ports = EmbeddedRay(tmp_path).choose_ports()
    assert set(ports) == set(PORTS)
    assert len(set(ports.values())) == len(ports) and 6379 not in ports.values()


def test_a_stopped_or_never_started_head_has_no_processes(tmp_path: Path, clean_env) -> None:
    ray = EmbeddedRay(tmp_path)
    assert ray.pids() == set() and ray.exit_code() is None
    ray.stop()  # nothing to stop
