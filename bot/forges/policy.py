"""Which deliveries the bot serves: repositories within ``GITOPS_REPOSITORIES``, from the forge
it is configured for. Pure and light (no forge client imported), so the web intake runs it on
every delivery.

Credentials go only to the configured forge: a delivery's ``repository.api_url`` comes from the
payload, which anyone holding the webhook secret writes. A delivery naming another API root is
ignored (and logged) at intake, and :func:`bot.forges.connect` refuses it again before any
request, so no token ever travels to a host the operator did not configure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from bot.events import Repository
from bot.settings import Settings

NOT_SERVED = "repository {name} is not served by this bot (GITOPS_REPOSITORIES: {patterns})"
OTHER_FORGE = (
    "delivery names the API {given}, but this bot serves {expected} ({setting}); "
    "no credential is sent there"
)


class RepositoryFilter:
    """``owner/name`` globs: ``*`` any characters (``/`` included), ``?`` one, ``[..]`` a
    class; case-insensitive, as forges treat names."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._regex = re.compile(
            "|".join(f"(?:{_glob_regex(p)})" for p in self.patterns) or "(?!)", re.IGNORECASE
        )

    def allows(self, full_name: str) -> bool:
        return self._regex.fullmatch(full_name) is not None

    def refusal(self, full_name: str) -> str | None:
        """Why ``full_name`` is not served, or None when it is."""
        if self.allows(full_name):
            return None
        return NOT_SERVED.format(name=full_name, patterns=",".join(self.patterns))


def _glob_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def normalise_url(url: str) -> str:
    """An API root compared as forges compare hosts: scheme and host lower-cased, default port
    dropped, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not (
        (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
    ):
        host = f"{host}:{port}"
    return f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"


def expected_api_url(settings: Settings, provider: str) -> tuple[str, str] | None:
    """The configured API root of ``provider`` and the setting naming it (None: a provider the
    bot does not know, which no credential is configured for)."""
    if provider == "github":
        return settings.github_api_url, "GITHUB_API_URL"
    if provider == "gitlab":
        # Deliveries name <instance root>/api/v4 (bot.webhooks.gitlab.api_url).
        return settings.gitlab_url + "/api/v4", "GITLAB_URL"
    return None


def forge_refusal(settings: Settings, repository: Repository) -> str | None:
    """Why a delivery about ``repository`` must not reach the forge with our credentials."""
    expected = expected_api_url(settings, repository.provider)
    if expected is None:
        return None
    url, setting = expected
    if normalise_url(repository.api_url) != normalise_url(url):
        return OTHER_FORGE.format(given=repository.api_url, expected=url, setting=setting)
    return None


@functools.lru_cache(maxsize=8)
def _filter(patterns: tuple[str, ...]) -> RepositoryFilter:
    return RepositoryFilter(patterns)


def intake_refusal(settings: Settings, repository: Repository) -> str | None:
    """Why the intake answers "ignored" instead of queueing a job for ``repository``: it names
    another forge than the configured one, or is outside ``GITOPS_REPOSITORIES``."""
    return forge_refusal(settings, repository) or _filter(settings.repositories).refusal(
        repository.full_name
    )
