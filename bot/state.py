"""Every Redis key the web intake and the jobs share about pull requests, with small accessors.

One module owns these names so the intake (:mod:`bot.queue`, whose Lua script records a PR's
latest head) and the jobs (:mod:`bot.jobs`, which read it before every post) cannot disagree.

Keys (``<pr>`` is ``gitops:pr:<provider>:<owner/name, lower case>:<number>``):

``<pr>:head`` — hash ``sha``, ``at``: the PR's latest head and when it was seen (microseconds of
    Redis's clock). The intake writes it for every new preview delivery; a job that reads the PR
    from the forge writes what it read, but only when its read started after the stored one
    (:meth:`JobState.record_head`), so a slow job can never make an older head look newest.
    Kept ``GITOPS_DELIVERY_TTL`` seconds after the last write.
``<pr>:claim:<head>:<base>`` — the id of the job previewing that head on that base: two
    deliveries for one head run one preview (``/sync`` bypasses it). The same job, redelivered
    after its worker died, finds its own claim and carries on. Expires after
    ``GITOPS_JOB_TIMEOUT``.
``<pr>:post`` — a lock held while a preview compares heads and posts (comment, status), so an
    older result cannot land between a newer one's check and its post. It expires on its own
    (a holder that dies cannot keep it).

Times come from Redis's ``TIME``, so workers and web processes whose clocks disagree still agree
on which head was seen last.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Final

import redis
from redis.exceptions import LockError

from bot.errors import TransientError

PR_KEY: Final = "gitops:pr:{provider}:{repository}:{number}"
HEAD_SUFFIX: Final = ":head"
CLAIM_SUFFIX: Final = ":claim:{head}:{base}"
POST_LOCK_SUFFIX: Final = ":post"

# Redis's clock in microseconds; an exact integer in a Lua number (a double) until year 2255.
NOW_LUA: Final = "local t = redis.call('TIME') return tonumber(t[1]) * 1000000 + tonumber(t[2])"

_RECORD_HEAD_LUA: Final = """
local at = tonumber(ARGV[2])
if at == nil then
  local t = redis.call('TIME')
  at = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local stored = tonumber(redis.call('HGET', KEYS[1], 'at') or '-1')
if stored < at then
  redis.call('HSET', KEYS[1], 'sha', ARGV[1], 'at', string.format('%.0f', at))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  return ARGV[1]
end
return redis.call('HGET', KEYS[1], 'sha')
"""

_CLAIM_LUA: Final = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
if holder == ARGV[1] then
  return 1
end
return 0
"""


class StateUnavailable(TransientError):
    """Redis did not answer a job's state request; the job is retried."""


class PostBusy(TransientError):
    """Another job kept the pull request's post lock longer than expected."""


@dataclass(frozen=True)
class PullKey:
    """Identifies one pull/merge request across the intake and the jobs."""

    provider: str
    repository: str
    number: int

    @property
    def prefix(self) -> str:
        return PR_KEY.format(
            provider=self.provider, repository=self.repository.lower(), number=self.number
        )

    @property
    def head_key(self) -> str:
        return self.prefix + HEAD_SUFFIX

    def claim_key(self, head: str, base: str) -> str:
        return self.prefix + CLAIM_SUFFIX.format(head=head, base=base)

    @property
    def post_lock_key(self) -> str:
        return self.prefix + POST_LOCK_SUFFIX


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class JobState:
    """The jobs' view of the shared keys. Every Redis failure becomes :class:`StateUnavailable`
    (transient: the job is retried), never a half-done post."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        head_ttl: int,
        claim_ttl: int,
        post_lock_timeout: float = 600.0,
        post_lock_wait: float = 120.0,
    ) -> None:
        self.client = client
        self.head_ttl = head_ttl
        self.claim_ttl = claim_ttl
        self.post_lock_timeout = post_lock_timeout
        self.post_lock_wait = post_lock_wait
        self._record = client.register_script(_RECORD_HEAD_LUA)
        self._claim = client.register_script(_CLAIM_LUA)
        self._now = client.register_script(NOW_LUA)

    @contextmanager
    def _redis(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise StateUnavailable(f"Redis is unavailable ({what}): {exc}") from None

    def now(self) -> int:
        """Redis's clock, in microseconds."""
        with self._redis("reading the time"):
            return int(self._now())

    def record_head(self, pull: PullKey, sha: str, *, at: int | None = None) -> str:
        """Record ``sha`` as the PR's latest head if it was seen at ``at`` (Redis microseconds;
        default now), later than the head stored; returns the latest head after the call."""
        with self._redis("recording a pull request's head"):
            latest = self._record(
                keys=[pull.head_key], args=[sha, "" if at is None else str(at), self.head_ttl]
            )
        return _text(latest) or sha

    def latest_head(self, pull: PullKey) -> str | None:
        """The PR's latest head as recorded (None: never recorded, or expired)."""
        with self._redis("reading a pull request's head"):
            return _text(self.client.hget(pull.head_key, "sha"))

    def claim_preview(self, pull: PullKey, *, head: str, base: str, job_id: str) -> bool:
        """True when ``job_id`` may preview ``head`` on ``base``: nobody claimed it within
        ``claim_ttl``, or this very job did (a redelivery after its worker died)."""
        with self._redis("claiming a preview"):
            return bool(
                self._claim(keys=[pull.claim_key(head, base)], args=[job_id, self.claim_ttl])
            )

    @contextmanager
    def post_lock(self, pull: PullKey) -> Iterator[None]:
        """Hold the PR's post lock (released on exit; expires after ``post_lock_timeout`` if
        the holder dies). Raises :class:`PostBusy` when it stays taken for ``post_lock_wait``."""
        lock = self.client.lock(
            pull.post_lock_key,
            timeout=self.post_lock_timeout,
            blocking_timeout=self.post_lock_wait,
            sleep=0.05,
        )
        with self._redis("taking a pull request's post lock"):
            acquired = lock.acquire()
        if not acquired:
            raise PostBusy(
                f"the post lock of pull request #{pull.number} stayed taken for "
                f"{self.post_lock_wait:g} s"
            )
        try:
            yield
        finally:
            # expired meanwhile, or Redis went away: it expires on its own
            with suppress(LockError, redis.RedisError):
                lock.release()
