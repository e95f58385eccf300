"""``gitops-bot apply``: deploy a commit of a GitOps repository to a cluster from a terminal.

The same engine as the bot's deploy job: render every (or each named) app at the commit,
apply in order with server-side apply, prune through the ApplySet, wait for health, record the
deployed commit. Progress goes to stderr (a line per step on a terminal, nothing otherwise);
the final report goes to stdout.

Exit codes: 0 every object applied and is healthy; 1 everything applied but something is
unhealthy (degraded, or still progressing at the timeout); 2 errors (render, API, refused).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click

from bot.cli import cli_settings, main
from bot.cluster.apply import IsAncestor, Progress
from bot.cluster.applyset import DEFAULT_TOOLING
from bot.cluster.runner import Clusters, run_apply
from bot.cluster.targets import Targets
from bot.errors import GitopsError
from bot.model import RunResult

EXIT_OK, EXIT_UNHEALTHY, EXIT_ERRORS = 0, 1, 2


def exit_code(result: RunResult) -> int:
    """0 all applied and healthy, 2 any error, 1 otherwise unhealthy."""
    if result.has_errors:
        return EXIT_ERRORS
    return EXIT_OK if result.ok else EXIT_UNHEALTHY


def git_is_ancestor(repo: Path) -> IsAncestor:
    """``is_ancestor(old, new)`` answered by ``git merge-base --is-ancestor`` in ``repo``; a
    commit git does not know (history rewritten, shallow clone) is not an ancestor."""

    def is_ancestor(old: str, new: str) -> bool:
        proc = subprocess.run(
            ["git", "-C", str(repo), "merge-base", "--is-ancestor", old, new],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    return is_ancestor


def _progress_for(enabled: bool) -> Callable[[str], Progress]:
    def for_app(app: str) -> Progress:
        last: list[tuple[str, int, int]] = []

        def report(step: str, done: int, total: int) -> None:
            # the health wait reports every poll; a line only when something moved
            if enabled and (not last or last[0] != (step, done, total)):
                last[:] = [(step, done, total)]
                click.echo(f"[{app}] {step}: {done}/{total}", err=True)

        return report

    return for_app


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
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
    from bot.manifests import checkout, load_config, render_apps, resolve_commit
    from bot.report import render

    settings = cli_settings()
    tooling = settings.applyset_tooling or DEFAULT_TOOLING
    try:
        commit = resolve_commit(repo, ref)
        if kubeconfig is not None or context is not None:
            name = context or "kubeconfig"
            targets, override = Targets.single(name, kubeconfig=kubeconfig, context=context), name
        else:
            targets = Targets.from_settings(settings.clusters_file)
            override = None
        with checkout(repo, commit) as root:
            config = load_config(root)
            known = {spec.name for spec in config.apps}
            unknown = [a for a in apps if a not in known]
            if unknown:
                raise click.UsageError(
                    f"unknown app(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
                )
            rendered = render_apps(root, config, apps=list(apps) or None)
        with Clusters(targets, concurrency=settings.kube_concurrency) as clusters:
            result = run_apply(
                rendered,
                clusters,
                commit=commit,
                field_manager=settings.field_manager,
                dry_run=dry_run,
                progress=_progress_for(sys.stderr.isatty()),
                is_ancestor=git_is_ancestor(repo),
                target_override=override,
                wait=not no_wait,
                tooling=tooling,
            )
            result.dry_run = dry_run
    except GitopsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(render(result, fmt=fmt))  # type: ignore[arg-type]
    sys.exit(exit_code(result))
