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
