"""Render a :class:`~bot.model.RunResult` for people (Markdown, text) and programs (JSON).

Pure functions from results to strings; they never learn which engine made the result.

The Markdown report becomes the bot's sticky PR/MR comment, so it is built to survive the forge:

* a hidden marker comment first, so the forge adapter can find and edit its own comment;
* the summary first and always complete — the table, totals, changed files no app owns, the
  workloads that will restart — then errors, then per-object diffs folded in ``<details>``,
  grouped by app (and, in a live preview split by :func:`bot.impact.classify_origins`, into
  "changed by this PR" and "already differs in the cluster");
* :func:`render_markdown` is never longer than ``max_chars``: diffs are dropped from the largest
  down, and the report says how many and how to see them; :func:`comment_parts` instead splits
  the report into numbered comments, each valid Markdown on its own, leaving out the largest
  diffs only beyond ``max_parts``;
* every user-controlled string (app and object names, file paths, error messages, refs) is
  escaped, and each diff sits in a code fence longer than any backtick run inside it, so nothing
  from a repository or a server message can inject Markdown, HTML or break out of its block.

The text format is for terminals (optional ANSI colour; control characters in user strings are
made visible so a message cannot rewrite the terminal). JSON is ``RunResult.to_json``.

Wording depends on context, never promising what the caller does not do: a transient error
says "will be retried" only when the caller says it retries (``retried=True``, the bot's jobs),
and "run again when the cluster is reachable" otherwise (a one-shot CLI run); a deploy dry run
says "dry run: nothing was changed" in every format.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.diff import redact_values
from bot.model import (
    AppResult,
    Change,
    Health,
    Mode,
    ObjectChange,
    ObjectError,
    ObjectHealth,
    Origin,
    Restart,
    RunResult,
    Source,
)

__all__ = [
    "GITHUB_COMMENT_LIMIT",
    "MAX_CHARS",
    "MAX_PARTS",
    "comment_parts",
    "escape_md",
    "fence",
    "headline",
    "marker_for",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
    "short_ref",
]

GITHUB_COMMENT_LIMIT = 65_536
MAX_CHARS = 65_000  # leaves room for a forge adapter to add a line or two
MAX_PARTS = 10  # comments per report: beyond this the largest diffs are left out
MIN_PART_CHARS = 1_000  # below this a continuation part cannot hold a header and a diff line

Format = Literal["markdown", "json", "text"]

TITLES = {
    Mode.OFFLINE: "GitOps preview",
    Mode.LIVE: "GitOps preview",
    Mode.DEPLOY: "GitOps deploy",
    Mode.DRIFT: "GitOps drift",
}
SUBTITLES = {
    Mode.OFFLINE: "Offline diff: the manifests at head compared with those at base (no cluster).",
    Mode.LIVE: "Live diff: a server-side dry-run of the manifests at head against the cluster.",
    Mode.DEPLOY: "Applied to the cluster, pruned, and waited for health.",
    Mode.DRIFT: "The cluster compared with the last deployed commit.",
}
DRY_RUN = "dry run: nothing was changed"
DRY_RUN_SUBTITLE = (
    "**Dry run: nothing was changed.** The manifests were sent to the cluster with a "
    "server-side dry-run; this is what applying and pruning would do. Nothing was applied, "
    "pruned or waited for."
)
MARKER_KINDS = {
    Mode.OFFLINE: "preview",
    Mode.LIVE: "preview",
    Mode.DEPLOY: "deploy",
    Mode.DRIFT: "drift",
}

NO_APPS = "No app is affected by this change."
NO_CHANGES = "No changes."
OMITTED_DIFFS = (
    "**{count} diff{s} omitted** to keep this comment under {limit:,} characters "
    "(largest first). To see every diff, run:"
)
LEFT_OUT_DIFFS = (
    "**{count} diff{s} left out** (the largest) to keep this report within {parts} comments "
    "of {limit:,} characters:"
)
LEFT_OUT_SUMMARY = (
    "**{count} diff{s} left out** (the largest): part {part} names them and gives the command "
    "that prints every diff."
)
LEFT_OUT_COMMAND = "To print every diff, run:"
LEFT_OUT_MORE = "…and {count} more."
CONTINUES = "Diffs continue in {parts} (the next {comments})."
PART_TITLE = "{heading} · part {part} of {total}"
CONTINUED = " (continued)"
SPLIT_DIFF = "part {index} of {count} of this diff"
OMITTED_OBJECTS = "…and {count} more changed object{s} not listed here."
OMITTED_ERRORS = "…and {count} more error{s} not listed here."
OMITTED_HEALTH = "…and {count} more unhealthy object{s} not listed here."
OMITTED_NOTES = "…and {count} more note{s} not listed here."
OMITTED_APPS = "…and {count} more app{s} with changes or errors: too many for one comment."
OMITTED_WORKLOADS = "…and {count} more workload{s}."
QUIET_APPS = "…and {count} app{s} with no changes, no errors and nothing unhealthy."
UNOWNED = "**{count} changed file{s} belong{verb} to no app**, so no preview covers {them}: "
UNOWNED_MORE = " …and {count} more"
MAX_LISTED_FILES = 20
WILL_RESTART = "Will restart"
NOT_RESTARTED = "Changed without a restart"
DRIFT_TOTAL = (
    "**{count} object{s} already differ{verb} in the cluster** from what the base declares; "
    "merging also overwrites {them} (see “{section}” below)."
)
SECTION_PR = "Changed by this PR"
SECTION_DRIFT = "Already differs in the cluster; merging also overwrites it"
SECTION_OTHER = "Other changes"
ALREADY_LIVE = "already in the cluster: merging changes nothing"
ALSO_BY_PR = "also changed by this PR"
PREFIX = {Change.CREATE: "+", Change.UPDATE: "~", Change.DELETE: "-", Change.UNCHANGED: "="}
HEALTH_ICON = {
    Health.HEALTHY: "✅",
    Health.PROGRESSING: "⏳",
    Health.DEGRADED: "❌",
    Health.UNKNOWN: "❔",
}
CUT = "\n\n… (report cut to fit the comment size limit)\n"
NO_MESSAGE = "(no message)"
TRANSIENT_RETRIED = "transient: will be retried"
TRANSIENT_RUN_AGAIN = "transient: run again when the cluster is reachable"
MAX_MESSAGE_CHARS = 1_000  # one error message; the rest is in the logs and the JSON output

_HEX_SHA = re.compile(r"[0-9a-fA-F]{12,64}")


# -- escaping ---------------------------------------------------------------------------------

# Characters that mean something in GitHub/GitLab Markdown or HTML, as numeric character
# references: they render as the character itself, mean nothing, and (unlike backslash escapes)
# also work inside HTML such as <summary> and <code>. '|' must never be literal inside a table
# row; '@' would notify people; '$' starts math; '{' '}' are GitLab's inline diff markup.
_MD_ESCAPES = {c: f"&#{ord(c)};" for c in "&<>\"'`|*_[]\\~#@${}"}
_MD_ESCAPES["&"] = "&amp;"
_MD_ESCAPES["<"] = "&lt;"
_MD_ESCAPES[">"] = "&gt;"
_MD_TABLE = str.maketrans(_MD_ESCAPES)
# list markers ("- ", "+ ", "1. ", "1) ") and thematic breaks ("---") at the start of a list item
_LEADING = re.compile(r"^(?:[-+](?=[\s-]|$)|\d(?=\d{0,8}[.)](?:\s|$)))")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_md(text: object) -> str:
    """``text`` safe to place anywhere in Markdown or inline HTML (table cells, list items,
    ``<summary>``, ``<code>``): markup characters become character references, newlines and
    other control or bidi characters become spaces, so the string renders as itself on one line."""
    flat = _CONTROL.sub(" ", str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " "))
    escaped = flat.strip().translate(_MD_TABLE)
    # at the start of a list item these would open a nested list or draw a rule
    return _LEADING.sub(lambda m: f"&#{ord(m.group())};", escaped)


def _units(text: str) -> int:
    """The size of ``text`` in UTF-16 code units: never less than its length in characters
    (an emoji counts twice), so a report within budget fits whether a forge counts characters
    or UTF-16 units; and its UTF-8 size is at most 4 bytes per unit, under GitHub's 262,144."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _ticks(body: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def fence(body: str, info: str = "diff") -> str:
    """``body`` in a fenced code block whose fence is longer than any backtick run in it, so no
    line of the body can close the block."""
    ticks = _ticks(body)
    if not body.endswith("\n"):
        body += "\n"
    return f"{ticks}{info}\n{body}{ticks}\n"


