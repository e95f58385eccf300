"""What ``gitops-bot doctor`` asks of the forges: one function per forge, each returning its
:class:`~bot.checks.Check` s; this module picks the repositories each one probes.

Light at import (no client library): the probes load PyGithub or python-gitlab only when the
forge is configured. Adding a forge is adding one ``<forge>_checks(settings, repositories=...)``
to :data:`PROBES`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence

from bot.checks import Check, failed, skipped
from bot.forges.base import GitAccess
from bot.settings import Settings

GIT_TIMEOUT = 30.0

AREA = "forges"
NOTHING_CONFIGURED = (
    "set GITHUB_TOKEN (or GITHUB_APP_ID with its private key) and GITHUB_WEBHOOK_SECRET for "
    "GitHub, or GITLAB_TOKEN and GITLAB_WEBHOOK_SECRET for GitLab (README, 'Wiring GitHub' / "
    "'Wiring GitLab'); `gitops-bot serve` offers /setup/github-app to create a GitHub App"
)


def _github(settings: Settings, *, repositories: Sequence[str]) -> list[Check]:
    from bot.forges.github_probes import configured, github_checks

    if not configured(settings):
        return []
    return github_checks(settings, repositories=repositories)


def _gitlab(settings: Settings, *, repositories: Sequence[str]) -> list[Check]:
    from bot.forges.gitlab_probes import configured, gitlab_checks

    if not configured(settings):
        return []
    return gitlab_checks(settings, repositories=repositories)


PROBES: dict[str, Callable[..., list[Check]]] = {"github": _github, "gitlab": _gitlab}


def split_repositories(names: Sequence[str], settings: Settings) -> dict[str, list[str]]:
    """``forge:owner/name`` goes to that forge; a bare ``owner/name`` to GitHub when it is
    configured, else to GitLab."""
    from bot.forges.github_probes import configured as github_configured

    default = "github" if github_configured(settings) else "gitlab"
    split: dict[str, list[str]] = {forge: [] for forge in PROBES}
    for name in names:
        forge, sep, rest = name.partition(":")
        if sep and forge in PROBES:
            split[forge].append(rest)
        else:
            split[default].append(name)
    return split


def forge_checks(settings: Settings, *, repositories: Sequence[str] = ()) -> list[Check]:
    """The checks of every configured forge; one failure naming what to set when none is."""
    split = split_repositories(repositories, settings)
    checks: list[Check] = []
    for forge, probe in PROBES.items():
        checks += probe(settings, repositories=split[forge])
    if not checks:
        return [failed(AREA, "credentials", "no forge is configured", NOTHING_CONFIGURED)]
    if not any(c.area.startswith("github") for c in checks):
        checks.insert(0, skipped("github", "credentials", "GitHub is not configured"))
    return checks


def git_ls_remote(access: GitAccess, *, redact: Callable[[str], str]) -> str | None:
    """Why ``git ls-remote`` with the checkouts' credentials and environment fails, or None
    when it lists the repository's branches."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        **access.env,
    }
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--heads", access.clone_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"git did not run ({type(exc).__name__})"
    if proc.returncode == 0:
        return None
    # git's last line, with anything that looks like the credential removed
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return f"git ls-remote {access.clone_url} failed: {redact(last)[:200]}"
