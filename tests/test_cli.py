"""`devconnect` and its subcommands print help and exit; they never start a service
to answer `--help`, and refuse an option they do not know (a real subprocess each)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from core.cli import COMMANDS, NO_OPTIONS


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVCONNECT_")}
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_top_level_help_lists_every_command() -> None:
    done = _cli("--help")
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("command", NO_OPTIONS)
def test_a_command_answers_help_without_starting(command: str) -> None:
    started = time.monotonic()
    done = _cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: devconnect {command}")
    assert "DEVCONNECT_" in done.stdout
    # Starting the stack (or a service) takes seconds and prints a banner; help does not.
    assert time.monotonic() - started < 15
    assert "listening" not in done.stdout + done.stderr


def test_an_unknown_option_is_an_error() -> None:
    done = _cli("chatd", "--bogus")
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr


def test_migrate_has_its_own_help() -> None:
    done = _cli("migrate", "--help")
    assert done.returncode == 0
    assert "--recount-unread" in done.stdout


def test_demo_has_its_own_help_and_opens_no_store() -> None:
    done = _cli("demo", "--help")  # no DEVCONNECT_* at all: no store to open
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: devconnect demo")
    assert "--reset" in done.stdout and "--seed" in done.stdout