def short_ref(ref: str | None) -> str:
    """A commit SHA shortened to 7 characters; branch names and other refs as they are."""
    if not ref:
        return "?"
    return ref[:7] if _HEX_SHA.fullmatch(ref) else ref


def marker_for(mode: Mode) -> str:
    """The hidden marker the forge adapter looks for to find (and edit) its sticky comment."""
    return f"<!-- gitops-bot:{MARKER_KINDS[mode]} -->"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _where(file: str | None, line: int | None) -> str:
    if not file:
        return ""
    return f"{file}:{line}" if line else file


def _source_text(source: Source | None) -> str:
    return _where(source.file, source.line) if source else ""


def _transient(retried: bool) -> str:
    return TRANSIENT_RETRIED if retried else TRANSIENT_RUN_AGAIN


def _span(result: RunResult) -> str:
    if result.base:
        return f"{short_ref(result.base)}..{short_ref(result.head)}"
    return short_ref(result.head) if result.head else ""


def _dry_run(result: RunResult) -> bool:
    return result.dry_run and result.mode is Mode.DEPLOY


def headline(result: RunResult) -> str:
    """The report's one-line title, in the text format (its first line) and the JSON (its
    ``title``): what ran, over which commits, and for ``apply --dry-run`` that nothing was
    changed."""
    span = f" {_span(result)}" if _span(result) else ""
    what = result.mode.value + (f", {DRY_RUN}" if _dry_run(result) else "")
    return f"{TITLES[result.mode]}{span} ({what})"


# -- summary ----------------------------------------------------------------------------------


def _health_summary(health: Sequence[ObjectHealth]) -> str:
    if not health:
        return "—"
    parts = []
    for state in Health:
        count = sum(1 for h in health if h.health is state)
        if count:
            parts.append(f"{HEALTH_ICON[state]} {count} {state.value}")
    return ", ".join(parts)


def _app_status(app: AppResult) -> str:
    if app.errors or any(h.health is Health.DEGRADED for h in app.health):
        return "❌"
    if any(h.health is Health.PROGRESSING for h in app.health):
        return "⏳"
    if app.has_changes:
        return "📝"
    return "✅"


def _summary_row(app: AppResult) -> str:
    cells = [
        f"{_app_status(app)} {escape_md(app.name)}",
        escape_md(app.target),
        str(len(app.created)),
        str(len(app.updated)),
        str(len(app.deleted)),
        str(len(app.unchanged)),
        str(len(app.errors)),
        _health_summary(app.health),
    ]
    return "| " + " | ".join(cells) + " |\n"


_SUMMARY_HEADER = (
    "| App | Target | + Created | ~ Updated | - Deleted | Unchanged | Errors | Health |\n"
    "|:--|:--|--:|--:|--:|--:|--:|:--|\n"
)


def _totals(result: RunResult) -> str:
    apps = result.apps
    created = sum(len(a.created) for a in apps)
    updated = sum(len(a.updated) for a in apps)
    deleted = sum(len(a.deleted) for a in apps)
    errors = len(result.errors) + sum(len(a.errors) for a in apps)
    text = (
        f"**{len(apps)} app{_s(len(apps))}:** {created} to create, {updated} to update, "
        f"{deleted} to delete, {errors} error{_s(errors)}."
    )
    if result.mode is Mode.DEPLOY and not _dry_run(result):
        text = text.replace(" to create", " created").replace(" to update", " updated")
        text = text.replace(" to delete", " deleted")
    if result.mode is Mode.DRIFT:
        text = (
            f"**{len(apps)} app{_s(len(apps))}:** {created} missing from the cluster, "
            f"{updated} changed in the cluster, {deleted} extra in the cluster, "
            f"{errors} error{_s(errors)}."
        )
    return text + "\n"


