"""The deploy report of one push: the commit status and the sticky comment on the merged PR.

Pure: from the run record (:mod:`bot.jobs.deploy_run`), each app's deploy result and the check
against the PR's preview (:mod:`bot.jobs.previewed`) to a status (state and a description of
at most 140 characters) and comment parts. The comment starts with what happened to each app
(deployed, failed and why, paused, superseded, not deployed because of a dependency) and the
check against the preview ("as previewed", or "Differs from the preview" listing each object),
then the deploy report of :func:`bot.report.comment_parts` (applied, pruned, health per app,
errors with the object and ``file:line``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.forges.base import STATUS_DESCRIPTION_LIMIT, StatusState, shorten
from bot.jobs.deploy_run import AppRun, AppState, RunRecord, error_from_json
from bot.jobs.previewed import SYMBOL, Check
from bot.model import AppResult, Health, Mode, ObjectError, RunResult
from bot.report import comment_parts, escape_md

# -- what people read ----------------------------------------------------------------------------

TITLE = "GitOps deploy"  # the heading adds the commit
TITLE_INSTANCE = "GitOps deploy ({instance})"
PENDING = "Deploying {sha}…"
PENDING_PAUSED = " (paused: {apps})"
PENDING_RETRY = "A transient error interrupted the deploy; it will be retried: {reason}"
ERROR_STATUS = "The deploy failed: {reason}"
NOTHING = "Nothing to deploy: every app is as deployed"
NOTHING_COMMENT = (
    "Nothing to deploy: the objects of every app at this commit are the ones already deployed."
)
CONFIG_FAILED = "Not deployed: {error}"
DEPLOYED = "{count} app{s} deployed and healthy: {counts}"
SUPERSEDED_ALL = "Superseded by {sha} before it deployed: the newer commit deploys these changes"
FAILED_ONE = "{app}: {reason}"
FAILED = "{failed} of {total} apps not deployed healthy · {app}: {reason}"
PAUSED = "Paused: {apps} ({reason}) · deploys on gitops-bot resume"
AS_PREVIEWED = "as previewed"
DIFFERS = "differs from the preview"
ALSO_SUPERSEDED = "{count} superseded"
UNCHANGED = "{count} other app{s} unchanged"

STATE_LINE = {
    AppState.DEPLOYED: "deployed",
    AppState.FAILED: "**failed**",
    AppState.BLOCKED: "**not deployed**",
    AppState.SUPERSEDED: "superseded",
    AppState.PAUSED: "**paused**",
    AppState.WAITING: "waiting",
    AppState.QUEUED: "queued",
    AppState.RUNNING: "deploying",
}
SUPERSEDED_DETAIL = "superseded by {sha}: a newer push deploys this app"
BLOCKED_ERROR = "{detail}"
CHECK_AS_PREVIEWED = (
    "**As previewed.** The deploy changed exactly the objects the last preview of #{number} "
    "showed{tree}."
)
CHECK_DIFFERS = (
    "**Differs from the preview.** The deploy did not change exactly what the last preview of "
    "#{number} showed{tree}:"
)
CHECK_SAME_TREE = " (the merge result it previewed has the tree of this commit)"
CHECK_OTHER_TREE = (
    " (it previewed {merge}, whose tree is not this commit's: another merge landed, or the pull "
    "request changed after its last preview)"
)
CHECK_OFFLINE = (
    " Its preview was offline for {apps} (compared with the base, not with the cluster), so "
    "drift in the cluster shows here."
)
CHECK_UNEXPECTED = "- {symbol} {label} (`{app}`): changed by the deploy, not shown by the preview"
CHECK_MISSING = "- {symbol} {label} (`{app}`): shown by the preview, not changed by the deploy"
CHECK_OTHERWISE = "- {label} (`{app}`): previewed {previewed}, deployed {deployed}"
CHECK_MORE = "- …and {count} more"
CHECK_NO_PREVIEW = (
    "**Not checked against a preview:** no preview of #{number} is kept (the bot keeps the "
    "last one for GITOPS_PREVIEW_RESULT_TTL)."
)
CHECK_ELSEWHERE = " Apps not deployed by this push ({apps}) are left out of the check."
MAX_CHECK_LINES = 50
MAX_PREFACE = 20_000


@dataclass(frozen=True)
class Counts:
    created: int
    updated: int
    deleted: int

    @property
    def text(self) -> str:
        if not (self.created or self.updated or self.deleted):
            return "no changes"
        return f"+{self.created} ~{self.updated} -{self.deleted}"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def counts(apps: Sequence[AppResult]) -> Counts:
    return Counts(
        created=sum(len(a.created) for a in apps),
        updated=sum(len(a.updated) for a in apps),
        deleted=sum(len(a.deleted) for a in apps),
    )


def failure_reason(app: AppResult) -> str:
    """The first reason an app did not deploy healthy: its first error (with the object), else
    its first object not healthy."""
    if app.errors:
        error = app.errors[0]
        where = f"{error.ref}: " if error.ref is not None else ""
        if error.ref is None and error.file:
            where = f"{error.file}:{error.line}: " if error.line else f"{error.file}: "
        return where + " ".join(error.message.split())
    for health in app.health:
        if health.health in (Health.DEGRADED, Health.PROGRESSING):
            why = health.reason or health.message or ""
            return f"{health.ref} {health.health.value}" + (f": {why}" if why else "")
    return "unknown"


def title(*, sha: str, instance: str) -> str:
    template = TITLE_INSTANCE if instance else TITLE
    return template.format(sha=sha[:7], instance=instance)


def run_result(run: RunRecord, results: Mapping[str, AppResult]) -> RunResult:
    """The push as one :class:`RunResult` (mode DEPLOY): each app's deploy result, and an error
    for each app a dependency stopped. Apps this push did not apply for another reason
    (superseded, paused) are left to the preface: a row of zeros would read as deployed."""
    result = RunResult(mode=Mode.DEPLOY, head=run.sha)
    result.errors = [error_from_json(e) for e in run.errors]
    for app in run.apps.values():
        found = results.get(app.key)
        if found is not None and app.state in (AppState.DEPLOYED, AppState.FAILED):
            result.apps.append(found)
        elif app.state is AppState.BLOCKED:
            entry = found or AppResult(name=app.name, target=app.target, commit=run.sha)
            entry.errors.append(
                ObjectError(BLOCKED_ERROR.format(detail=app.detail), reason="Blocked")
            )
            result.apps.append(entry)
    return result


def status(
    run: RunRecord, results: Mapping[str, AppResult], check: Check | None
) -> tuple[StatusState, str]:
    """The commit status of the push as it stands (``pending`` while apps are paused)."""
    apps = list(run.apps.values())
    if run.errors:
        error = error_from_json(run.errors[0])
        where = f"{error.file}:{error.line}: " if error.file and error.line else ""
        text = CONFIG_FAILED.format(error=where + " ".join(error.message.split()))
        return StatusState.FAILURE, shorten(text, STATUS_DESCRIPTION_LIMIT)
    bad = [a for a in apps if a.state in (AppState.FAILED, AppState.BLOCKED)]
    if bad:
        first: AppRun = bad[0]
        template = FAILED_ONE if len(bad) == 1 else FAILED
        text = template.format(
            failed=len(bad), total=len(apps), app=first.name, reason=first.detail or "failed"
        )
        return StatusState.FAILURE, shorten(text, STATUS_DESCRIPTION_LIMIT)
    paused = [a for a in apps if a.state is AppState.PAUSED]
    if paused:
        reason = next((a.detail for a in paused if a.paused_self), paused[0].detail)
        names = ", ".join(a.name for a in paused)
        text = PAUSED.format(apps=names, reason=reason)
        return StatusState.PENDING, shorten(text, STATUS_DESCRIPTION_LIMIT)
    deployed = [a for a in apps if a.state is AppState.DEPLOYED]
    superseded = [a for a in apps if a.state is AppState.SUPERSEDED]
    if not deployed and superseded:
        newer = superseded[0].detail.removeprefix("superseded by ").split(":")[0]
        return StatusState.SUCCESS, shorten(
            SUPERSEDED_ALL.format(sha=newer), STATUS_DESCRIPTION_LIMIT
        )
    if not deployed:
        return StatusState.SUCCESS, NOTHING
    found = [results[a.key] for a in deployed if a.key in results]
    pieces = [DEPLOYED.format(count=len(deployed), s=_s(len(deployed)), counts=counts(found).text)]
    if superseded:
        pieces.append(ALSO_SUPERSEDED.format(count=len(superseded)))
    if check is not None:
        pieces.append(AS_PREVIEWED if check.as_previewed else DIFFERS)
    return StatusState.SUCCESS, shorten(" · ".join(pieces), STATUS_DESCRIPTION_LIMIT)


def _state_line(app: AppRun) -> str:
    text = f"`{escape_md(app.name)}` {STATE_LINE[app.state]}"
    if app.detail and app.state is not AppState.DEPLOYED:
        text += f" ({escape_md(app.detail)})"
    return text


def check_text(check: Check | None, *, number: int | None, elsewhere: Sequence[str]) -> str:
    """The check against the preview, in Markdown ('' when the push came from no PR)."""
    if number is None:
        return ""
    if check is None:
        return CHECK_NO_PREVIEW.format(number=number) + "\n"
    record = check.record
    tree = ""
    if check.same_tree is True:
        tree = CHECK_SAME_TREE
    elif check.same_tree is False:
        tree = CHECK_OTHER_TREE.format(merge=f"<code>{record.merge_sha[:7]}</code>")
    offline = [a for a in record.offline_apps if a in record.apps]
    if record.mode == "offline":
        offline = list(record.apps)
    extra = (
        CHECK_OFFLINE.format(apps=", ".join(f"`{escape_md(a)}`" for a in offline))
        if offline
        else ""
    )
    skipped = [a for a in elsewhere if a in record.apps]
    if skipped:
        extra += CHECK_ELSEWHERE.format(apps=", ".join(f"`{escape_md(a)}`" for a in skipped))
    if check.as_previewed:
        return CHECK_AS_PREVIEWED.format(number=number, tree=tree) + extra + "\n"
    lines = [CHECK_DIFFERS.format(number=number, tree=tree) + extra, ""]
    rows = [
        CHECK_UNEXPECTED.format(
            symbol=SYMBOL[change], label=escape_md(line.label), app=escape_md(line.app)
        )
        for line, change in check.unexpected
    ]
    rows += [
        CHECK_MISSING.format(
            symbol=SYMBOL[change], label=escape_md(line.label), app=escape_md(line.app)
        )
        for line, change in check.missing
    ]
    rows += [
        CHECK_OTHERWISE.format(
            label=escape_md(line.label),
            app=escape_md(line.app),
            previewed=SYMBOL[previewed],
            deployed=SYMBOL[deployed],
        )
        for line, previewed, deployed in check.otherwise
    ]
    if len(rows) > MAX_CHECK_LINES:
        rows = [*rows[:MAX_CHECK_LINES], CHECK_MORE.format(count=len(rows) - MAX_CHECK_LINES)]
    return "\n".join(lines + rows) + "\n"


def preface(run: RunRecord, check: Check | None) -> str:
    """What happened to each app and the check against the preview, before the deploy report."""
    apps = list(run.apps.values())
    out = ""
    if apps:
        out += "**Apps:** " + " · ".join(_state_line(a) for a in apps)
        if run.unchanged:
            out += " · " + UNCHANGED.format(count=len(run.unchanged), s=_s(len(run.unchanged)))
        out += "\n\n"
    elif not run.errors:
        out += NOTHING_COMMENT + "\n\n"
    elsewhere = [a.name for a in apps if a.state in (AppState.SUPERSEDED, AppState.PAUSED)]
    text = check_text(check, number=run.pr, elsewhere=elsewhere)
    if text:
        out += text + "\n"
    if len(out) > MAX_PREFACE:
        out = out[: MAX_PREFACE - 40].rsplit("\n", 1)[0] + "\n- …(cut to fit the comment)\n\n"
    return out


def comment(
    run: RunRecord,
    results: Mapping[str, AppResult],
    check: Check | None,
    *,
    instance: str,
    limit: int,
    max_parts: int,
) -> list[str]:
    """The deploy comment in parts of at most ``limit`` characters: the title, the preface
    (apps, check against the preview), then the deploy report."""
    head = preface(run, check)
    result = run_result(run, results)
    heading = title(sha=run.sha, instance=instance)
    if not result.apps and not result.errors:  # nothing applied: the preface says why
        return [f"### {escape_md(heading)} · <code>{run.sha[:7]}</code>\n\n{head}"]
    parts = comment_parts(
        result,
        limit=max(limit - len(head), 1_000),
        max_parts=max_parts,
        title=heading,
        full_command=f"gitops-bot apply --repo . --ref {run.sha} --dry-run",
        retried=False,
    )
    first = parts[0]
    # after the title and the subtitle ("### …\n\n<subtitle>\n\n")
    cut = first.find("\n\n", first.find("\n\n") + 2)
    cut = cut + 2 if cut >= 0 else len(first)
    parts[0] = first[:cut] + head + first[cut:]
    return parts
