"""The forges (GitHub, GitLab) behind one small protocol; the only package importing their
client libraries.

Jobs ask :func:`connect` for the :class:`Forge` of an event's repository and use the neutral
types of :mod:`bot.forges.base`; the sticky comment reconciler (:mod:`bot.forges.sticky`),
status contexts and markers (:mod:`bot.forges.markers`) and the intake's policy
(:mod:`bot.forges.policy`) are forge-neutral. Importing this package imports neither PyGithub nor
python-gitlab: the web process uses the policy on every delivery and never talks to a forge.
"""

from __future__ import annotations

import logging

from bot.errors import ForgeHostRefused, ForgeNotConfigured, ForgePermanentError
from bot.events import Repository
from bot.forges.base import (
    Comment,
    Forge,
    GitAccess,
    Identity,
    Issue,
    Permission,
    PullRequest,
    PullState,
    Reaction,
    RepoInfo,
    StatusState,
)
from bot.forges.markers import Marker, status_context
from bot.forges.policy import RepositoryFilter, forge_refusal, intake_refusal
from bot.settings import Settings

log = logging.getLogger("gitops_bot.forges")

__all__ = [
    "Comment",
    "Forge",
    "GitAccess",
    "Identity",
    "Issue",
    "Marker",
    "Permission",
    "PullRequest",
    "PullState",
    "Reaction",
    "RepoInfo",
    "RepositoryFilter",
    "StatusState",
    "app_installations",
    "check_configured",
    "connect",
    "connect_by_name",
    "intake_refusal",
    "startup_warnings",
    "status_context",
]


def check_configured(settings: Settings, provider: str) -> None:
    """Raise :class:`ForgeNotConfigured` naming the missing setting when the bot has no usable
    credentials for ``provider``. Jobs call it (through :func:`connect`) first, so a bot set up
    with only a webhook secret fails each job with that message instead of a stack trace."""
    if provider == "github":
        from bot.forges.github import GitHubConfig

        GitHubConfig.from_settings(settings)
        return
    if provider == "gitlab":
        from bot.forges.gitlab import GitLabConfig

        GitLabConfig.from_settings(settings)
        return
    raise ForgeNotConfigured(f"the bot does not serve {provider} repositories")


def startup_warnings(settings: Settings) -> list[str]:
    """One line per forge whose webhook secret is set without credentials (printed once at
    start-up; the Quick start keeps working with just a webhook secret)."""
    warnings = []
    if settings.github_webhook_secret:
        try:
            check_configured(settings, "github")
        except ForgeNotConfigured as exc:
            warnings.append(f"{exc}; every GitHub job will fail until then")
    if settings.gitlab_webhook_secret:
        try:
            check_configured(settings, "gitlab")
        except ForgeNotConfigured as exc:
            warnings.append(f"{exc}; every GitLab job will fail until then")
    return warnings


def app_installations(settings: Settings) -> list[tuple[Repository, int]]:
    """The repositories a GitHub App (``GITHUB_APP_ID``) is installed on, with their
    installation ids; empty without one. Raises the ForgeError family."""
    if settings.github_app_id is None:
        return []
    from bot.forges.github import GitHubConfig, installed_repositories

    return installed_repositories(GitHubConfig.from_settings(settings))


def connect(
    settings: Settings, repository: Repository, *, installation_id: int | None = None
) -> Forge:
    """The :class:`Forge` of the repository an event names.

    Refuses (``ForgeHostRefused``) a repository whose API root is not the configured one before
    any request, so no credential goes to a host named by a payload; refuses repositories
    outside ``GITOPS_REPOSITORIES``; raises ``ForgeNotConfigured`` without credentials."""
    refusal = forge_refusal(settings, repository)
    if refusal is not None:
        log.warning("refused to connect to %s: %s", repository.full_name, refusal)
        raise ForgeHostRefused(refusal, repository=repository.full_name)
    return connect_by_name(
        settings, repository.provider, repository.full_name, installation_id=installation_id
    )


def connect_by_name(
    settings: Settings, provider: str, full_name: str, *, installation_id: int | None = None
) -> Forge:
    """The :class:`Forge` of ``full_name`` on the configured ``provider`` (CLI, catch-up).
    ``installation_id`` (a GitHub App's) is ignored on GitLab."""
    not_served = RepositoryFilter(settings.repositories).refusal(full_name)
    if not_served is not None:
        raise ForgePermanentError(not_served, repository=full_name)
    check_configured(settings, provider)
    if provider == "gitlab":
        from bot.forges.gitlab import GitLabConfig, GitLabForge

        return GitLabForge(GitLabConfig.from_settings(settings), full_name)
    from bot.forges.github import GitHubConfig, GitHubForge

    return GitHubForge(
        GitHubConfig.from_settings(settings), full_name, installation_id=installation_id
    )