def _drift_count(result: RunResult) -> int:
    return sum(1 for a in result.apps for c in a.changes if c.origin in (Origin.DRIFT, Origin.BOTH))


def _drift_total(result: RunResult) -> str:
    count = _drift_count(result)
    if not count:
        return ""
    one = count == 1
    return (
        "\n"
        + DRIFT_TOTAL.format(
            count=count,
            s=_s(count),
            verb="s" if one else "",
            them="it" if one else "them",
            section=SECTION_DRIFT,
        )
        + "\n"
    )


def _unowned_line(files: Sequence[str], code: bool) -> str:
    """The changed files no app owns: the first few listed, the rest counted."""
    count = len(files)
    one = count == 1
    head = UNOWNED.format(
        count=count, s=_s(count), verb="s" if one else "", them="it" if one else "them"
    )
    shown = files[:MAX_LISTED_FILES]
    if code:
        listed = ", ".join(f"<code>{escape_md(f)}</code>" for f in shown)
    else:
        head = head.replace("**", "")
        listed = ", ".join(_visible(f) for f in shown)
    more = UNOWNED_MORE.format(count=count - len(shown)) if count > len(shown) else ""
    return f"{head}{listed}{more}."


def _restart_line(restart: Restart, app: AppResult | None) -> str:
    text = f"- <code>{escape_md(restart.ref)}</code>"
    if restart.reasons:
        text += " (" + "; ".join(escape_md(r) for r in restart.reasons) + ")"
    if app is not None:
        text += f" — {escape_md(app.name)} → {escape_md(app.target)}"
    return text + "\n"


def _restarts_section(result: RunResult, budget: int) -> str:
    """Workloads whose pods the change replaces, then those it changes without a restart; one
    line each, the lines that do not fit counted."""
    many = len(result.apps) > 1
    out = ""
    for restart_flag, heading in ((True, WILL_RESTART), (False, NOT_RESTARTED)):
        lines = [
            _restart_line(r, app if many else None)
            for app in result.apps
            for r in app.restarts
            if r.restart is restart_flag
        ]
        if not lines:
            continue
        block = f"\n**{heading}:**\n\n"
        reserve = _units(OMITTED_WORKLOADS) + 20
        shown = 0
        for line in lines:
            if _units(out) + _units(block) + _units(line) > budget - reserve:
                break
            block += line
            shown += 1
        if shown < len(lines):
            rest = len(lines) - shown
            block += "\n" + OMITTED_WORKLOADS.format(count=rest, s=_s(rest)) + "\n"
        out += block
    return out


def _overview(result: RunResult, budget: int) -> str:
    """What the summary says beyond the table: drift, files no app owns, restarts."""
    out = _drift_total(result)
    if result.unowned_files:
        out += "\n" + _unowned_line(result.unowned_files, code=True) + "\n"
    if _units(out) > budget:
        out = ""
    return out + _restarts_section(result, budget - _units(out))


# -- sections ---------------------------------------------------------------------------------


def _error_line(error: ObjectError, retried: bool) -> str:
    context = []
    if error.ref is not None:
        context.append(f"<code>{escape_md(error.ref)}</code>")
    where = _where(error.file, error.line)
    if where:
        context.append(f"(<code>{escape_md(where)}</code>)")
    if error.reason:
        context.append(f"**{escape_md(error.reason)}**")
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " …"
    text = escape_md(message) if message.strip() else NO_MESSAGE
    if error.transient:
        text += f" _({_transient(retried)})_"
    return f"- {' '.join(context)}: {text}\n" if context else f"- {text}\n"


def _diff_kind(diff: str, fallback: Change) -> Change:
    """Creation or deletion as the diff's own headers say (``/dev/null`` on one side)."""
    if diff.startswith("--- /dev/null\n"):
        return Change.CREATE
    if "\n+++ /dev/null\n" in diff.split("@@", 1)[0]:
        return Change.DELETE
    return fallback if fallback is not Change.UNCHANGED else Change.UPDATE


def _change_title(change: ObjectChange, kind: Change | None = None, note: str = "") -> str:
    where = _source_text(change.source)
    title = f"{PREFIX[kind or change.change]} {escape_md(change.ref)}"
    if change.ref.api_version:
        title += f" <sub>{escape_md(change.ref.api_version)}</sub>"
    if where:
        title += f" — <code>{escape_md(where)}</code>"
    if note:
        title += f" <i>({note})</i>"
    return title


def _details(title: str, diff: str) -> str:
    body = fence(diff) if diff else "_No diff to show._\n"
    # blank lines around the block: without them a following "- …" line (an object whose diff
    # was omitted) would be swallowed by the HTML block and shown as raw text
    return f"\n<details><summary>{title}</summary>\n\n{body}\n</details>\n\n"


_RULE = "\n---\n"

Group = tuple[int, str | None]  # (app index, section heading or None)


@dataclass
class _Entry:
    """One changed object in the Markdown report, with both renderings and its size."""

    group: Group
    title: str
    diff: str
    label: str  # the prefix and the object, escaped: "~ Deployment web/api"
    state: int = 2  # 2: with its diff, 1: one line without the diff, 0: not listed

    @property
    def app(self) -> int:
        return self.group[0]

    @property
    def full(self) -> str:
        return _details(self.title, self.diff)

    @property
    def short(self) -> str:
        return f"- {self.title} _(diff omitted)_\n"


def _label(change: ObjectChange, kind: Change) -> str:
    return f"{PREFIX[kind]} {escape_md(change.ref)}"


