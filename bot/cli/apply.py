"""``gitops-bot apply``: deploy a commit of a GitOps repository to a cluster from a terminal.

The same engine as the bot's deploy job: render every (or each named) app at the commit,
apply in order with server-side apply, prune through the ApplySet, wait for health, record the
deployed commit. Progress goes to stderr: a progress bar on a terminal; otherwise (a CI log) a
line per step of each app and, while a step lasts, one every 10 s, so a long health wait is
never silent. The final report goes to stdout, in the chosen format, even when the run stopped
before any app (broken ``.gitops.yaml``, unknown ref or app, bad settings).

Exit codes (shared with ``preview``, :func:`bot.cli.exit_code`): 0 every object applied and is
healthy; 1 everything applied but something is unhealthy (degraded, or still progressing at
the timeout); 2 any error (render, API, refused, configuration, unknown ref).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from bot.cli import EXIT_ERRORS, EXIT_FINDINGS, EXIT_OK, FORMATS, exit_code, fail, finish, main
from bot.jobs.deploy import deploy_commit, git_is_ancestor
from bot.model import Mode

if TYPE_CHECKING:
    from bot.cluster.apply import Progress

EXIT_UNHEALTHY = EXIT_FINDINGS
__all__ = [
    "EXIT_ERRORS",
    "EXIT_OK",
    "EXIT_UNHEALTHY",
    "deploy_commit",
    "exit_code",
    "git_is_ancestor",
]

PROGRESS_INTERVAL = 10.0
"""Seconds between two progress lines of one step when stderr is not a terminal."""


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)


DETAIL = " — "
"""Between a step and its detail (``bot.cluster.rollout.DETAIL``, not imported here so that the
CLI starts without the cluster engine): the stuck pods while waiting for health."""


class ProgressLines:
    """Progress for a log (stderr is not a terminal): ``[app] step: done/total``, written when
    an app starts a step, when the step completes or its detail changes (a pod is seen stuck),
    and every ``interval`` seconds in between with the time spent (the health wait reports
    each poll; the log gets a line per interval). A detail follows the count:
    ``[web] waiting for health: 0/1 (12 s) — Deployment web/web: ... ImagePullBackOff: ...``.
    """

    def __init__(
        self,
        write: Callable[[str], None] | None = None,
        *,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write: Callable[[str], None] = write or _to_stderr
        self.interval, self.clock = interval, clock
        # per app: (step, its detail, done written last, when the step started, when a line
        # was written)
        self._state: dict[str, tuple[str, str, int, float, float]] = {}

    def __call__(self, app: str) -> Progress:
        def report(step: str, done: int, total: int) -> None:
            now = self.clock()
            step, _, detail = step.partition(DETAIL)
            state = self._state.get(app)
            if state is None or state[0] != step:
                started = now
            else:
                _step, said, written, started, last = state
                complete = done == total and written != total
                if not complete and detail == said and now - last < self.interval:
                    return
            elapsed = f" ({now - started:.0f} s)" if now - started >= 1 else ""
            more = f"{DETAIL}{detail}" if detail else ""
            self.write(f"[{app}] {step}: {done}/{total}{elapsed}{more}")
            self._state[app] = (step, detail, done, started, now)

        return report

    def close(self) -> None:
        """Nothing to finish: every line is complete when written."""


class ProgressBars:
    """Progress on a terminal: one ``click.progressbar`` per step of each app, on ``stream``;
    a step's detail (stuck pods) is written on a line of its own when it changes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO = stream or sys.stderr
        self._bar: Any = None  # click's ProgressBar of the step under way
        self._step: tuple[str, str] | None = None
        self._detail = ""

    def __call__(self, app: str) -> Progress:
        def report(step: str, done: int, total: int) -> None:
            step, _, detail = step.partition(DETAIL)
            if self._step != (app, step):
                self.close()
                self._bar = click.progressbar(
                    length=max(total, 1), label=f"[{app}] {step}", file=self.stream, show_pos=True
                )
                self._bar.__enter__()
                self._step = (app, step)
            if detail and detail != self._detail:
                click.echo(f"\n[{app}] {detail}", file=self.stream)
                self._bar.render_progress()
            self._detail = detail
            if done > self._bar.pos:
                self._bar.update(done - self._bar.pos)

        return report

    def close(self) -> None:
        """Finish the bar under way (its line stays on the terminal)."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        self._bar, self._step, self._detail = None, None, ""


@main.command("apply")
@click.option(
    "--repo",
    "repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The GitOps repository (a git checkout).",
)
@click.option("--ref", default="HEAD", show_default=True, help="Commit, branch or tag to deploy.")
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Send every app to this cluster (default: the targets of GITOPS_CLUSTERS_FILE, or "
    "the current kubeconfig context).",
)
@click.option("--context", default=None, help="Kubeconfig context (default: its current one).")
@click.option("--app", "apps", multiple=True, help="Only this app (repeatable).")
@click.option("--dry-run", is_flag=True, help="Server-side dry-run: show what would change.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--no-wait", is_flag=True, help="Do not wait for workloads to become healthy.")
def apply_command(
    repo: Path,
    ref: str,
    kubeconfig: Path | None,
    context: str | None,
    apps: tuple[str, ...],
    dry_run: bool,
    fmt: str,
    no_wait: bool,
) -> None:
    """Apply a commit's manifests to the cluster (ordered, pruned, health-checked).

    Exit code 0 only when every object applied and is healthy; 1 when something is unhealthy;
    2 on any error."""
    progress = ProgressBars() if sys.stderr.isatty() else ProgressLines()
    try:
        from bot.settings import Settings

        result = deploy_commit(
            repo,
            ref,
            settings=Settings.from_env(),
            kubeconfig=kubeconfig,
            context=context,
            apps=apps,
            dry_run=dry_run,
            wait=not no_wait,
            progress=progress,
        )
    except Exception as exc:  # every failure is a report in the chosen format, exit code 2
        progress.close()
        fail(exc, mode=Mode.DEPLOY, fmt=fmt, dry_run=dry_run)
    progress.close()
    finish(result, fmt=fmt)
