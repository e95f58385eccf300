"""One sticky comment per pull request and kind, in as many parts as the report needs.

:func:`reconcile` makes the bot's comments carrying a marker equal to a list of parts: it finds
the bot's own comments with that marker, edits them in place (in the order they were posted, so
part 1 stays on top), posts the parts that are missing and deletes the surplus. Run it again
with the same parts and nothing is written; run it concurrently or after a crash and the next
run still converges on exactly one comment per part. It never appends a duplicate.

Forge-neutral: it needs only :class:`~bot.forges.base.Forge`'s comment methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.forges.base import Comment, Forge
from bot.forges.markers import Marker

MARKER_RESERVE = 200
"""Characters a part must leave free under the forge's comment limit for the marker line (it
takes at most 80: ``<!-- gitops-bot:<kind>@<instance> part NN -->`` and a newline)."""


def part_limit(forge: Forge) -> int:
    """The longest part :func:`reconcile` accepts on ``forge``."""
    return forge.comment_limit - MARKER_RESERVE


def body_of(marker: Marker, part: int, text: str) -> str:
    """A part's comment body: the marker on the first line, then the text."""
    return f"{marker.tag(part=part)}\n{text}"


@dataclass
class StickyResult:
    """What :func:`reconcile` did; ``comments`` are the parts as they now stand, in order."""

    comments: list[Comment] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    edited: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)


def reconcile(forge: Forge, number: int, marker: Marker, parts: Sequence[str]) -> StickyResult:
    """Make the bot's ``marker`` comments on pull request ``number`` read ``parts``.

    An empty ``parts`` deletes them all. Raises ``ValueError`` before writing anything when a
    part is longer than :func:`part_limit`."""
    limit = part_limit(forge)
    for index, text in enumerate(parts, 1):
        if len(text) > limit:
            raise ValueError(
                f"part {index} has {len(text)} characters; at most {limit} fit a "
                f"{forge.provider} comment with its marker"
            )
    me = forge.identity().login.casefold()
    ours = [
        c
        for c in forge.comments(number)
        if c.author.casefold() == me and marker.part_of(c.body) is not None
    ]
    # Oldest first: the comment posted first keeps part 1, so the summary stays on top.
    ours.sort(key=lambda c: c.id)
    result = StickyResult()
    for index, text in enumerate(parts, 1):
        body = body_of(marker, index, text)
        if index <= len(ours):
            existing = ours[index - 1]
            if existing.body == body:
                result.unchanged.append(existing.id)
                result.comments.append(existing)
            else:
                result.comments.append(forge.edit_comment(number, existing.id, body))
                result.edited.append(existing.id)
        else:
            created = forge.create_comment(number, body)
            result.comments.append(created)
            result.created.append(created.id)
    for surplus in ours[len(parts) :]:
        forge.delete_comment(number, surplus.id)
        result.deleted.append(surplus.id)
    return result
