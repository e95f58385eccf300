"""Parsing of ``/sync`` and ``/help`` comments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.commands import HELP_TEXT, MAX_SYNC_APPS, Command, is_app_name, parse_command


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/sync", Command("sync")),
        ("  /sync  ", Command("sync")),
        ("\n\n/sync\nplease re-check", Command("sync")),
        ("/sync\r\nwith CRLF", Command("sync")),
        ("/SYNC", Command("sync")),
        ("/Sync web", Command("sync", ("web",))),
        ("/sync web api", Command("sync", ("web", "api"))),
        ("/sync\tweb,api , db", Command("sync", ("web", "api", "db"))),
        ("/sync web api web", Command("sync", ("web", "api"))),
        ("/sync Web WEB", Command("sync", ("web",))),
        ("/sync a", Command("sync", ("a",))),
        ("/sync " + "a" * 63, Command("sync", ("a" * 63,))),
        ("/help", Command("help")),
        ("/HELP me", Command("help")),
        ("/sync web\n/help", Command("sync", ("web",))),
    ],
)
def test_commands(body: str, expected: Command) -> None:
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   \n\t ",
        "sync",
        "please /sync",
        "> /sync",
        "/synchronize",
        "/syncweb",
        "/deploy web",
        "LGTM\n/sync",
        "`/sync`",
    ],
)
def test_not_commands(body: str) -> None:
    assert parse_command(body) is None


@pytest.mark.parametrize(
    ("body", "args", "fragment"),
    [
        ("/sync web_app", ("web_app",), "`web_app` is not a valid app name"),
        ("/sync -web", ("-web",), "`-web` is not a valid app name"),
        ("/sync web- api", ("web-", "api"), "`web-` is not a valid app name"),
        ("/sync ../etc", ("../etc",), "`../etc` is not a valid app name"),
        ("/sync " + "a" * 64, ("a" * 64,), "is not a valid app name"),
        ("/sync a.b c/d", ("a.b", "c/d"), "`a.b`, `c/d` are not valid app names"),
        ("/sync we`b", ("we`b",), "`we'b` is not a valid app name"),
        ("/sync é", ("é",), "`é` is not a valid app name"),
    ],
)
def test_invalid_sync(body: str, args: tuple[str, ...], fragment: str) -> None:
    command = parse_command(body)
    assert command == Command("invalid", args)
    assert fragment in command.error


def test_too_many_apps() -> None:
    names = [f"app-{i}" for i in range(MAX_SYNC_APPS + 1)]
    command = parse_command("/sync " + " ".join(names))
    assert command is not None
    assert command.name == "invalid"
    assert (
        command.error
        == f"`/sync` takes at most {MAX_SYNC_APPS} app names; {MAX_SYNC_APPS + 1} were given."
    )


def test_error_rebuilt_from_queued_args() -> None:
    # A worker only has CommandEvent.command/args; the explanation must come back from them.
    command = parse_command("/sync good bad_name")
    assert command is not None
    assert Command(command.name, tuple(command.args)).error == command.error != ""


def test_valid_commands_have_no_error() -> None:
    assert Command("sync", ("web",)).error == ""
    assert Command("help").error == ""


def test_help_text_lists_every_command() -> None:
    for word in ("/sync", "/sync app-a app-b", "/help"):
        assert f"`{word}`" in HELP_TEXT


def test_help_text_first_line_is_not_a_command() -> None:
    # The bot posts HELP_TEXT itself; it must never read back as a command.
    assert parse_command(HELP_TEXT) is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_parses_or_is_none(body: str) -> None:
    command = parse_command(body)
    if command is None:
        return
    assert command.name in ("sync", "help", "invalid")
    if command.name == "sync":
        assert all(is_app_name(a) for a in command.args)
        assert len(set(command.args)) == len(command.args)
    if command.name == "invalid":
        assert command.error


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True), max_size=10)
)
def test_valid_names_round_trip(names: list[str]) -> None:
    command = parse_command("/sync " + " ".join(names))
    assert command == Command("sync", tuple(dict.fromkeys(names)))
