"""Render a :class:`~bot.model.RunResult` for people (Markdown, text) and programs (JSON).

Pure functions from results to strings; they never learn which engine made the result.

The Markdown report becomes the bot's sticky PR/MR comment, so it is built to survive the forge:

* a hidden marker comment first, so the forge adapter can find and edit its own comment;
* the summary table first and always complete, then errors, then per-object diffs folded in
  ``<details>``;
* never longer than ``max_chars`` (GitHub rejects comments over 65,536 characters): diffs are
  dropped from the largest down, and the report says how many and how to see them;
* every user-controlled string (app and object names, file paths, error messages, refs) is
  escaped, and each diff sits in a code fence longer than any backtick run inside it, so nothing
  from a repository or a server message can inject Markdown, HTML or break out of its block.

The text format is for terminals (optional ANSI colour; control characters in user strings are
made visible so a message cannot rewrite the terminal). JSON is ``RunResult.to_json``.
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
    RunResult,
    Source,
)

__all__ = [
    "GITHUB_COMMENT_LIMIT",
    "MAX_CHARS",
    "escape_md",
    "fence",
    "marker_for",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
    "short_ref",
]

GITHUB_COMMENT_LIMIT = 65_536
MAX_CHARS = 65_000  # leaves room for a forge adapter to add a line or two

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
OMITTED_OBJECTS = "…and {count} more changed object{s} not listed here."
OMITTED_ERRORS = "…and {count} more error{s} not listed here."
OMITTED_HEALTH = "…and {count} more unhealthy object{s} not listed here."
OMITTED_NOTES = "…and {count} more note{s} not listed here."
OMITTED_APPS = "…and {count} more app{s} with changes or errors: too many for one comment."
QUIET_APPS = "…and {count} app{s} with no changes, no errors and nothing unhealthy."
PREFIX = {Change.CREATE: "+", Change.UPDATE: "~", Change.DELETE: "-", Change.UNCHANGED: "="}
HEALTH_ICON = {
    Health.HEALTHY: "✅",
    Health.PROGRESSING: "⏳",
    Health.DEGRADED: "❌",
    Health.UNKNOWN: "❔",
}
CUT = "\n\n… (report cut to fit the comment size limit)\n"
NO_MESSAGE = "(no message)"
TRANSIENT = "_(transient: will be retried)_"
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


def fence(body: str, info: str = "diff") -> str:
    """``body`` in a fenced code block whose fence is longer than any backtick run in it, so no
    line of the body can close the block."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
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
    if result.mode is Mode.DEPLOY:
        text = text.replace(" to create", " created").replace(" to update", " updated")
        text = text.replace(" to delete", " deleted")
    if result.mode is Mode.DRIFT:
        text = (
            f"**{len(apps)} app{_s(len(apps))}:** {created} missing from the cluster, "
            f"{updated} changed in the cluster, {deleted} extra in the cluster, "
            f"{errors} error{_s(errors)}."
        )
    return text + "\n"


# -- sections ---------------------------------------------------------------------------------


def _error_line(error: ObjectError) -> str:
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
        text += f" {TRANSIENT}"
    return f"- {' '.join(context)}: {text}\n" if context else f"- {text}\n"


def _change_title(change: ObjectChange) -> str:
    where = _source_text(change.source)
    title = f"{PREFIX[change.change]} {escape_md(change.ref)}"
    if change.ref.api_version:
        title += f" <sub>{escape_md(change.ref.api_version)}</sub>"
    if where:
        title += f" — <code>{escape_md(where)}</code>"
    return title


def _diff_block(change: ObjectChange) -> str:
    body = fence(change.diff) if change.diff else "_No diff to show._\n"
    # blank lines around the block: without them a following "- …" line (an object whose diff
    # was omitted) would be swallowed by the HTML block and shown as raw text
    return f"\n<details><summary>{_change_title(change)}</summary>\n\n{body}\n</details>\n\n"


def _short_line(change: ObjectChange) -> str:
    return f"- {_change_title(change)} _(diff omitted)_\n"


_RULE = "\n---\n"


@dataclass
class _Entry:
    """One changed object in the Markdown report, with both renderings and its size."""

    app: int
    full: str
    short: str
    state: int = 2  # 2: with its diff, 1: one line without the diff, 0: not listed


def _preview_command(result: RunResult) -> str:
    """The command line that shows every diff of ``result`` in a terminal."""
    words = ["gitops-bot", "preview", "--repo", ".", "--base", result.base or result.head or "BASE"]
    words += ["--head", result.head or "HEAD"]
    if result.mode is not Mode.OFFLINE:
        words += ["--kubeconfig", "KUBECONFIG"]
    words += ["--format", "text"]
    return " ".join(shlex.quote(w) for w in words)


_RULE_AND_FOOTER = _units(_RULE) + 300 + _units(OMITTED_DIFFS) + _units(OMITTED_OBJECTS)