def _app_entries(index: int, app: AppResult) -> list[_Entry]:
    if not app.classified:
        return [
            _Entry((index, None), _change_title(c), c.diff, _label(c, c.change))
            for c in app.changes
            if c.change is not Change.UNCHANGED
        ]
    entries: list[_Entry] = []
    for c in app.changes:
        if c.origin in (Origin.PR, Origin.BOTH):
            diff = c.pr_diff or c.diff
            note = ALREADY_LIVE if c.change is Change.UNCHANGED else ""
            kind = _diff_kind(diff, c.change)
            title = _change_title(c, kind, note)
            entries.append(_Entry((index, SECTION_PR), title, diff, _label(c, kind)))
    for c in app.changes:
        if c.origin in (Origin.DRIFT, Origin.BOTH):
            diff = c.drift_diff or c.diff
            note = ALSO_BY_PR if c.origin is Origin.BOTH else ""
            kind = _diff_kind(diff, c.change)
            title = _change_title(c, kind, note)
            entries.append(_Entry((index, SECTION_DRIFT), title, diff, _label(c, kind)))
    for c in app.changes:
        if c.origin is None and c.change is not Change.UNCHANGED:
            entries.append(
                _Entry((index, SECTION_OTHER), _change_title(c), c.diff, _label(c, c.change))
            )
    return entries


def _entries(result: RunResult) -> list[_Entry]:
    return [e for i, app in enumerate(result.apps) for e in _app_entries(i, app)]


def _app_header(app: AppResult, continued: bool = False) -> str:
    more = CONTINUED if continued else ""
    return f"\n#### {escape_md(app.name)} → {escape_md(app.target)}{more}\n\n"


def _section_header(section: str | None, continued: bool = False) -> str:
    if section is None:
        return ""
    return f"\n##### {section}{CONTINUED if continued else ''}\n\n"


def _preview_command(result: RunResult) -> str:
    """The command line that shows every diff of ``result`` in a terminal."""
    words = ["gitops-bot", "preview", "--repo", ".", "--base", result.base or result.head or "BASE"]
    words += ["--head", result.head or "HEAD"]
    if result.mode is not Mode.OFFLINE:
        words += ["--kubeconfig", "KUBECONFIG"]
    words += ["--format", "text"]
    return " ".join(shlex.quote(w) for w in words)


_RULE_AND_FOOTER = _units(_RULE) + 300 + _units(OMITTED_DIFFS) + _units(OMITTED_OBJECTS)


