"""The command job: ``/sync [app …]`` and ``/help`` in a pull request's comments.

* Comments of bots are ignored — accounts the forge marks as bots, ``[bot]`` logins,
  ``GITOPS_BOT_LOGINS`` and the bot's own account (``forge.identity()``), so the bot never
  answers itself (the intake drops most; this is the last word).
* Only people with write access or more (GitHub's write/maintain/admin, GitLab's Developer and
  up: :attr:`bot.forges.Permission.may_run_commands`) run commands; anyone else gets one short
  reply and nothing runs.
* ``/sync``: an ``eyes`` reaction at once, then the preview re-run at the PR's *current* head and
  base, against the clusters as they are now, editing the same sticky comment
  (:func:`bot.jobs.preview.run_preview`). Named apps are previewed besides the apps the PR
  touches (even when it does not touch them), so the comment and the status always cover every
  affected app. A name the repository does not know gets a reply listing the valid names, and
  nothing is re-run.
* ``/help``: a reply with :data:`bot.commands.HELP_TEXT`; a malformed ``/sync`` gets what is
  wrong with it and the same help.

Every reply is keyed to the comment it answers (a hidden marker naming it), so a job retried or
redelivered edits its reply instead of posting a second one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.commands import HELP_TEXT, Command
from bot.events import CommandEvent
from bot.forges.markers import Marker
from bot.forges.sticky import reconcile
from bot.jobs.context import JobContext
from bot.jobs.preview import CLOSED, UNKNOWN_APPS, PreviewOutcome, run_preview
from bot.report import escape_md

IGNORED = "ignored"
REFUSED = "refused"
HELPED = "helped"
INVALID = "invalid"
SYNCED = "synced"

NOT_ALLOWED = (
    "Only people who may push to this repository (write access or more on GitHub, Developer "
    "or more on GitLab) can run gitops-bot commands, and {author} may not: nothing was run."
)
UNKNOWN_APP = (
    "{names} {verb} not {an}app{s} of this repository, so nothing was re-run. The apps are: "
    "{known}."
)
NOT_OPEN = "This pull request is {state}: there is nothing to preview."


@dataclass(frozen=True)
class CommandOutcome:
    """What the command job did: ``outcome`` one of the constants above; ``preview`` the
    re-run preview's outcome for ``/sync``."""

    outcome: str
    detail: str = ""
    preview: PreviewOutcome | None = None


def handle_command(event: CommandEvent, ctx: JobContext) -> CommandOutcome:
    """Answer one command comment (see the module's rules)."""
    forge = ctx.forge
    author = event.author.casefold()
    if (
        author == forge.identity().login.casefold()
        or author.endswith("[bot]")
        or author in ctx.settings.bot_logins
    ):
        return CommandOutcome(IGNORED, f"{event.author} is a bot")
    permission = forge.permission(event.author)
    if not permission.may_run_commands:
        role = permission.name.lower() if permission.value else "no"
        _reply(ctx, event, NOT_ALLOWED.format(author=escape_md(event.author)))
        ctx.log.info("%s (%s access) may not run /%s", event.author, role, event.command)
        return CommandOutcome(REFUSED, f"{event.author} has {role} access")
    if event.command == "help":
        _reply(ctx, event, HELP_TEXT)
        return CommandOutcome(HELPED)
    if event.command != "sync":
        _reply(ctx, event, f"{Command('invalid', event.args).error}\n\n{HELP_TEXT}")
        return CommandOutcome(INVALID, "malformed /sync")
    forge.react(event.number, event.comment_id, "eyes")
    ctx.log.info("/sync %s by %s", " ".join(event.args) or "(every affected app)", event.author)
    outcome = run_preview(ctx, event.number, sync_by=event.author, apps=event.args)
    if outcome.outcome == UNKNOWN_APPS:
        count = len(outcome.unknown_apps)
        text = UNKNOWN_APP.format(
            names=", ".join(f"`{name}`" for name in outcome.unknown_apps),
            verb="is" if count == 1 else "are",
            an="an " if count == 1 else "",
            s="" if count == 1 else "s",
            known=", ".join(f"`{name}`" for name in outcome.known_apps) or "none",
        )
        _reply(ctx, event, text)
    elif outcome.outcome == CLOSED:
        _reply(ctx, event, NOT_OPEN.format(state=outcome.detail.rsplit(" ", 1)[-1]))
    return CommandOutcome(
        SYNCED if outcome.outcome != UNKNOWN_APPS else UNKNOWN_APPS, preview=outcome
    )


def _reply(ctx: JobContext, event: CommandEvent, text: str) -> None:
    """Reply to the comment once: a retried or redelivered job edits its reply."""
    marker = Marker(f"reply-{event.comment_id}", ctx.settings.instance)
    reconcile(ctx.forge, event.number, marker, [text])
