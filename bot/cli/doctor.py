"""``gitops-bot doctor``: check the bot's set-up, or print the RBAC a repository needs.

The checks live in :mod:`bot.doctor`; this module parses options and prints. Exit codes: 0
everything passed, 1 something could not be verified (WARN), 2 something failed (and with
``--rbac``: the repository's configuration is broken).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli import main


def _service_account(value: str) -> tuple[str, str]:
    namespace, sep, name = value.partition(":")
    if not sep or not namespace or not name or ":" in name:
        raise click.BadParameter("expected NAMESPACE:NAME, such as gitops-bot:gitops-bot")
    return namespace, name


@main.command("doctor")
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A clone of a GitOps repository (its working tree): check that the bot may do on "
    "each target what the repository's apps need, and probe the forge on its origin.",
)
@click.option(
    "--repository",
    "repositories",
    multiple=True,
    metavar="OWNER/NAME",
    help="A repository on the forge to probe the credentials on (repeatable; `gitlab:` or "
    "`github:` in front picks the forge). Also probed: --repo's origin and the names "
    "GITOPS_REPOSITORIES lists without wildcards.",
)
@click.option(
    "--rbac",
    is_flag=True,
    help="Print the Roles, RoleBindings and ClusterRole the apps of --repo need, as YAML "
    "ready for `kubectl apply -f -`, instead of checking.",
)
@click.option("--target", default=None, help="With --rbac: only this target's part.")
@click.option(
    "--service-account",
    default="gitops-bot:gitops-bot",
    show_default=True,
    metavar="NAMESPACE:NAME",
    help="With --rbac: the bot's ServiceAccount, the subject of the bindings.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def doctor_command(
    repo: Path | None,
    repositories: tuple[str, ...],
    rbac: bool,
    target: str | None,
    service_account: str,
    fmt: str,
) -> None:
    """Check settings, forge credentials, webhook secrets, Redis and every cluster target.

    One table, a fix for each failure; exit 0 only when everything passed."""
    from bot import doctor

    if rbac:
        if repo is None:
            raise click.UsageError("--rbac needs --repo PATH (the clone whose apps need rights)")
        from bot.errors import ConfigError

        try:
            text = doctor.rbac_text(
                repo, service_account=_service_account(service_account), target=target
            )
        except ConfigError as exc:
            click.echo(f"cannot read the repository's apps: {exc}", err=True)
            sys.exit(doctor.EXIT_FAILED)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--target") from exc
        click.echo(text)
        sys.exit(doctor.EXIT_OK)
    if target is not None:
        raise click.UsageError("--target goes with --rbac")
    checks = doctor.diagnose(doctor.Options(repo=repo, repositories=repositories))
    click.echo(doctor.render_json(checks) if fmt == "json" else doctor.render_text(checks))
    sys.exit(doctor.exit_code(checks))
