"""The ``gitops-bot`` command: one click group, one module per subcommand.

Subcommand modules register themselves on :data:`main` when imported below; adding a command is
adding a module, not editing a switch.
"""

from __future__ import annotations

import atexit
import gc
import importlib

import click

from bot import __version__
from bot.errors import SettingsError
from bot.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gitops-bot")
def main() -> None:
    """GitOps bot: PR previews of what merging changes in Kubernetes, apply on merge."""
    # The interpreter's last collection at exit walks every object the imports made (the
    # kubernetes client's alone: 0.13 s of a 0.65 s `preview --kubeconfig`, bench/cluster.py
    # --whole); frozen at exit, they are left to the operating system.
    atexit.register(gc.freeze)


def cli_settings(*, require_webhook_secret: bool = False) -> Settings:
    """The bot's settings for a command; a malformed one ends the command naming it."""
    try:
        return Settings.from_env(require_webhook_secret=require_webhook_secret)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc


# Each module defines its command(s) with @main.command(); optional ones may be missing while
# the project grows, so a failing import of an unfinished command never breaks the others.
for _module in ("serve", "preview", "apply"):
    try:
        importlib.import_module(f"bot.cli.{_module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bot.cli.{_module}":
            raise
