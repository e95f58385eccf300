"""``gitops-bot preview``: what a branch changes, per app, from two commits of a local repository.

Renders the affected apps (or those named with ``--app``) at ``--base`` and ``--head`` and
prints the per-object diff, Secret values masked: offline (head against base, no cluster and no
forge needed) or, with ``--kubeconfig``/``--context``, head against the live cluster by
server-side dry-run. ``--merge`` previews ``--head`` merged into ``--base``, as the bot previews
a pull request. The engine is the bot's own (:func:`bot.jobs.compare.preview_commits`), so the
command and the PR comment agree. Progress goes to stderr only when stderr is a terminal; the
report goes to stdout.

Exit codes (shared with ``apply``, :func:`bot.cli.exit_code`): 0 success; 1 with
``--exit-code`` when something changes (like ``git diff --exit-code``); 2 on any error (bad
``.gitops.yaml``, an app that fails to render or validate, an unknown ref or app, bad
settings), with or without ``--exit-code``: a preview with errors is never a clean pass. An
error that stops the preview before any app is still a report in the chosen format.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from bot.cli import fail, finish, main
from bot.model import Mode


@main.command("preview")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The GitOps repository (a local git repository).",
)
@click.option("--base", required=True, help="The commit, branch or tag to compare against.")
@click.option("--head", default="HEAD", show_default=True, help="The commit to preview.")
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="NAME",
    help="Preview this app even if the change does not touch it (repeatable). Default: the "
    "apps the change affects.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json", "text"]),
    default="text",
    show_default=True,
    help="Report format; json is the stable structure documented in docs/report.md.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Diff the head against the live cluster of this kubeconfig (server-side dry-run) "
    "instead of against the base; the base still selects the affected apps.",
)
@click.option("--context", default=None, help="Kubeconfig context (default: its current one).")
@click.option(
    "--merge",
    is_flag=True,
    help="Preview HEAD merged into BASE (what merging a pull request would deploy; the bot "
    "previews pull requests this way) instead of HEAD itself.",
)
@click.option(
    "--exit-code",
    "exit_on_changes",
    is_flag=True,
    help="Exit 1 when there are changes (errors always exit 2).",
)
def preview_command(
    repo: Path,
    base: str,
    head: str,
    apps: tuple[str, ...],
    fmt: str,
    kubeconfig: Path | None,
    context: str | None,
    merge: bool,
    exit_on_changes: bool,
) -> None:
    """Preview what HEAD changes compared with BASE, per app (offline unless --kubeconfig)."""
    show = sys.stderr.isatty()
    started = time.monotonic()

    def progress(message: str) -> None:
        if show:
            click.echo(f"[{time.monotonic() - started:5.1f}s] {message}", err=True)

    live = kubeconfig is not None or context is not None
    try:
        from bot.jobs.compare import LiveTargets, preview_commits

        targets: LiveTargets | None = None
        if live:
            from bot.cluster.targets import Targets
            from bot.settings import Settings

            override = context or "kubeconfig"
            targets = LiveTargets.from_settings(
                Settings.from_env(),
                Targets.single(override, kubeconfig=kubeconfig, context=context),
                override=override,
            )
        result = preview_commits(
            repo,
            base,
            head,
            apps=list(apps) or None,
            live=targets,
            merge=merge,
            progress=progress,
        )
    except Exception as exc:  # every failure is a report in the chosen format, exit code 2
        fail(exc, mode=Mode.LIVE if live else Mode.OFFLINE, fmt=fmt)
    finish(result, fmt=fmt, changes_fail=exit_on_changes)


@main.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of .gitops.yaml (for editors and CI linters)."""
    import json

    from bot.manifests import schema

    click.echo(json.dumps(schema(), indent=2))
