"""Counting the forge API calls (``gitops_forge_requests_total{provider, status}``).

Both client libraries send their requests through ``requests`` and urllib3, and both let the
caller choose the urllib3 ``Retry`` policy: PyGithub takes it as its documented ``retry``
argument, and python-gitlab uses the ``requests`` session the bot gives it, on which the bot
mounts an ``HTTPAdapter`` with its ``max_retries``. urllib3 asks that policy
:meth:`~urllib3.util.Retry.is_retry` about every response it receives and calls
:meth:`~urllib3.util.Retry.increment` on every failure to get one, so a policy that counts
there sees each request exactly once — retried ones included, connection failures as
``error`` — without touching either library's internals.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, Self

from urllib3.util.retry import Retry

from bot.metrics import count_forge_request


class CountingRetry(Retry):
    """A urllib3 retry policy that counts each answer (and each failure to get one) for
    ``provider``. Subclasses set ``provider``; the policy is otherwise unchanged."""

    provider: ClassVar[str] = "forge"

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        count_forge_request(self.provider, status_code)
        return super().is_retry(method, status_code, has_retry_after)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is None and error is not None:
            count_forge_request(self.provider, "error")  # answers were counted by is_retry
        return super().increment(method, url, response, error, _pool, _stacktrace)


class GitLabRetry(CountingRetry):
    """What ``requests`` uses when given no policy (no retry at this level: python-gitlab
    retries itself), counted as GitLab's."""

    provider = "gitlab"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("total", 0)
        kwargs.setdefault("read", False)
        super().__init__(**kwargs)
