"""``./triune``'s command line: pytest and manage.py options pass through untouched; ``token``'s options;
``up``'s web processes."""

from __future__ import annotations

import socket
import sys

import pytest

from control.launcher import (
    cmd_manage,
    cmd_test,
    cmd_token,
    cmd_up,
    parse_command,
    ray_enabled,
    ray_jobs_url,
    token_code,
    web_command,
    web_socket,
)


def test_options_after_test_go_to_pytest() -> None:
    args = parse_command(["test", "-x", "-q", "-k", "not slow", "tests/unit"])
    assert args.func is cmd_test
    assert args.pytest_args == ["-x", "-q", "-k", "not slow", "tests/unit"]


def test_test_without_arguments_runs_everything() -> None:
    assert parse_command(["test"]).pytest_args == []


def test_options_after_manage_go_to_manage_py() -> None:
    args = parse_command(["manage", "--help"])
    assert args.func is cmd_manage
    assert args.manage_args == ["--help"]


def test_up_takes_host_and_port() -> None:
    args = parse_command(["up", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.func, args.host, args.port) == (cmd_up, "0.0.0.0", 9000)


def test_up_runs_one_web_process_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIUNE_WEB_PROCESSES", raising=False)
    assert parse_command(["up"]).web_processes == 1


@pytest.mark.parametrize(("value", "count"), [("1", 1), ("2", 2), ("64", 64), (" 8 ", 8)])
def test_up_takes_web_processes(value: str, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIUNE_WEB_PROCESSES", raising=False)
    assert parse_command(["up", "--web-processes", value]).web_processes == count


def test_web_processes_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIUNE_WEB_PROCESSES", "3")
    assert parse_command(["up"]).web_processes == 3
    assert parse_command(["up", "--web-processes", "2"]).web_processes == 2  # the option wins


@pytest.mark.parametrize(
    ("argv", "env", "shown"),
    [
        (["up", "--web-processes", "0"], None, "'0'"),
        (["up", "--web-processes", "65"], None, "'65'"),
        (["up", "--web-processes", "-2"], None, "'-2'"),
        (["up", "--web-processes", "two"], None, "'two'"),
        (["up", "--web-processes", "1.5"], None, "'1.5'"),
        (["up"], "0", "'0'"),
        (["up"], "many", "'many'"),
    ],
)
def test_bad_web_processes_exit_with_usage(
    argv: list[str], env: str | None, shown: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    if env is None:
        monkeypatch.delenv("TRIUNE_WEB_PROCESSES", raising=False)
    else:
        monkeypatch.setenv("TRIUNE_WEB_PROCESSES", env)
    with pytest.raises(SystemExit) as exit_info:
        parse_command(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: triune" in err
    assert (
        f"argument --web-processes: the number of web processes is a whole number from 1 to 64, got {shown}"
        in err
    )


def test_web_command_binds_or_serves_an_inherited_socket() -> None:
    app = "control.asgi:application"
    assert web_command(host="0.0.0.0", port=9000) == [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "0.0.0.0",
        "-p",
        "9000",
        app,
    ]
    assert web_command(fd=7) == [sys.executable, "-m", "daphne", "--fd", "7", app]


def test_web_socket_listens_and_is_inherited() -> None:
    sock = web_socket("127.0.0.1", 0)
    try:
        assert sock.get_inheritable()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass  # queued in the backlog: the port is open before any process accepts
    finally:
        sock.close()


def test_web_socket_refuses_an_ipv6_address() -> None:
    with pytest.raises(
        SystemExit, match=r"--web-processes above 1 needs an IPv4 address or name to listen on, got '::1'"
    ):
        web_socket("::1", 0)


def test_web_socket_says_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            SystemExit, match=rf"triune: cannot listen on 127.0.0.1:{port}: Address already in use"
        ):
            web_socket("127.0.0.1", port)


@pytest.mark.parametrize(
    "argv", [[], ["deploy"], ["up", "--port", "eighty"], ["up", "--unknown"], ["--test"]]
)
def test_bad_command_lines_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_command(argv)
    assert exit_info.value.code == 2
    assert "usage: triune" in capsys.readouterr().err


def test_token_defaults_to_the_admin_user_and_the_name_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIUNE_ADMIN_USER", raising=False)
    args = parse_command(["token"])
    assert (args.func, args.user, args.name) == (cmd_token, "admin", "cli")


def test_token_user_comes_from_triune_admin_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIUNE_ADMIN_USER", "root-of-all")
    assert parse_command(["token"]).user == "root-of-all"


def test_token_takes_name_and_user() -> None:
    args = parse_command(["token", "--name", "ci pipeline", "--user", "bob"])
    assert (args.func, args.user, args.name) == (cmd_token, "bob", "ci pipeline")


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["token", "--name", ""], "a token name has 1 to 100 characters, got 0"),
        (["token", "--name", "x" * 101], "a token name has 1 to 100 characters, got 101"),
        (["token", "--bogus"], "unrecognized arguments: --bogus"),
        (["token", "--user"], "argument --user: expected one argument"),
    ],
)
def test_bad_token_command_lines_exit_with_usage(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_command(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: triune" in err and error in err


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("http://10.0.0.5:8265", "http://10.0.0.5:8265"),
        ("https://ray.example.org/", "https://ray.example.org"),
        ("10.0.0.5:8265", "http://10.0.0.5:8265"),
        (" head.lab:8265 ", "http://head.lab:8265"),
        ("ray://10.0.0.5:10001", None),
        ("auto", None),
    ],
)
def test_ray_address_to_jobs_url(address: str, url: str | None) -> None:
    assert ray_jobs_url(address) == url


@pytest.mark.parametrize(
    ("value", "enabled"), [(None, True), ("1", True), ("0", False), ("false", False), ("OFF", False)]
)
def test_triune_ray_switches_the_head_off(value: str | None, enabled: bool, monkeypatch) -> None:
    if value is None:
        monkeypatch.delenv("TRIUNE_RAY", raising=False)
    else:
        monkeypatch.setenv("TRIUNE_RAY", value)
    assert ray_enabled() is enabled


@pytest.mark.parametrize("username", ["admin", "o'brien", 'say "hi"\n', "x\\y"])
def test_token_code_quotes_the_user_and_name(username: str) -> None:
    code = token_code(username=username, name="it's mine")
    namespace: dict = {}
    exec(compile(code.split("\n", 1)[0], "<token>", "exec"), namespace)  # only the assignment line
    assert (namespace["USERNAME"], namespace["NAME"]) == (username, "it's mine")
    compile(code, "<token>", "exec")