class _Headers:
    """The app and section headings printed before entries, and what they cost."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self.apps: set[int] = set()
        self.groups: set[Group] = set()

    def text(self, group: Group, continued: bool = False) -> str:
        out = ""
        if group[0] not in self.apps:
            out += _app_header(self.result.apps[group[0]], continued)
        if group not in self.groups:
            out += _section_header(group[1], continued)
        return out

    def cost(self, group: Group) -> int:
        return _units(self.text(group))

    def add(self, group: Group) -> None:
        self.apps.add(group[0])
        self.groups.add(group)


def _choose(entries: list[_Entry], result: RunResult, budget: int) -> None:
    """Set each entry's state so that everything shown fits in ``budget``.

    When a one-line entry for every object fits, every object is listed and the smallest diffs
    are shown in full as long as they fit (so the largest are dropped first). Otherwise the
    smallest diffs are shown in full first, then one-line entries in order while room is left."""
    every = _Headers(result)
    every_line = 0
    for e in entries:
        every_line += every.cost(e.group) + _units(e.short)
        every.add(e.group)
    if every_line <= budget:
        for e in entries:
            e.state = 1
        used = every_line
        for e in sorted(entries, key=lambda e: _units(e.full)):
            extra = _units(e.full) - _units(e.short)
            if used + extra > budget:
                break
            e.state = 2
            used += extra
        return
    used = 0
    shown = _Headers(result)
    for e in entries:
        e.state = 0
    for e in sorted(entries, key=lambda e: _units(e.full)):
        cost = shown.cost(e.group) + _units(e.full)
        if used + cost > budget:
            break
        used += cost
        shown.add(e.group)
        e.state = 2
    for e in entries:
        if e.state:
            continue
        cost = shown.cost(e.group) + _units(e.short)
        if used + cost > budget:
            break
        used += cost
        shown.add(e.group)
        e.state = 1


def _heading(result: RunResult, title: str | None) -> str:
    heading = escape_md(title) if title is not None else TITLES[result.mode]
    if _dry_run(result):
        heading += f" ({DRY_RUN})"
    span = _span(result)
    if span:
        heading += f" · <code>{escape_md(span)}</code>"
    return heading


def _head(result: RunResult, heading: str, marker: str) -> str:
    head = f"{marker}\n" if marker else ""
    subtitle = DRY_RUN_SUBTITLE if _dry_run(result) else SUBTITLES[result.mode]
    return head + f"### {heading}\n\n{subtitle}\n\n"


def _preamble(result: RunResult, head: str, budget: int, retried: bool) -> str:
    """Title, summary, overview, errors and notes: everything before the diffs."""
    if result.apps:
        out = head + _summary(result, budget - _units(head) - 200)
    elif result.errors:
        out = head  # a configuration that failed to load affects no app: the errors say why
    else:
        out = head + NO_APPS + "\n"
    out += _overview(result, budget - _units(out) - 300)
    errors_text = _errors_section(result, budget - _units(out), retried)
    return out + errors_text


def render_markdown(
    result: RunResult,
    *,
    max_chars: int = MAX_CHARS,
    title: str | None = None,
    marker: str | None = None,
    command: str | None = None,
    retried: bool = False,
) -> str:
    """The Markdown report of ``result``, at most ``max_chars`` characters long.

    ``title`` replaces the default title ("GitOps preview" / "deploy" / "drift"); it is escaped.
    ``marker`` is the hidden HTML comment put first (default :func:`marker_for` the mode; pass
    '' for none). ``command`` is the command line the report suggests for seeing omitted diffs
    (default: a ``gitops-bot preview`` line built from the result). ``retried``: whether the
    caller retries transient errors (the bot's jobs do; a CLI run does not), which the report
    tells the reader.

    Order: title, summary table (always complete), totals, drift, changed files no app owns,
    workloads that will restart, run-wide errors, per-app errors, notes, then per-object diffs
    grouped by app. When everything does not fit, diffs are replaced by one line per object from
    the largest diff down, then those lines are dropped from the end; the report says how many
    were omitted and how to see them."""
    text, _omitted = _markdown(
        result, max_chars=max_chars, title=title, marker=marker, command=command, retried=retried
    )
    return text


def _markdown(
    result: RunResult,
    *,
    max_chars: int,
    title: str | None,
    marker: str | None,
    command: str | None,
    retried: bool,
) -> tuple[str, int]:
    """:func:`render_markdown`, and how many diffs it omitted."""
    marker = marker_for(result.mode) if marker is None else marker
    out = _preamble(result, _head(result, _heading(result, title), marker), max_chars, retried)
    budget = max_chars - _units(out)
    entries = _entries(result)
    if not entries:
        if result.apps and not result.has_errors:
            out += f"\n{NO_CHANGES}\n"
        return _fit(out, max_chars), 0
    footer_cmd = command if command is not None else _preview_command(result)
    if _units(_RULE) + _entries_size(entries, result) > budget:
        _choose(entries, result, budget - _RULE_AND_FOOTER - _units(footer_cmd))
    out += _RULE
    headers = _Headers(result)
    for e in entries:
        if not e.state:
            continue
        out += headers.text(e.group)
        headers.add(e.group)
        out += e.full if e.state == 2 else e.short
    omitted = sum(1 for e in entries if e.state < 2)
    unlisted = sum(1 for e in entries if e.state == 0)
    if omitted:
        out += "\n" + OMITTED_DIFFS.format(count=omitted, s=_s(omitted), limit=max_chars) + "\n\n"
        out += fence(footer_cmd, "sh")
        if unlisted:
            out += "\n" + OMITTED_OBJECTS.format(count=unlisted, s=_s(unlisted)) + "\n"
    return _fit(out, max_chars), omitted


def _entries_size(entries: Sequence[_Entry], result: RunResult) -> int:
    headers = _Headers(result)
    total = 0
    for e in entries:
        total += headers.cost(e.group) + _units(e.full)
        headers.add(e.group)
    return total


def _summary(result: RunResult, budget: int) -> str:
    """The summary table and totals. When a row per app does not fit (hundreds of apps), apps
    with nothing to report (no change, no error, healthy) are counted in one line instead; only
    if that still does not fit are rows cut, and the table says how many are missing."""
    totals = "\n" + _totals(result)
    rows = [_summary_row(app) for app in result.apps]
    full = _SUMMARY_HEADER + "".join(rows)
    if _units(full) + _units(totals) <= budget:
        return full + totals
    quiet = [
        not app.has_changes and app.ok and not app.notes and not app.restarts for app in result.apps
    ]
    text = _SUMMARY_HEADER
    budget -= _units(totals) + _units(OMITTED_APPS) + _units(QUIET_APPS) + 40
    for index, (row, is_quiet) in enumerate(zip(rows, quiet, strict=True)):
        if is_quiet:
            continue
        if _units(text) + _units(row) > budget:
            rest = sum(1 for q in quiet[index:] if not q)
            text += "\n" + OMITTED_APPS.format(count=rest, s=_s(rest)) + "\n"
            break
        text += row
    count = sum(quiet)
    if count:
        text += "\n" + QUIET_APPS.format(count=count, s=_s(count)) + "\n"
    return text + totals


def _health_line(health: ObjectHealth) -> str:
    text = (
        f"- {HEALTH_ICON[health.health]} <code>{escape_md(health.ref)}</code> {health.health.value}"
    )
    if health.reason:
        text += f": **{escape_md(health.reason)}**"
    if health.message:
        message = health.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + " …"
        text += f"{'' if health.reason else ':'} {escape_md(message)}"
    return text + "\n"


def _errors_section(result: RunResult, budget: int, retried: bool) -> str:
    """Errors, then objects that are not healthy, then notes: one line each, under headings per
    app; lines that do not fit are counted instead."""
    groups: list[tuple[str, str, list[str]]] = []
    if result.errors:
        groups.append(("error", "Errors", [_error_line(e, retried) for e in result.errors]))
    for app in result.apps:
        if app.errors:
            heading = f"Errors in {escape_md(app.name)} → {escape_md(app.target)}"
            groups.append(("error", heading, [_error_line(e, retried) for e in app.errors]))
    for app in result.apps:
        unhealthy = [h for h in app.health if h.health in (Health.DEGRADED, Health.PROGRESSING)]
        if unhealthy:
            heading = f"Not healthy in {escape_md(app.name)} → {escape_md(app.target)}"
            groups.append(("health", heading, [_health_line(h) for h in unhealthy]))
    for app in result.apps:
        if app.notes:
            lines = [f"- {escape_md(n)}\n" for n in app.notes]
            groups.append(("note", f"Notes on {escape_md(app.name)}", lines))
    out = ""
    skipped = {"error": 0, "health": 0, "note": 0}
    reserve = 300  # for the "…and N more" lines
    for kind, heading, lines in groups:
        block = f"\n#### {heading}\n\n"
        shown = 0
        for line in lines:
            if _units(out) + _units(block) + _units(line) > budget - reserve:
                break
            block += line
            shown += 1
        if shown:
            out += block
        skipped[kind] += len(lines) - shown
    for kind, template in (
        ("error", OMITTED_ERRORS),
        ("health", OMITTED_HEALTH),
        ("note", OMITTED_NOTES),
    ):
        if skipped[kind]:
            out += "\n" + template.format(count=skipped[kind], s=_s(skipped[kind])) + "\n"
    return out


def _fit(text: str, max_chars: int) -> str:
    # A last guard: the budget above should make this a no-op; if it ever is not, cutting is
    # better than a comment the forge rejects.
    if _units(text) <= max_chars:
        return text
    room = max(0, max_chars - _units(CUT))
    kept = text[:room]
    while _units(kept) > room:
        kept = kept[: len(kept) - (_units(kept) - room)]
    return kept + CUT


# -- comment parts --------------------------------------------------------------------------------


@dataclass
class _Block:
    """One piece of the diff section placed whole in one part: an entry's ``<details>`` block,
    or one of the pieces a diff too large for a part was split into."""

    entry: int  # index into the entries
    group: Group
    text: str


def _split_lines(diff: str, room: int) -> list[str]:
    """``diff`` cut between lines into pieces of at most ``room`` units; a line longer than
    ``room`` on its own is cut within the line (between characters)."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for line in diff.splitlines(keepends=True):
        size = _units(line)
        while size > room:
            # a single enormous line (minified JSON in a ConfigMap): cut it where it must be
            if current:
                pieces.append("".join(current))
                current, used = [], 0
            head = line[:room]
            while _units(head) > room:
                head = head[: len(head) - (_units(head) - room)]
            pieces.append(head + "\n")
            line = line[len(head) :]
            size = _units(line)
        if used + size > room and current:
            pieces.append("".join(current))
            current, used = [], 0
        if line:
            current.append(line)
            used += size
    if current:
        pieces.append("".join(current))
    return pieces


def _blocks(entries: Sequence[_Entry], room_for: dict[Group, int]) -> list[list[_Block]]:
    """Each entry as the blocks it is printed in: one ``<details>`` when it fits in a part
    (``room_for`` its group), else its diff split between lines into numbered ``<details>``,
    each with its own fence (reopened), so every piece is valid Markdown alone. An entry that
    cannot be split small enough (a limit too small for its title) has no blocks."""
    out: list[list[_Block]] = []
    for index, e in enumerate(entries):
        room = room_for[e.group]
        if _units(e.full) <= room:
            out.append([_Block(index, e.group, e.full)])
            continue
        # overhead of one piece: the details wrapper, a title with "part N of M", the fence
        sample = _details(f"{e.title} <i>({SPLIT_DIFF.format(index=99_999, count=99_999)})</i>", "")
        overhead = _units(sample) + 2 * (len(_ticks(e.diff)) + 1) + len("diff") + 2
        pieces = _split_lines(e.diff, room - overhead) if room - overhead >= 40 else []
        blocks = [
            _Block(
                index,
                e.group,
                _details(
                    f"{e.title} <i>({SPLIT_DIFF.format(index=n, count=len(pieces))})</i>", piece
                ),
            )
            for n, piece in enumerate(pieces, start=1)
        ]
        out.append(blocks if all(_units(b.text) <= room for b in blocks) else [])
    return out


def _pack(
    blocks: Sequence[_Block], result: RunResult, first_room: int, room: int
) -> list[list[tuple[str, _Block | None]]]:
    """Blocks in order into parts (next fit): part 1 holds ``first_room`` units of diffs, each
    continuation part ``room``; headings are repeated, marked "(continued)", where an app or a
    section goes on in a new part. Returns each part as (heading text, block) pairs."""
    parts: list[list[tuple[str, _Block | None]]] = [[]]
    used = 0
    capacity = first_room
    headers = _Headers(result)
    seen_apps: set[int] = set()
    seen_groups: set[Group] = set()
    for block in blocks:
        heading = headers.text(block.group)
        if used + _units(heading) + _units(block.text) > capacity and (
            parts[-1] or capacity < room
        ):
            parts.append([])
            used, capacity = 0, room
            headers = _Headers(result)
            heading = _app_header(result.apps[block.group[0]], block.group[0] in seen_apps)
            heading += _section_header(block.group[1], block.group in seen_groups)
        parts[-1].append((heading, block))
        used += _units(heading) + _units(block.text)
        headers.add(block.group)
        seen_apps.add(block.group[0])
        seen_groups.add(block.group)
    return parts


def _note_entry(entry: _Entry, result: RunResult) -> str:
    app = result.apps[entry.app]
    lines = entry.diff.count("\n")
    section = f", {entry.group[1].lower()}" if entry.group[1] else ""
    return (
        f"- <code>{entry.label}</code> in {escape_md(app.name)} → {escape_md(app.target)}"
        f"{section} ({lines:,} diff line{_s(lines)})\n"
    )


def _left_out_note(
    left_out: Sequence[_Entry],
    result: RunResult,
    *,
    room: int,
    parts: int,
    limit: int,
    command: str,
) -> str:
    """The note at the end of the last part: how many diffs were left out, which (as many as
    fit in ``room``, the rest counted), and the command that prints them all."""
    count = len(left_out)
    out = "\n" + LEFT_OUT_DIFFS.format(count=count, s=_s(count), parts=parts, limit=limit) + "\n\n"
    tail = "\n" + LEFT_OUT_COMMAND + "\n\n" + fence(command, "sh")
    more = "\n" + LEFT_OUT_MORE.format(count=count) + "\n"
    budget = room - _units(out) - _units(tail) - _units(more)
    listed = 0
    names = ""
    for entry in left_out:
        line = _note_entry(entry, result)
        if _units(names) + _units(line) > budget:
            break
        names += line
        listed += 1
    out += names
    if listed < count:
        out += "\n" + LEFT_OUT_MORE.format(count=count - listed) + "\n"
    return out + tail


def comment_parts(
    result: RunResult,
    *,
    limit: int = MAX_CHARS,
    max_parts: int = MAX_PARTS,
    full_command: str | None = None,
    title: str | None = None,
    retried: bool = False,
) -> list[str]:
    """The Markdown report of ``result`` as up to ``max_parts`` comments of at most ``limit``
    characters (UTF-16 units) each, for forges that cap a comment's size.

    Part 1 holds the title and the whole summary (table, totals, drift, changed files no app
    owns, restarts, errors, notes) and says how many parts follow; the diffs start there and
    continue in parts titled "part N of M", grouped by app and section as in
    :func:`render_markdown`, with a heading marked "(continued)" where a group goes on in a new
    part. Each part is valid Markdown on its own: no part ends inside a code block or a
    ``<details>``. A diff larger than a part is split between lines into numbered pieces, each
    in its own ``<details>`` with its fence reopened (a single line longer than a part is cut
    within the line); nothing is truncated. When the diffs need more than ``max_parts`` parts,
    the largest are left out — as few as possible — and the last part names them and gives
    ``full_command`` (default: a ``gitops-bot preview`` command built from the result), which
    prints them all.

    No hidden marker: the caller (the forge's sticky-comment reconciler) adds its own, so
    ``limit`` is the forge's limit minus the marker's room. ``title`` and ``retried`` as in
    :func:`render_markdown`. Deterministic: the same result gives the same parts."""
    if limit < MIN_PART_CHARS:
        raise ValueError(f"limit must be at least {MIN_PART_CHARS:,} characters, got {limit:,}")
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, got {max_parts}")
    single, omitted = _markdown(
        result, max_chars=limit, title=title, marker="", command=full_command, retried=retried
    )
    if not omitted or max_parts == 1:
        # it all fits in one comment; or one is all there may be, and render_markdown's
        # one-line entries name the objects whose diffs did not fit
        return [single]
    entries = _entries(result)
    command = full_command if full_command is not None else _preview_command(result)
    heading = _heading(result, title)
    part_head = "### " + PART_TITLE.format(heading=heading, part=max_parts, total=max_parts)
    room = limit - _units(part_head + "\n\n") - 20  # 20: digits of any part number
    # part 1 keeps room for its trailer: "diffs continue in …" and "N diffs left out …"
    trailer_room = _units(CONTINUES) + _units(LEFT_OUT_SUMMARY) + 60
    preamble = _preamble(
        result, _head(result, heading, ""), limit - trailer_room - _units(_RULE), retried
    )
    first_room = limit - _units(preamble) - trailer_room - _units(_RULE)
    room_for: dict[Group, int] = {}
    for e in entries:
        if e.group not in room_for:
            cost = _units(_app_header(result.apps[e.group[0]], True))
            cost += _units(_section_header(e.group[1], True))
            room_for[e.group] = room - cost
    blocks = _blocks(entries, room_for)
    sizes = [sum(_units(b.text) for b in bs) for bs in blocks]
    # the largest first; an entry that cannot be shown at all (no blocks) is always left out
    order = sorted(range(len(entries)), key=lambda i: (bool(blocks[i]), -sizes[i], i))
    unshowable = sum(1 for bs in blocks if not bs)

    def attempt(drop: int) -> tuple[list[list[tuple[str, _Block | None]]], list[_Entry]]:
        gone = set(order[:drop])
        kept = [b for i, bs in enumerate(blocks) if i not in gone for b in bs]
        packed = _pack(kept, result, first_room, room)
        left_out = [entries[i] for i in sorted(gone)]
        if left_out:
            note = _left_out_note(
                left_out, result, room=room, parts=max_parts, limit=limit, command=command
            )
            last = packed[-1]
            used = sum(_units(h) + (_units(b.text) if b else 0) for h, b in last)
            if used + _units(note) > (first_room if len(packed) == 1 else room):
                packed.append([])
            packed[-1].append((note, None))
        return packed, left_out

    # Fewer parts as more diffs are left out (next fit never needs more parts for fewer
    # blocks), so the fewest left out is found by bisection. With everything left out, the
    # summary and the note need at most two parts, and max_parts >= 2 here.
    low, high = unshowable, len(entries)
    best = attempt(high)
    while low < high:
        middle = (low + high) // 2
        candidate = attempt(middle)
        if len(candidate[0]) <= max_parts:
            best, high = candidate, middle
        else:
            low = middle + 1
    packed, left_out = best
    return _assemble(
        packed, preamble=preamble, heading=heading, left_out=len(left_out), limit=limit
    )


def _assemble(
    packed: list[list[tuple[str, _Block | None]]],
    *,
    preamble: str,
    heading: str,
    left_out: int,
    limit: int,
) -> list[str]:
    total = len(packed)
    trailer = ""
    if total > 1:
        parts_text = "part 2" if total == 2 else f"parts 2\N{EN DASH}{total}"
        comments = "comment" if total == 2 else f"{total - 1} comments"
        trailer += "\n" + CONTINUES.format(parts=parts_text, comments=comments) + "\n"
    if left_out:
        trailer += "\n" + LEFT_OUT_SUMMARY.format(count=left_out, s=_s(left_out), part=total)
        trailer += "\n"
    parts: list[str] = []
    for number, items in enumerate(packed, start=1):
        if number == 1:
            text = preamble + trailer + (_RULE if items and items[0][1] is not None else "")
        else:
            title = PART_TITLE.format(heading=heading, part=number, total=total)
            text = f"### {title}\n"
        for head, block in items:
            text += head + (block.text if block is not None else "")
        parts.append(_fit(text, limit))
    return parts


# -- text ---------------------------------------------------------------------------------------

_ANSI = {
    "+": "\x1b[32m",
    "-": "\x1b[31m",
    "~": "\x1b[33m",
    "@": "\x1b[36m",
    "!": "\x1b[1;31m",
    "#": "\x1b[1m",
}
_RESET = "\x1b[0m"
_TERMINAL_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_TEXT_ORIGIN = {
    Origin.DRIFT: "[drift: already differs in the cluster]",
    Origin.BOTH: "[this PR, and drift: already differs in the cluster]",
}


def _visible(text: object) -> str:
    """``text`` with control characters (ANSI escapes, bidi overrides) shown as escapes, so a
    message or a diff line cannot recolour or rewrite the terminal."""
    return _TERMINAL_UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(text))


