"""One exception hierarchy for the whole bot, each error carrying its retry meaning.

Like kopf: a :class:`TransientError` (network, 5xx, 429, Redis unreachable) is worth retrying
with backoff; a :class:`PermanentError` (invalid manifest, forbidden, bad config) is not, and
ends in a visible report telling the reader what to fix.
"""

from __future__ import annotations


class GitopsError(Exception):
    """Base class of every error the bot raises on purpose."""


class TransientError(GitopsError):
    """Retrying later may succeed: outages, timeouts, rate limits."""


class PermanentError(GitopsError):
    """Retrying will not help until someone changes something."""


class SettingsError(PermanentError):
    """A setting is missing or malformed; the message names the environment variable."""


class QueueUnavailable(TransientError):
    """Redis (the job queue) could not be reached within its timeout."""


class ConfigError(PermanentError):
    """A repository's ``.gitops.yaml`` (or discovered layout) is wrong.

    ``file`` and ``line`` point at the mistake when known, so the report can link to it.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        where = file or ""
        if file and line:
            where = f"{file}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class RenderError(ConfigError):
    """A manifest could not be read or rendered (bad YAML, kustomize/helm failure)."""


class ClusterError(GitopsError):
    """Base for errors talking to a cluster; see ``bot.cluster`` for the subclasses."""


class ForgeError(GitopsError):
    """Base for errors talking to a forge (GitHub, GitLab); see ``bot.forges``.

    ``status`` is the HTTP status when the forge answered, ``repository`` the ``owner/name``
    concerned when known. Messages never carry a credential."""

    def __init__(
        self, message: str, *, status: int | None = None, repository: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.repository = repository


class ForgeUnavailable(ForgeError, TransientError):
    """The forge did not answer, or kept answering 5xx / 429 / rate limits after the retries."""


class ForgePermanentError(ForgeError, PermanentError):
    """The forge answered in a way retrying will not change."""


class ForgeAccessDenied(ForgePermanentError):
    """401/403/404: the credentials are wrong, or cannot see or change this repository.

    The message names the setting or permission to fix ("the GitHub App is not installed on
    acme/app", "GITHUB_TOKEN cannot read acme/app")."""


class ForgeRefused(ForgePermanentError):
    """The forge refused a request as invalid (422: a status description too long, a comment
    over the size limit); a bug in the bot, not in the operator's set-up."""


class ForgeNotConfigured(ForgePermanentError):
    """A delivery came from a forge the bot has no credentials for; names the missing setting."""


class ForgeHostRefused(ForgePermanentError):
    """A delivery names a forge other than the configured one; no credential is sent to it."""
