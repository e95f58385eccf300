"""Provider-independent pieces of webhook intake: the result and error types, case-insensitive
headers, body decoding, and typed access to untrusted payloads.

Everything here treats its input as hostile: a sender controls the headers and every byte of the
body, so each failure becomes a :class:`WebhookError` with an HTTP status and a message naming
what is wrong, never any other exception.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import urlsplit

from bot.errors import GitopsError
from bot.events import Event, Provider
from bot.settings import MAX_BODY_BYTES

#: Largest id/number accepted: what fits a signed 64-bit integer, as every forge uses.
MAX_ID = 2**63 - 1
#: Longest delivery id header accepted (real ones are 36-character UUIDs).
MAX_DELIVERY_ID_LENGTH = 200
#: Prefix of delivery ids derived from the body when the forge sent none.
BODY_DIGEST_PREFIX = "sha256-"

T = TypeVar("T")

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DELIVERY_ID = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


class WebhookError(GitopsError):
    """The sender's fault; becomes the HTTP answer (``status`` and ``message``).

    400: malformed request (invalid JSON, missing or mistyped field, missing event header);
    401: missing or wrong signature/token; 413: body too large."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"WebhookError({self.status}, {self.message!r})"


@dataclass(frozen=True)
class IntakeOptions:
    """Settings that change which deliveries become jobs."""

    #: Preview draft PRs/MRs too (``GITOPS_PREVIEW_DRAFTS``); by default they wait until ready.
    preview_drafts: bool = False
    #: Extra logins treated as bots (their comments never run commands), compared
    #: case-insensitively, besides GitHub ``type == "Bot"`` / ``[bot]`` logins and GitLab bot users.
    bot_logins: frozenset[str] = field(default_factory=frozenset)
    #: Largest body accepted (``GITOPS_MAX_BODY_BYTES``); the web layer refuses larger ones
    #: before reading them, this is the same limit for callers that hand over a body.
    max_body_bytes: int = MAX_BODY_BYTES

    def is_bot_login(self, login: str) -> bool:
        """True if ``login`` is one of the configured bot logins."""
        folded = login.casefold()
        return any(folded == b.casefold() for b in self.bot_logins)


@dataclass(frozen=True)
class Outcome:
    """What one verified, parsed delivery asks for."""

    provider: Provider
    #: The event header as sent ("pull_request", "Merge Request Hook", ...), made printable.
    event_name: str
    #: Same across redeliveries: see :func:`delivery_id`.
    delivery_id: str
    #: The job to queue, or ``None`` when the delivery needs none.
    event: Event | None
    #: Why nothing is queued ("pull_request action 'labeled' needs no job", "pong"), or a
    #: short description of the job.
    reason: str


# --- headers -----------------------------------------------------------------------------


class HeaderSource(Protocol):
    """Anything with ``items()`` of (name, value): a dict, Flask's ``request.headers``."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class Headers:
    """Case-insensitive, read-only view of request headers (Flask's or a plain dict)."""

    def __init__(self, headers: HeaderSource) -> None:
        self._values: dict[str, str] = {}
        for key, value in headers.items():
            if isinstance(key, str) and isinstance(value, str):
                self._values[key.lower()] = value

    def get(self, name: str) -> str | None:
        """The header's value, or ``None`` when absent."""
        return self._values.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values


def event_header(headers: Headers, name: str) -> str:
    """The event-type header, required: 400 naming it when missing or empty."""
    value = (headers.get(name) or "").strip()
    if not value:
        raise WebhookError(400, f"missing {name} header: which event is this delivery?")
    return printable(value, limit=100)


def delivery_id(headers: Headers, names: Iterable[str], body: bytes) -> str:
    """The first present header of ``names``; failing all, ``sha256-<hex digest of the body>``.

    The digest fallback keeps redeliveries of the same body deduplicated even when a proxy drops
    the header; two genuinely different deliveries always differ in body (timestamps, ids)."""
    for name in names:
        value = headers.get(name)
        if value is None or not value.strip():
            continue
        value = value.strip()
        if len(value) > MAX_DELIVERY_ID_LENGTH or not _DELIVERY_ID.fullmatch(value):
            raise WebhookError(
                400,
                f"{name} header must be printable ASCII without spaces, "
                f"at most {MAX_DELIVERY_ID_LENGTH} characters",
            )
        return value
    return BODY_DIGEST_PREFIX + hashlib.sha256(body).hexdigest()


def check_size(body: bytes, limit: int) -> None:
    """413 for bodies over ``limit`` bytes."""
    if len(body) > limit:
        raise WebhookError(413, f"body is larger than {limit} bytes")


# --- body --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(text: bytes | str, *, what: str = "body") -> dict[str, Any]:
    """Decode a JSON object, or 400 saying why not (NaN and Infinity are not JSON)."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise WebhookError(400, f"{what} is nested too deeply to be a webhook payload") from None
    except (ValueError, TypeError) as exc:
        # JSONDecodeError, UnicodeDecodeError and the int-digit limit are all ValueErrors.
        raise WebhookError(400, f"{what} is not valid JSON: {printable(str(exc))}") from None
    if not isinstance(value, dict):
        raise WebhookError(400, f"{what} must be a JSON object, got {type_name(value)}")
    return value


# --- typed access to untrusted payloads ----------------------------------------------------


_MISSING: Any = object()


def _lookup(payload: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path``, or ``_MISSING``; 400 if a parent is not an object.

    A ``null`` parent counts as missing, so ``"pull_request": null`` reads as "payload is
    missing pull_request.head.sha"."""
    keys = path.split(".")
    current: Any = payload
    for depth, key in enumerate(keys):
        if current is None:
            return _MISSING
        if not isinstance(current, Mapping):
            where = ".".join(keys[:depth])
            raise WebhookError(
                400, f"payload field {where} must be an object, got {type_name(current)}"
            )
        if key not in current:
            return _MISSING
        current = current[key]
    return current


def _type_error(path: str, expected: str, value: Any) -> WebhookError:
    return WebhookError(400, f"payload field {path} must be {expected}, got {type_name(value)}")


def _check(path: str, value: Any, kind: type[T]) -> T:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, "an integer", value)
        if not 0 <= value <= MAX_ID:
            raise WebhookError(400, f"payload field {path} must be between 0 and {MAX_ID}")
        return value  # type: ignore[return-value]
    if kind is str:
        if not isinstance(value, str):
            raise _type_error(path, "a string", value)
        if not _encodable(value):
            raise WebhookError(400, f"payload field {path} must be valid Unicode text")
        return value  # type: ignore[return-value]
    if kind is bool:
        if not isinstance(value, bool):
            raise _type_error(path, "true or false", value)
        return value  # type: ignore[return-value]
    if kind is dict:
        if not isinstance(value, dict):
            raise _type_error(path, "an object", value)
        return value  # type: ignore[return-value]
    raise TypeError(f"unsupported kind {kind!r}")  # a programming error, not the sender's


