"""``./dev``, the project's entry point for humans: its usage is the help text and nothing else
(issue 11.15: it once printed its own ``set -euo pipefail``), names every command it runs, and
an unknown command is an error that shows the usage."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

DEV = Path(__file__).resolve().parent.parent / "dev"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEV), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_no_arguments_prints_the_usage_and_only_the_usage() -> None:
    bare, help_ = run(), run("--help")
    assert bare.returncode == 0 and bare.stderr == ""
    assert bare.stdout == help_.stdout
    assert bare.stdout.startswith("usage: ./dev COMMAND [ARGS]\n")
    assert "set -euo" not in bare.stdout and "#!" not in bare.stdout and "EOF" not in bare.stdout
    # every command the script dispatches is in its usage
    commands = re.findall(r"^  ([a-z-]+)\)$", DEV.read_text(), flags=re.MULTILINE)
    assert {"setup", "serve", "gitops-bot", "test", "demo", "bench"} <= set(commands)
    for command in commands:
        assert re.search(rf"^  {re.escape(command)}\b", bare.stdout, flags=re.MULTILINE), command


def test_an_unknown_command_is_an_error_showing_the_usage() -> None:
    wrong = run("deploy")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.startswith("./dev: unknown command 'deploy'\nusage: ./dev COMMAND")