def _choose(entries: list[_Entry], app_headers: dict[int, str], budget: int) -> None:
    """Set each entry's state so that everything shown fits in ``budget``.

    When a one-line entry for every object fits, every object is listed and the smallest diffs
    are shown in full as long as they fit (so the largest are dropped first). Otherwise the
    smallest diffs are shown in full first, then one-line entries in order while room is left."""
    used = 0
    shown_apps: set[int] = set()

    def cost(entry: _Entry, text: str) -> int:
        return _units(text) + (0 if entry.app in shown_apps else _units(app_headers[entry.app]))

    every_line = sum(_units(e.short) for e in entries)
    every_line += sum(_units(app_headers[i]) for i in {e.app for e in entries})
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
    for e in entries:
        e.state = 0
    for e in sorted(entries, key=lambda e: _units(e.full)):
        if used + cost(e, e.full) > budget:
            break
        used += cost(e, e.full)
        shown_apps.add(e.app)
        e.state = 2
    for e in entries:
        if e.state:
            continue
        if used + cost(e, e.short) > budget:
            break
        used += cost(e, e.short)
        shown_apps.add(e.app)
        e.state = 1


def render_markdown(
    result: RunResult,
    *,
    max_chars: int = MAX_CHARS,
    title: str | None = None,
    marker: str | None = None,
    command: str | None = None,
) -> str:
    """The Markdown report of ``result``, at most ``max_chars`` characters long.

    ``title`` replaces the default title ("GitOps preview" / "deploy" / "drift"); it is escaped.
    ``marker`` is the hidden HTML comment put first (default :func:`marker_for` the mode; pass
    '' for none). ``command`` is the command line the report suggests for seeing omitted diffs
    (default: a ``gitops-bot preview`` line built from the result).

    Order: title, summary table (always complete), totals, run-wide errors, per-app errors,
    notes, then per-object diffs. When everything does not fit, diffs are replaced by one line
    per object from the largest diff down, then those lines are dropped from the end; the report
    says how many were omitted and how to see them."""
    marker = marker_for(result.mode) if marker is None else marker
    head = f"{marker}\n" if marker else ""
    heading = escape_md(title) if title is not None else TITLES[result.mode]
    if result.base or result.head:
        span = (
            f"{short_ref(result.base)}..{short_ref(result.head)}"
            if result.base
            else short_ref(result.head)
        )
        heading += f" · <code>{escape_md(span)}</code>"
    head += f"### {heading}\n\n{SUBTITLES[result.mode]}\n\n"

    # 1. the summary: required, and complete unless it alone cannot fit
    out = head + (
        _summary(result, max_chars - _units(head) - 200) if result.apps else NO_APPS + "\n"
    )
    budget = max_chars - _units(out)

    # 2. errors and notes: each a line; what does not fit is counted
    errors_text, budget = _errors_section(result, budget)
    out += errors_text

    # 3. per-object diffs, grouped by app
    changed = [
        (i, c)
        for i, app in enumerate(result.apps)
        for c in app.changes
        if c.change is not Change.UNCHANGED
    ]
    if not changed:
        if result.apps and not result.has_errors:
            out += f"\n{NO_CHANGES}\n"
        return _fit(out, max_chars)
    entries = [_Entry(app=i, full=_diff_block(c), short=_short_line(c)) for i, c in changed]
    app_headers = {
        i: f"\n#### {escape_md(app.name)} → {escape_md(app.target)}\n\n"
        for i, app in enumerate(result.apps)
    }
    footer_cmd = command if command is not None else _preview_command(result)
    total = _units(_RULE) + sum(_units(e.full) for e in entries)
    total += sum(_units(app_headers[i]) for i in {e.app for e in entries})
    if total > budget:
        _choose(entries, app_headers, budget - _RULE_AND_FOOTER - _units(footer_cmd))

    out += _RULE
    current = None
    for e in entries:
        if not e.state:
            continue
        if e.app != current:
            current = e.app
            out += app_headers[e.app]
        out += e.full if e.state == 2 else e.short
    omitted = sum(1 for e in entries if e.state < 2)
    unlisted = sum(1 for e in entries if e.state == 0)
    if omitted:
        out += "\n" + OMITTED_DIFFS.format(count=omitted, s=_s(omitted), limit=max_chars) + "\n\n"
        out += fence(footer_cmd, "sh")
        if unlisted:
            out += "\n" + OMITTED_OBJECTS.format(count=unlisted, s=_s(unlisted)) + "\n"
    return _fit(out, max_chars)


def _summary(result: RunResult, budget: int) -> str:
    """The summary table and totals. When a row per app does not fit (hundreds of apps), apps
    with nothing to report (no change, no error, healthy) are counted in one line instead; only
    if that still does not fit are rows cut, and the table says how many are missing."""
    totals = "\n" + _totals(result)
    rows = [_summary_row(app) for app in result.apps]
    full = _SUMMARY_HEADER + "".join(rows)
    if _units(full) + _units(totals) <= budget:
        return full + totals
    quiet = [not app.has_changes and app.ok and not app.notes for app in result.apps]
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