def require(payload: Mapping[str, Any], path: str, kind: type[T]) -> T:
    """The value at dotted ``path`` with type ``kind`` (str, int, bool or dict), or 400.

    Strings must be non-empty valid Unicode without NUL; integers are non-negative and fit
    64 bits (bools are not integers)."""
    value = _lookup(payload, path)
    if value is _MISSING or value is None:
        raise WebhookError(400, f"payload is missing {path}")
    checked = _check(path, value, kind)
    if isinstance(checked, str):
        if not checked:
            raise WebhookError(400, f"payload field {path} must not be empty")
        if "\x00" in checked:
            # Required strings are names, refs and URLs: a NUL is never legitimate there.
            raise WebhookError(400, f"payload field {path} must not contain NUL characters")
    return checked


@overload
def optional(payload: Mapping[str, Any], path: str, kind: type[T]) -> T | None: ...
@overload
def optional(payload: Mapping[str, Any], path: str, kind: type[T], default: T) -> T: ...
def optional(
    payload: Mapping[str, Any], path: str, kind: type[T], default: T | None = None
) -> T | None:
    """Like :func:`require`, but absent or ``null`` gives ``default`` (wrong types still 400)."""
    value = _lookup(payload, path)
    if value is _MISSING or value is None:
        return default
    return _check(path, value, kind)


def require_sha(payload: Mapping[str, Any], path: str) -> str:
    """A full hex commit SHA (SHA-1 or SHA-256), lower-cased, or 400.

    Checked strictly because workers hand it to git."""
    value = require(payload, path, str).lower()
    if not _SHA.fullmatch(value):
        raise WebhookError(
            400, f"payload field {path} must be a 40- or 64-character hex commit SHA"
        )
    return value


def is_null_sha(sha: str) -> bool:
    """True for the all-zero SHA forges send for a created or deleted ref."""
    return set(sha) == {"0"}


# --- text --------------------------------------------------------------------------------


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str, *, limit: int = 200) -> str:
    """``text`` safe to echo in a reason, a log line or a metric label: control characters and
    lone surrogates escaped, length capped."""
    head = text[: limit + 1]
    if head.isprintable() and _encodable(head):
        escaped = head  # the common case, checked whole rather than per character
    else:
        escaped = "".join(
            ch
            if ch.isprintable() and _encodable(ch)
            else ch.encode("unicode_escape").decode("ascii")
            for ch in head
        )
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def type_name(value: Any) -> str:
    """JSON's name for the type of ``value``, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def require_url(payload: Mapping[str, Any], path: str) -> str:
    """An absolute ``http(s)://`` URL, or 400.

    Checked because workers clone from and call these URLs: a ``file:`` or ``ext::`` URL in a
    payload must never reach git."""
    value = require(payload, path, str)
    if not _is_http_url(value):
        raise WebhookError(400, f"payload field {path} must be an http(s) URL")
    return value


def _is_http_url(value: str) -> bool:
    # str.isprintable() is False for every control and line-break character; the only
    # printable whitespace is the space itself.
    if not value.isprintable() or " " in value:
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def url_root(url: str) -> str:
    """``scheme://host[:port]`` of a URL already checked by :func:`require_url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