def _text_sections(app: AppResult) -> list[tuple[str | None, list[str]]]:
    """The diffs of one app in the order and sections the Markdown report uses."""
    if not app.classified:
        diffs = [c.diff for c in app.changes if c.diff]
        return [(None, diffs)] if diffs else []
    sections: list[tuple[str | None, list[str]]] = [
        (
            SECTION_PR,
            [c.pr_diff or c.diff for c in app.changes if c.origin in (Origin.PR, Origin.BOTH)],
        ),
        (
            SECTION_DRIFT,
            [
                c.drift_diff or c.diff
                for c in app.changes
                if c.origin in (Origin.DRIFT, Origin.BOTH)
            ],
        ),
        (SECTION_OTHER, [c.diff for c in app.changes if c.origin is None and c.diff]),
    ]
    return [(name, [d for d in diffs if d]) for name, diffs in sections if any(diffs)]


def render_text(
    result: RunResult, *, color: bool = False, diffs: bool = True, retried: bool = False
) -> str:
    """A concise terminal report: one line per app, one per changed object (``+``/``~``/``-``),
    the workloads that will restart, errors and unhealthy objects, then (with ``diffs``) each
    app's diffs under a heading naming the app and its target. ``color`` adds ANSI colours; user
    strings never carry control characters through. ``retried`` as in :func:`render_markdown`."""

    def paint(kind: str, text: str) -> str:
        return f"{_ANSI[kind]}{text}{_RESET}" if color and kind in _ANSI else text

    lines: list[str] = [_visible(headline(result))]
    for error in result.errors:
        lines.append(paint("!", f"! {_visible(_error_text(error, retried))}"))
    if not result.apps and not result.errors:
        lines.append(NO_APPS)
    if result.unowned_files:
        lines.append(_unowned_line(result.unowned_files, code=False))
    for app in result.apps:
        counts = (
            f"+{len(app.created)} ~{len(app.updated)} -{len(app.deleted)} ={len(app.unchanged)}"
        )
        extra = f", {len(app.errors)} error{_s(len(app.errors))}" if app.errors else ""
        lines.append(f"{_visible(app.name)} -> {_visible(app.target)}: {counts}{extra}")
        for change in app.changes:
            already = change.origin is Origin.PR and change.change is Change.UNCHANGED
            if change.change is Change.UNCHANGED and not already:
                continue
            prefix = PREFIX[change.change]
            where = _source_text(change.source)
            line = f"  {prefix} {_visible(change.ref)}" + (
                f"  ({_visible(where)})" if where else ""
            )
            if already:
                line += f"  [changed by this PR, {ALREADY_LIVE}]"
            elif change.origin in _TEXT_ORIGIN:
                line += f"  {_TEXT_ORIGIN[change.origin]}"
            lines.append(paint(prefix, line))
        for restart in app.restarts:
            label = "will restart" if restart.restart else "changed without a restart"
            why = "; ".join(restart.reasons)
            lines.append(
                f"  {label}: {_visible(restart.ref)}" + (f" ({_visible(why)})" if why else "")
            )
        for error in app.errors:
            lines.append(paint("!", f"  ! {_visible(_error_text(error, retried))}"))
        for health in app.health:
            if health.health in (Health.HEALTHY, Health.UNKNOWN):
                continue
            why = ": ".join(x for x in (health.reason, health.message) if x)
            lines.append(
                paint(
                    "!",
                    f"  ! {_visible(health.ref)} {health.health.value}"
                    + (f" ({_visible(why)})" if why else ""),
                )
            )
        for note in app.notes:
            lines.append(f"  note: {_visible(note)}")
    if diffs:
        for app in result.apps:
            sections = _text_sections(app)
            if not sections:
                continue
            where = f"{_visible(app.name)} -> {_visible(app.target)}"
            for name, section_diffs in sections:
                lines.append("")
                section = f": {name[0].lower()}{name[1:]}" if name else ""
                lines.append(paint("#", f"=== {where}{section} ==="))
                for diff in section_diffs:
                    lines.append("")
                    for diff_line in diff.splitlines():
                        kind = diff_line[:1]
                        if diff_line.startswith(("---", "+++")):
                            kind = ""
                        lines.append(paint(kind if kind in "+-@" else "", _visible(diff_line)))
    return "\n".join(lines) + "\n"


