"""``./triune``'s command line: pytest and manage.py options pass through untouched."""

from __future__ import annotations

import pytest

from control.launcher import cmd_manage, cmd_test, cmd_up, parse_command


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


@pytest.mark.parametrize(
    "argv", [[], ["deploy"], ["up", "--port", "eighty"], ["up", "--unknown"], ["--test"]]
)
def test_bad_command_lines_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_command(argv)
    assert exit_info.value.code == 2
    assert "usage: triune" in capsys.readouterr().err
