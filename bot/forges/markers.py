"""Names that tell this bot's statuses, comments and issues from everyone else's.

``GITOPS_INSTANCE`` goes into every status context and every hidden marker, so two bots on one
repository (a staging and a production installation) each find and edit only their own:

>>> status_context("preview", "")
'gitops/preview'
>>> status_context("deploy", "prod")
'gitops/prod/deploy'
>>> Marker("preview", "prod").tag(part=2)
'<!-- gitops-bot:preview@prod part 2 -->'

A marker is an HTML comment: invisible in rendered Markdown on GitHub and GitLab, kept verbatim
in the body the API returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KIND = re.compile(r"[a-z][a-z0-9-]{0,30}")
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def status_context(kind: str, instance: str) -> str:
    """The commit status context of ``kind`` (``preview``, ``deploy``, ``drift``)."""
    _check(kind, instance)
    return f"gitops/{instance}/{kind}" if instance else f"gitops/{kind}"


@dataclass(frozen=True)
class Marker:
    """The hidden marker of one kind of bot-owned text (``preview``, ``deploy``, ``drift``) for
    one bot instance."""

    kind: str
    instance: str = ""

    def __post_init__(self) -> None:
        _check(self.kind, self.instance)

    @property
    def key(self) -> str:
        """``gitops-bot:<kind>`` or ``gitops-bot:<kind>@<instance>``."""
        return (
            f"gitops-bot:{self.kind}@{self.instance}"
            if self.instance
            else f"gitops-bot:{self.kind}"
        )

    def tag(self, *, part: int | None = None) -> str:
        """The HTML comment to put on the first line of a body (``part`` for sticky comments
        in several parts, counted from 1)."""
        suffix = f" part {part}" if part is not None else ""
        return f"<!-- {self.key}{suffix} -->"

    def part_of(self, body: str) -> int | None:
        """The part number when ``body`` carries this marker (1 for a marker without a part),
        else None. Only the first line counts, so a comment quoting the marker is not ours."""
        first = body.split("\n", 1)[0].strip()
        match = re.fullmatch(r"<!-- (\S+?)(?: part (\d{1,4}))? -->", first)
        if match is None or match.group(1) != self.key:
            return None
        return int(match.group(2) or 1)

    def in_body(self, body: str) -> bool:
        """True when ``body`` carries this marker on its first line."""
        return self.part_of(body) is not None


def _check(kind: str, instance: str) -> None:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"marker kind {kind!r} must be lower-case letters, digits and '-'")
    if instance and not _INSTANCE.fullmatch(instance):
        raise ValueError(f"instance {instance!r} is not a valid GITOPS_INSTANCE")