def _errors_section(result: RunResult, budget: int) -> tuple[str, int]:
    """Errors, then objects that are not healthy, then notes: one line each, under headings per
    app; lines that do not fit are counted instead."""
    groups: list[tuple[str, str, list[str]]] = []
    if result.errors:
        groups.append(("error", "Errors", [_error_line(e) for e in result.errors]))
    for app in result.apps:
        if app.errors:
            heading = f"Errors in {escape_md(app.name)} → {escape_md(app.target)}"
            groups.append(("error", heading, [_error_line(e) for e in app.errors]))
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
    return out, budget - _units(out)


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


# -- text ---------------------------------------------------------------------------------------

_ANSI = {"+": "\x1b[32m", "-": "\x1b[31m", "~": "\x1b[33m", "@": "\x1b[36m", "!": "\x1b[1;31m"}
_RESET = "\x1b[0m"
_TERMINAL_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(text: object) -> str:
    """``text`` with control characters (ANSI escapes, bidi overrides) shown as escapes, so a
    message or a diff line cannot recolour or rewrite the terminal."""
    return _TERMINAL_UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(text))


def render_text(result: RunResult, *, color: bool = False, diffs: bool = True) -> str:
    """A concise terminal report: one line per app, one per changed object (``+``/``~``/``-``),
    errors and unhealthy objects, then (with ``diffs``) each diff indented. ``color`` adds ANSI
    colours; user strings never carry control characters through."""

    def paint(kind: str, text: str) -> str:
        return f"{_ANSI[kind]}{text}{_RESET}" if color and kind in _ANSI else text

    lines: list[str] = []
    span = ""
    if result.base or result.head:
        span = (
            f" {short_ref(result.base)}..{short_ref(result.head)}"
            if result.base
            else f" {short_ref(result.head)}"
        )
    lines.append(f"{TITLES[result.mode]}{_visible(span)} ({result.mode.value})")
    for error in result.errors:
        lines.append(paint("!", f"! {_visible(_error_text(error))}"))
    if not result.apps:
        lines.append(NO_APPS)
    for app in result.apps:
        counts = (
            f"+{len(app.created)} ~{len(app.updated)} -{len(app.deleted)} ={len(app.unchanged)}"
        )
        extra = f", {len(app.errors)} error{_s(len(app.errors))}" if app.errors else ""
        lines.append(f"{_visible(app.name)} -> {_visible(app.target)}: {counts}{extra}")
        for change in app.changes:
            if change.change is Change.UNCHANGED:
                continue
            prefix = PREFIX[change.change]
            where = _source_text(change.source)
            line = f"  {prefix} {_visible(change.ref)}" + (
                f"  ({_visible(where)})" if where else ""
            )
            lines.append(paint(prefix, line))
        for error in app.errors:
            lines.append(paint("!", f"  ! {_visible(_error_text(error))}"))
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
            for change in app.changes:
                if not change.diff:
                    continue
                lines.append("")
                for diff_line in change.diff.splitlines():
                    kind = diff_line[:1]
                    if diff_line.startswith(("---", "+++")):
                        kind = ""
                    lines.append(paint(kind if kind in "+-@" else "", _visible(diff_line)))
    return "\n".join(lines) + "\n"


def _error_text(error: ObjectError) -> str:
    parts = [str(error.ref)] if error.ref else []
    where = _where(error.file, error.line)
    if where:
        parts.append(f"({where})")
    if error.reason:
        parts.append(error.reason)
    prefix = " ".join(parts)
    text = f"{prefix}: {error.message}" if prefix else error.message
    return text + " (transient: will be retried)" if error.transient else text


# -- JSON and dispatch --------------------------------------------------------------------------


def render_json(result: RunResult) -> str:
    """The stable JSON shape of :meth:`RunResult.to_json` (documented in the README)."""
    return json.dumps(result.to_json(), indent=2, sort_keys=False, ensure_ascii=False)


def render(
    result: RunResult,
    *,
    fmt: Format,
    max_chars: int = MAX_CHARS,
    color: bool = False,
    redact: Iterable[str] = (),
) -> str:
    """``result`` in ``fmt``; ``max_chars`` bounds the Markdown format only, ``color`` (ANSI)
    applies to the text format only. ``redact``: values known to be secret (see
    :func:`bot.diff.secret_values`), replaced wherever they appear, e.g. quoted back in a server
    error message."""
    result = redact_values(result, redact)
    if fmt == "markdown":
        return render_markdown(result, max_chars=max_chars)
    if fmt == "json":
        return render_json(result)
    if fmt == "text":
        return render_text(result, color=color)
    raise ValueError(f"unknown report format {fmt!r}: expected markdown, json or text")
