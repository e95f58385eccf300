"""``gitops-bot apps``: the apps of a repository, as the bot sees them.

Lists every app of ``.gitops.yaml``, or the discovered ones when the repository has none,
with its path, target, namespace and renderer: what a newcomer checks first when a change
previews nothing. Reads the working tree of ``--repo`` (it need not be a git repository), or
the commit ``--ref`` names. A broken ``.gitops.yaml`` prints every problem with its line and
exits 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli import EXIT_ERRORS, EXIT_OK, error_result, main
from bot.model import Mode


def list_apps(root: Path) -> dict[str, Any]:
    """The apps of the tree at ``root`` as plain data: ``source`` (``.gitops.yaml`` or
    ``discovered``) and ``apps`` (name, path, target, namespace, renderer each). Raises
    :class:`bot.errors.ConfigError` for a broken ``.gitops.yaml``."""
    from bot.manifests import detect_renderer, load_config

    config = load_config(root)
    return {
        "source": config.source,
        "apps": [
            {
                "name": spec.name,
                "path": spec.path,
                "target": spec.target,
                "namespace": spec.namespace,
                "renderer": detect_renderer(root, spec),
            }
            for spec in config.apps
        ],
    }


def as_text(listing: dict[str, Any]) -> str:
    """A table of the listing, with where the apps come from."""
    apps = listing["apps"]
    where = (
        "discovered (no .gitops.yaml; see docs/gitops-yaml.md for the rule)"
        if listing["source"] == "discovered"
        else f"from {listing['source']}"
    )
    lines = [f"{len(apps)} app{'' if len(apps) == 1 else 's'} {where}"]
    if apps:
        columns = ("name", "path", "target", "namespace", "renderer")
        rows = [[str(app[c] if app[c] is not None else "-") for c in columns] for app in apps]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        for row in [[c.upper() for c in columns], *rows]:
            lines.append(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
    return "\n".join(lines)


@main.command("apps")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The GitOps repository (its working tree, unless --ref is given).",
)
@click.option("--ref", default=None, help="Read this commit instead of the working tree.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def apps_command(repo: Path, ref: str | None, fmt: str) -> None:
    """List the apps of a repository: configured in .gitops.yaml, or discovered."""
    from bot.errors import GitopsError

    try:
        if ref is None:
            listing = list_apps(repo)
        else:
            from bot.manifests import checkout, resolve_commit

            with checkout(repo, resolve_commit(repo, ref)) as root:
                listing = list_apps(root)
    except GitopsError as exc:
        errors = error_result(Mode.OFFLINE, exc).errors
        if fmt == "json":
            click.echo(json.dumps({"apps": [], "errors": [e.to_json() for e in errors]}, indent=2))
        else:
            for error in errors:
                where = error.file or ""
                if where and error.line:
                    where = f"{where}:{error.line}"
                click.echo(f"{where}: {error.message}" if where else error.message, err=True)
        sys.exit(EXIT_ERRORS)
    if fmt == "json":
        click.echo(json.dumps({**listing, "errors": []}, indent=2))
    else:
        click.echo(as_text(listing))
    sys.exit(EXIT_OK)
