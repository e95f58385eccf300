"""Parse the bot commands people write in PR/MR comments: ``/sync [app…]`` and ``/help``.

Pure functions on text, shared by the GitHub and GitLab intake (``bot.webhooks``) and by the
task that answers a command.

Rules:

* Only the first non-blank line of the comment counts, so a command can be followed by an
  explanation, and a quoted command (``> /sync``) is not one.
* The command word is case-insensitive (``/Sync`` works); anything that is not exactly
  ``/sync`` or ``/help`` is not a command (``None``), so the bot stays quiet on other slash
  words people or other bots use.
* ``/sync`` takes optional app names separated by spaces or commas. Names are DNS labels
  (``a-z``, ``0-9``, ``-``, at most 63 characters), compared case-insensitively and returned in
  lower case, duplicates dropped, order kept.
* A ``/sync`` with a malformed app name (or too many names) is not dropped silently: it parses
  to a command named ``"invalid"`` whose ``args`` are the words as written. ``Command.error``
  re-derives the explanation from those words, so a worker holding only the queued
  ``CommandEvent`` (``command="invalid"``, ``args=...``) can answer with
  ``Command("invalid", event.args).error`` followed by :data:`HELP_TEXT`.
* ``/help`` ignores anything after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

CommandName = Literal["sync", "help", "invalid"]

#: Most app names one ``/sync`` may list; more is almost certainly a pasted paragraph.
MAX_SYNC_APPS = 50
#: Longest app name accepted (a DNS label).
MAX_APP_NAME_LENGTH = 63

HELP_TEXT = """\
**gitops-bot commands** (write them as the first line of a comment on this pull request):

| Command | What it does |
|---|---|
| `/sync` | Re-run the preview for every app this pull request touches, at its current head and base, against the cluster as it is now. |
| `/sync app-a app-b` | The same, with the named apps previewed too even if this pull request does not touch them (names separated by spaces or commas). |
| `/help` | Show this message. |

Only people with write access to the repository can run commands.

App names are the names from `.gitops.yaml`: lower-case letters, digits and `-`, at most 63 characters.
"""

_APP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SEPARATORS = re.compile(r"[\s,]+")
_COMMAND_WORDS: dict[str, CommandName] = {"/sync": "sync", "/help": "help"}


@dataclass(frozen=True)
class Command:
    """One parsed command.

    ``name`` is ``"sync"``, ``"help"`` or ``"invalid"``; ``args`` are the app names for
    ``sync`` (normalised), nothing for ``help``, and the words as written for ``invalid``."""

    name: CommandName
    args: tuple[str, ...] = ()

    @property
    def error(self) -> str:
        """What is wrong with an ``invalid`` command, for the reply; ``""`` for valid ones."""
        if self.name != "invalid":
            return ""
        return _explain_invalid(self.args)


def parse_command(body: str) -> Command | None:
    """The command on the first non-blank line of ``body``, or ``None`` if it holds none."""
    first_line = _first_line(body)
    if not first_line:
        return None
    parts = first_line.split(None, 1)
    word = parts[0]
    rest = parts[1] if len(parts) > 1 else ""
    name = _COMMAND_WORDS.get(word.lower())
    if name is None:
        return None
    if name == "help":
        return Command("help")
    words = tuple(w for w in _SEPARATORS.split(rest) if w)
    apps = normalise_app_names(words)
    if apps is None:
        return Command("invalid", words)
    return Command("sync", apps)


def normalise_app_names(words: tuple[str, ...]) -> tuple[str, ...] | None:
    """Lower-cased, de-duplicated app names in first-seen order; ``None`` if any is malformed."""
    if len(words) > MAX_SYNC_APPS:
        return None
    seen: dict[str, None] = {}
    for word in words:
        name = word.lower()
        if not is_app_name(name):
            return None
        seen.setdefault(name, None)
    return tuple(seen)


def is_app_name(name: str) -> bool:
    """True for a valid (lower-case) app name: a DNS label."""
    return _APP_NAME.fullmatch(name) is not None


def _first_line(body: str) -> str:
    for line in body.splitlines():
        stripped = line.strip()
        if stripped:
            return stripped
    return ""


def _explain_invalid(words: tuple[str, ...]) -> str:
    if len(words) > MAX_SYNC_APPS:
        return f"`/sync` takes at most {MAX_SYNC_APPS} app names; {len(words)} were given."
    bad = [w for w in words if not is_app_name(w.lower())]
    if not bad:
        return ""
    shown = ", ".join(f"`{_shorten(w)}`" for w in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    noun = "is not a valid app name" if len(bad) == 1 else "are not valid app names"
    return (
        f"{shown}{more} {noun}: app names use lower-case letters, digits and `-` "
        f"(at most {MAX_APP_NAME_LENGTH} characters)."
    )


def _shorten(word: str, limit: int = 40) -> str:
    # Backticks inside the word would break the Markdown code span of the reply.
    cleaned = word.replace("`", "'")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
