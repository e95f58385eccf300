"""The ``gitops-bot`` command: one click group, one module per subcommand.

Subcommand modules register themselves on :data:`main` when imported below; adding a command is
adding a module, not editing a switch. ``gitops-bot --help`` imports every one of them, so a
command module imports at its top only what its options need (click, the light core) and the
rest inside its function: the Kubernetes client, Celery or Redis load only for the command that
uses them (``bench/cli.py`` measures it).
"""

from __future__ import annotations

import atexit
import gc
import sys
import traceback
from typing import NoReturn

import click

from bot import __version__
from bot.errors import ConfigError, GitopsError, SettingsError
from bot.model import Mode, ObjectError, RunResult
from bot.settings import Settings

EXIT_OK, EXIT_FINDINGS, EXIT_ERRORS = 0, 1, 2
"""The exit codes of ``preview`` and ``apply``: 0 ok; 1 changes (``preview --exit-code``) or
something unhealthy (``apply``); 2 any error, whatever else happened."""

FORMATS = ("text", "json", "markdown")
MSG_INTERNAL = "internal error ({kind}: {error}); the traceback is on stderr, please report it"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gitops-bot")
def main() -> None:
    """GitOps bot: PR previews of what merging changes in Kubernetes, apply on merge."""
    # The interpreter's last collection at exit walks every object the imports made (the
    # kubernetes client's alone: 0.13 s of a 0.65 s `preview --kubeconfig`, bench/cluster.py
    # --whole); frozen at exit, they are left to the operating system.
    atexit.register(gc.freeze)
    _setup_logging()


def _setup_logging() -> None:
    """Log lines (on stderr; reports go to stdout) in GITOPS_LOG_FORMAT, secrets redacted;
    ``serve``, ``worker`` and ``beat`` set it up again as their own component."""
    from bot.logs import setup_logging

    try:
        settings = Settings.from_env()
    except SettingsError:
        return  # the command itself reports the malformed setting
    setup_logging(settings, component="cli")


def cli_settings(*, require_webhook_secret: bool = False) -> Settings:
    """The bot's settings for a command; a malformed one ends the command naming it."""
    try:
        return Settings.from_env(require_webhook_secret=require_webhook_secret)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc


def exit_code(result: RunResult, *, changes_fail: bool = False) -> int:
    """2 on any error; else 1 when something is unhealthy, or changes with ``changes_fail``;
    else 0."""
    if result.has_errors:
        return EXIT_ERRORS
    if not result.ok or (changes_fail and result.has_changes):
        return EXIT_FINDINGS
    return EXIT_OK


def error_result(mode: Mode, exc: BaseException, *, dry_run: bool = False) -> RunResult:
    """A run that ended before any app: the error as the report's top-level errors (every
    problem of a broken ``.gitops.yaml``, with its line)."""
    result = RunResult(mode=mode, dry_run=dry_run)
    if isinstance(exc, ConfigError):
        from bot.manifests import config_errors

        result.errors.extend(config_errors(exc))
    elif isinstance(exc, GitopsError):
        result.errors.append(ObjectError(str(exc), reason=type(exc).__name__))
    else:
        result.errors.append(
            ObjectError(MSG_INTERNAL.format(kind=type(exc).__name__, error=exc), reason="Internal")
        )
    return result


def finish(result: RunResult, *, fmt: str, changes_fail: bool = False) -> NoReturn:
    """Print ``result`` in ``fmt`` on stdout and exit with :func:`exit_code`."""
    from bot.report import render

    click.echo(render(result, fmt=fmt))  # type: ignore[arg-type]
    sys.exit(exit_code(result, changes_fail=changes_fail))


def fail(exc: BaseException, *, mode: Mode, fmt: str, dry_run: bool = False) -> NoReturn:
    """End a command that could not run (broken ``.gitops.yaml``, unknown ref, bad settings,
    or a bug) with its report in ``fmt`` and exit code 2."""
    if not isinstance(exc, GitopsError):
        traceback.print_exception(exc, file=sys.stderr)
    finish(error_result(mode, exc, dry_run=dry_run), fmt=fmt)


# Each module defines its command(s) with @main.command() when imported.
from bot.cli import apply, apps, doctor, preview, serve  # noqa: E402, F401