def _error_text(error: ObjectError, retried: bool) -> str:
    parts = [str(error.ref)] if error.ref else []
    where = _where(error.file, error.line)
    if where:
        parts.append(f"({where})")
    if error.reason:
        parts.append(error.reason)
    prefix = " ".join(parts)
    text = f"{prefix}: {error.message}" if prefix else error.message
    return text + f" ({_transient(retried)})" if error.transient else text


# -- JSON and dispatch --------------------------------------------------------------------------


def render_json(result: RunResult) -> str:
    """The stable JSON shape of :meth:`RunResult.to_json` (documented in docs/report.md), with
    the report's :func:`headline` as ``title`` first: the machine reads ``dryRun``, a person
    reading the JSON still sees "dry run: nothing was changed" as in every other format."""
    data = {"title": headline(result), **result.to_json()}
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)


def render(
    result: RunResult,
    *,
    fmt: Format,
    max_chars: int = MAX_CHARS,
    color: bool = False,
    redact: Iterable[str] = (),
    retried: bool = False,
) -> str:
    """``result`` in ``fmt``; ``max_chars`` bounds the Markdown format only, ``color`` (ANSI)
    applies to the text format only. ``redact``: values known to be secret (see
    :func:`bot.diff.secret_values`), replaced wherever they appear, e.g. quoted back in a server
    error message. ``retried``: whether the caller retries transient errors (default: no, as
    in a one-shot CLI run)."""
    result = redact_values(result, redact)
    if fmt == "markdown":
        return render_markdown(result, max_chars=max_chars, retried=retried)
    if fmt == "json":
        return render_json(result)
    if fmt == "text":
        return render_text(result, color=color, retried=retried)
    raise ValueError(f"unknown report format {fmt!r}: expected markdown, json or text")
