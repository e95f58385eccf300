"""Cluster errors, each carrying its retry meaning, and the mapping from API responses to them.

The API server answers a failed request with a ``Status`` object (``reason``, ``message``,
``code``). :func:`from_status` turns one into the matching :class:`ApiError` subclass, so the
engines can report the server's own message against the object and tell the job whether a
retry may help (429, 5xx, connection errors) or a person must act (403, 409, 422, unknown kind).
"""

from __future__ import annotations

import http
import json
from typing import Any

from bot.errors import ClusterError, PermanentError, TransientError
from bot.model import ObjectError, ObjectRef

# Messages shown to users; kept as constants so tests and docs quote the same words.
IMMUTABLE_HINT = (
    "{message} — this field cannot be changed on an existing object; delete and re-create it, "
    'or annotate it with {annotation}: "true" to let the bot do so'
)
UNKNOWN_KIND = 'no matches for kind "{kind}" in version "{api_version}"'
OLDER_COMMIT = (
    "refusing to deploy {commit}: it is older than {live}, which is already deployed "
    "(revert in Git with a new commit instead)"
)


class KubeError(ClusterError):
    """Base of every error :mod:`bot.cluster` raises. ``reason`` is its one-word cause in the
    report (``NotAllowed``, ``Forbidden``, an API Status reason...), ``transient`` whether a
    retry may help."""

    reason: str | None = None
    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_object_error(
        self, ref: ObjectRef | None = None, *, file: str | None = None, line: int | None = None
    ) -> ObjectError:
        return ObjectError(
            message=self.message,
            ref=ref,
            file=file,
            line=line,
            reason=self.reason or None,
            transient=self.transient,
        )


class TargetError(KubeError, PermanentError):
    """A clusters file is malformed, or a target's credentials cannot be loaded."""


class UnknownTargetError(TargetError):
    """An app names a target that is not configured."""

    reason = "UnknownTarget"


class NotAllowedError(KubeError, PermanentError):
    """An object lies outside its target's allowlist (namespace or cluster scope)."""

    reason = "NotAllowed"


class OlderCommitError(KubeError, PermanentError):
    """A deploy of a commit older than the one already live was refused."""

    reason = "OlderCommit"


class ApplySetError(KubeError, PermanentError):
    """The ApplySet parent exists but belongs to other tooling or is malformed, or an object
    claims membership of another set."""

    reason = "ApplySetConflict"


class ApiError(KubeError):
    """An API request failed. ``status`` is the HTTP code (0 for no response), ``reason`` the
    Status reason (``Forbidden``, ``Invalid``, ``Conflict``, ...), ``message`` the server's own
    words."""

    def __init__(
        self, message: str, *, status: int = 0, reason: str = "", details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.details = details

    @property
    def immutable(self) -> bool:
        """Whether the server refused to change an immutable field."""
        return self.status == 422 and "immutable" in self.message


class TransientApiError(ApiError, TransientError):
    """429, 5xx, timeouts and connection failures."""

    transient = True
    retry_after: float | None = None  # the server's Retry-After, when it sent one


class PermanentApiError(ApiError, PermanentError):
    """4xx answers other than 429."""


class ForbiddenError(PermanentApiError):
    """403: RBAC refused the request."""


class NotFoundError(PermanentApiError):
    """404: the object (or its namespace, or its kind) does not exist."""


class ConflictError(PermanentApiError):
    """409: another field manager owns a field, or a concurrent write won."""


class InvalidError(PermanentApiError):
    """422: the server refused the object as invalid (including immutable fields)."""


class UnknownKindError(PermanentApiError):
    """The server serves no resource for this apiVersion/kind."""


_BY_STATUS: dict[int, type[ApiError]] = {
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidError,
}


def from_status(status: int, body: bytes | str | None, *, http_reason: str = "") -> ApiError:
    """The error for a non-2xx answer: the Status object's message and reason when the body is
    one, otherwise the HTTP reason phrase (the standard one when none is given) and body text."""
    if not http_reason:
        try:
            http_reason = http.HTTPStatus(status).phrase
        except ValueError:
            http_reason = ""
    data: Any = None
    if body:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        message = str(data.get("message") or http_reason or f"HTTP {status}")
        reason = str(data.get("reason") or "")
        details = data.get("details")
    else:
        text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
        message = text.strip()[:500] or http_reason or f"HTTP {status}"
        reason = http_reason.replace(" ", "") if http_reason else ""
        details = None
    if status == 429 or status >= 500 or status == 0:
        return TransientApiError(
            message, status=status, reason=reason or "ServerError", details=details
        )
    cls = _BY_STATUS.get(status, PermanentApiError)
    return cls(message, status=status, reason=reason, details=details)


CONNECTION_ERROR = "ConnectionError"
"""The ``reason`` of a request that got no answer at all."""


def connection_error(exc: BaseException | str, *, server: str) -> TransientApiError:
    """A request that got no answer at all (refused, reset, timed out, TLS refused)."""
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return TransientApiError(
        f"cannot reach the API server at {server}: {detail}", reason=CONNECTION_ERROR
    )
