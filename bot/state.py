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

``<pr>:preview`` — JSON: the PR's last posted preview (the merge result's commit and tree, and
    each object it showed changed), written under the post lock; the deploy of the merge checks
    itself against it (:mod:`bot.jobs.previewed`). Expires after
    ``GITOPS_PREVIEW_RESULT_TTL``.

Deploys (``<repo>`` is ``gitops:deploy:<provider>:<owner/name, lower case>``):

``<repo>:run:<sha>`` — JSON: the deploy of one pushed commit, app by app
    (:class:`bot.jobs.deploy_run.RunRecord`), changed only in ``WATCH`` transactions. Expires
    ``GITOPS_DELIVERY_TTL`` seconds after its last change, except while an app of it is paused.
``<repo>:run:<sha>:results`` — hash ``<target>/<app>`` → JSON of that app's deploy result, for
    the job that reports the push. Expires with the run.
``<repo>:app:<target>:<app>`` — hash ``latest`` (the newest commit planned for the app: an older
    queued deploy finds it and stops, superseded) and ``done`` (the commit whose deploy of the
    app ended last). Expires ``GITOPS_DELIVERY_TTL`` after the last push.
``<repo>:lock:<target>:<app>`` — the app's deploy lock: one deploy (or self-heal) of an app on
    a target at a time. Its value is the holding job's id (a redelivered job takes its own lock
    back at once); it expires ``GITOPS_DEPLOY_LOCK_TTL`` seconds after the holder last renewed
    it, so a dead holder never keeps it.
``<repo>:plan`` — the same kind of lock, held while a push is planned (pushes of one
    repository are planned one at a time, so "newest" is decided once).
``gitops:deploy:parked`` — sorted set of run keys with paused apps, by push time (Redis's clock):
    ``gitops-bot resume`` goes on with them in push order.
``<repo>:pushed`` — hash ``sha``, ``at``: the newest default-branch head a deploy job was queued
    for, by a push delivery or the catch-up (written by the intake's Lua script with the job,
    no expiry: one small hash per repository). The catch-up compares the branch's head with it.
``<repo>:drift`` — the drift job's lock for the repository (one drift run at a time).
``<repo>:issue:<kind>`` (``<kind>@<instance>`` with ``GITOPS_INSTANCE``) — the number of the
    bot's issue of that kind (``drift``) in the repository, or ``0`` when a scan of every issue
    found none; the drift job reads it instead of listing the issues each round (it checks the
    one issue, and opens none on a ``0`` without a scan first). Only the drift job writes it,
    under the drift lock; no expiry: one small string per repository and instance.

Served repositories (the catch-up and the drift job walk them):

``gitops:repositories`` — hash ``<provider>|<owner/name, lower case>`` → JSON of the repository as
    its last queued delivery named it (:class:`bot.events.Repository` and the GitHub App
    installation id), written by the intake's Lua script with each job. No expiry.

``gitops:pauses`` — hash ``<repository or *>|<app or *>`` → JSON ``reason``, ``by``, ``at``:
    what ``gitops-bot pause`` froze. No expiry.

Times come from Redis's ``TIME``, so workers and web processes whose clocks disagree still agree
on which head was seen last.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import redis
from redis.exceptions import LockError, LockNotOwnedError, WatchError

from bot.errors import TransientError

PR_KEY: Final = "gitops:pr:{provider}:{repository}:{number}"
HEAD_SUFFIX: Final = ":head"
CLAIM_SUFFIX: Final = ":claim:{head}:{base}"
POST_LOCK_SUFFIX: Final = ":post"
PREVIEW_SUFFIX: Final = ":preview"

DEPLOY_KEY: Final = "gitops:deploy:{provider}:{repository}"
RUN_SUFFIX: Final = ":run:{sha}"
RESULTS_SUFFIX: Final = ":run:{sha}:results"
APP_SUFFIX: Final = ":app:{target}:{app}"
LOCK_SUFFIX: Final = ":lock:{target}:{app}"
PLAN_LOCK_SUFFIX: Final = ":plan"
PUSHED_SUFFIX: Final = ":pushed"
DRIFT_LOCK_SUFFIX: Final = ":drift"
ISSUE_SUFFIX: Final = ":issue:{name}"
NO_ISSUE: Final = 0
"""What :meth:`JobState.known_issue` says when a scan found no issue (numbers start at 1)."""
REPOSITORIES_KEY: Final = "gitops:repositories"
PARKED_KEY: Final = "gitops:deploy:parked"
PAUSES_KEY: Final = "gitops:pauses"
ANY: Final = "*"

log = logging.getLogger("gitops_bot.jobs")
T = TypeVar("T")

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

# The app's deploy of ``sha`` ended: ``done`` follows, unless a newer commit was planned since.
_MARK_DONE_LUA: Final = """
if redis.call('HGET', KEYS[1], 'latest') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'done', ARGV[1])
  return 1
end
return 0
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


class LockBusy(TransientError):
    """Another job kept an app's deploy lock (or a repository's plan lock) for longer than
    this job may wait; the job is retried."""


class RunChanging(TransientError):
    """A deploy run record kept changing under this job's transaction; the job is retried."""


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

    @property
    def preview_key(self) -> str:
        return self.prefix + PREVIEW_SUFFIX


@dataclass(frozen=True)
class RepoKey:
    """Identifies one repository's deploys."""

    provider: str
    repository: str

    @property
    def prefix(self) -> str:
        return DEPLOY_KEY.format(provider=self.provider, repository=self.repository.lower())

    def run_key(self, sha: str) -> str:
        return self.prefix + RUN_SUFFIX.format(sha=sha)

    def results_key(self, sha: str) -> str:
        return self.prefix + RESULTS_SUFFIX.format(sha=sha)

    def app_key(self, target: str, app: str) -> str:
        return self.prefix + APP_SUFFIX.format(target=target, app=app)

    def lock_key(self, target: str, app: str) -> str:
        return self.prefix + LOCK_SUFFIX.format(target=target, app=app)

    @property
    def plan_lock_key(self) -> str:
        return self.prefix + PLAN_LOCK_SUFFIX

    @property
    def pushed_key(self) -> str:
        return self.prefix + PUSHED_SUFFIX

    @property
    def drift_lock_key(self) -> str:
        return self.prefix + DRIFT_LOCK_SUFFIX

    def issue_key(self, kind: str, instance: str = "") -> str:
        name = f"{kind}@{instance}" if instance else kind
        return self.prefix + ISSUE_SUFFIX.format(name=name)


def repository_field(provider: str, repository: str) -> str:
    """The field of ``gitops:repositories`` for one repository."""
    return f"{provider}|{repository.lower()}"


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
        preview_ttl: int = 14 * 24 * 3600,
        record_ttl: int | None = None,
        lock_ttl: float = 60.0,
        lock_wait: float = 600.0,
    ) -> None:
        self.client = client
        self.head_ttl = head_ttl
        self.claim_ttl = claim_ttl
        self.post_lock_timeout = post_lock_timeout
        self.post_lock_wait = post_lock_wait
        self.preview_ttl = preview_ttl
        self.record_ttl = record_ttl or head_ttl
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self._mark_done = client.register_script(_MARK_DONE_LUA)
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

    # -- preview results (issue 15.4) ---------------------------------------------------------

    def store_preview(self, pull: PullKey, record: dict[str, Any]) -> None:
        """Keep the PR's last posted preview (JSON-able) for ``preview_ttl`` seconds."""
        with self._redis("recording a preview"):
            self.client.set(pull.preview_key, json.dumps(record), ex=self.preview_ttl)

    def preview_of(self, pull: PullKey) -> dict[str, Any] | None:
        """The PR's last posted preview, if kept."""
        with self._redis("reading a preview"):
            raw = self.client.get(pull.preview_key)
        return _json(raw)

    # -- deploy runs ----------------------------------------------------------------------------

    def run(self, repo: RepoKey, sha: str) -> dict[str, Any] | None:
        """The deploy record of ``sha`` (JSON), if any."""
        with self._redis("reading a deploy record"):
            return _json(self.client.get(repo.run_key(sha)))

    def update_run(
        self,
        repo: RepoKey,
        sha: str,
        change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]],
        *,
        parked: Callable[[dict[str, Any]], bool] = lambda _record: False,
    ) -> T:
        """Change the deploy record of ``sha`` atomically: ``change(record or None)`` returns
        the record to store (None: leave it) and a value handed back. Run again when another
        job changed the record meanwhile (``WATCH``), so it must be free of side effects.
        A record that is ``parked`` (an app paused) does not expire and is listed in
        ``gitops:deploy:parked``; others expire after ``record_ttl``."""
        key = repo.run_key(sha)
        for _attempt in range(50):
            with self._redis("changing a deploy record"), self.client.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    current = _json(pipe.get(key))
                    new, value = change(current)
                    if new is None:
                        pipe.unwatch()
                        return value
                    pipe.multi()
                    pipe.set(key, json.dumps(new))
                    if parked(new):
                        pipe.persist(key)
                        pipe.zadd(PARKED_KEY, {key: int(new.get("seq") or 0)})
                    else:
                        pipe.expire(key, self.record_ttl)
                        pipe.expire(repo.results_key(sha), self.record_ttl)
                        pipe.zrem(PARKED_KEY, key)
                    pipe.execute()
                    return value
                except WatchError:
                    time.sleep(0.01)
                    continue
        raise RunChanging(f"the deploy record of {sha[:12]} kept changing")

    def store_result(self, repo: RepoKey, sha: str, key: str, result: dict[str, Any]) -> None:
        """Leave one app's deploy result for the job that reports the push."""
        with self._redis("recording a deploy result"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(repo.results_key(sha), key, json.dumps(result))
            pipe.expire(repo.results_key(sha), self.record_ttl)
            pipe.execute()

    def clear_results(self, repo: RepoKey, sha: str) -> None:
        """Forget the app results of an earlier deploy of ``sha`` (pushed anew)."""
        with self._redis("clearing deploy results"):
            self.client.delete(repo.results_key(sha))

    def results(self, repo: RepoKey, sha: str) -> dict[str, dict[str, Any]]:
        """Every app's deploy result of ``sha``, by ``<target>/<app>``."""
        with self._redis("reading deploy results"):
            raw = self.client.hgetall(repo.results_key(sha))
        return {_text(k) or "": json.loads(v) for k, v in raw.items()}

    def parked_runs(self) -> list[str]:
        """Keys of the deploy records with paused apps, oldest push first."""
        with self._redis("reading the paused deploys"):
            keys = self.client.zrange(PARKED_KEY, 0, -1)
        return [_text(k) or "" for k in keys]  # type: ignore[arg-type]

    def run_at(self, key: str) -> dict[str, Any] | None:
        """A deploy record by its key (from :meth:`parked_runs`)."""
        with self._redis("reading a deploy record"):
            return _json(self.client.get(key))

    # -- newest commit per app (supersession) ---------------------------------------------------

    def app_commits(self, repo: RepoKey, target: str, app: str) -> tuple[str | None, str | None]:
        """(``latest``: the newest commit planned for the app, ``done``: the commit whose
        deploy of it ended last)."""
        with self._redis("reading an app's commits"):
            latest, done = self.client.hmget(repo.app_key(target, app), ["latest", "done"])
        return _text(latest), _text(done)

    def plan_commit(self, repo: RepoKey, target: str, app: str, sha: str) -> None:
        """``sha`` is now the newest commit planned for the app (the caller holds the plan lock
        and checked that it is newer)."""
        key = repo.app_key(target, app)
        with self._redis("recording an app's newest commit"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, "latest", sha)
            pipe.expire(key, self.record_ttl)
            pipe.execute()

    def commit_done(self, repo: RepoKey, target: str, app: str, sha: str) -> bool:
        """The deploy of ``sha`` ended for the app; recorded when it is still the newest."""
        with self._redis("recording an app's deployed commit"):
            return bool(self._mark_done(keys=[repo.app_key(target, app)], args=[sha]))

    # -- locks ------------------------------------------------------------------------------------

    def deploy_lock(
        self, repo: RepoKey, target: str, app: str, *, holder: str, wait: float | None = None
    ) -> RenewedLock:
        """The app's deploy lock on ``target`` (see :class:`RenewedLock`); ``wait`` (default:
        the state's ``lock_wait``) is how long to wait for another holder (0: not at all, as
        self-heal does: a deploy in progress means heal later)."""
        return RenewedLock(
            self.client,
            repo.lock_key(target, app),
            holder=holder,
            ttl=self.lock_ttl,
            wait=self.lock_wait if wait is None else wait,
            what=f"the deploy lock of {app} on {target}",
        )

    def drift_lock(self, repo: RepoKey, *, holder: str) -> RenewedLock:
        """The repository's drift lock (one drift run at a time; never waited for)."""
        return RenewedLock(
            self.client,
            repo.drift_lock_key,
            holder=holder,
            ttl=self.lock_ttl,
            wait=0,
            what=f"the drift lock of {repo.repository}",
        )

    # -- the bot's issues (the drift issue) -------------------------------------------------------

    def known_issue(self, repo: RepoKey, kind: str, instance: str = "") -> int | None:
        """The number of the bot's issue of ``kind`` as last found or opened, :data:`NO_ISSUE`
        when a scan found none, None when not known (never recorded, or Redis lost it)."""
        with self._redis("reading the bot's issue number"):
            raw = _text(self.client.get(repo.issue_key(kind, instance)))
        return int(raw) if raw is not None and raw.isdigit() else None

    def remember_issue(self, repo: RepoKey, kind: str, instance: str, number: int) -> None:
        """Record the bot's issue of ``kind`` (:data:`NO_ISSUE`: a scan found none)."""
        with self._redis("recording the bot's issue number"):
            self.client.set(repo.issue_key(kind, instance), str(number))

    def forget_issue(self, repo: RepoKey, kind: str, instance: str = "") -> None:
        """Not known any more (before an issue is opened: should its number not be recorded,
        the next round scans rather than trust an old "none")."""
        with self._redis("forgetting the bot's issue number"):
            self.client.delete(repo.issue_key(kind, instance))

    # -- the catch-up -----------------------------------------------------------------------------

    def pushed_head(self, repo: RepoKey) -> str | None:
        """The newest default-branch head a deploy job was queued for (None: none seen)."""
        with self._redis("reading the pushed head"):
            return _text(self.client.hget(repo.pushed_key, "sha"))

    def forget_repository(self, provider: str, repository: str) -> None:
        """Stop walking ``repository`` (gone, or the bot lost access); its next delivery
        brings it back."""
        with self._redis("forgetting a served repository"):
            self.client.hdel(REPOSITORIES_KEY, repository_field(provider, repository))

    def served_repositories(self) -> list[dict[str, Any]]:
        """Every repository seen in a queued delivery: JSON with ``repository`` (the fields of
        :class:`bot.events.Repository`) and ``installation_id``."""
        with self._redis("reading the served repositories"):
            raw = self.client.hgetall(REPOSITORIES_KEY)
        found = []
        for _field, value in sorted(raw.items()):
            with suppress(ValueError):
                data = json.loads(value)
                if isinstance(data, dict) and isinstance(data.get("repository"), dict):
                    found.append(data)
        return found

    def plan_lock(self, repo: RepoKey, *, holder: str) -> RenewedLock:
        """The repository's plan lock (see :class:`RenewedLock`)."""
        return RenewedLock(
            self.client,
            repo.plan_lock_key,
            holder=holder,
            ttl=self.lock_ttl,
            wait=self.lock_wait,
            what=f"the plan lock of {repo.repository}",
        )

    # -- pauses and figures ---------------------------------------------------------------------

    def may_be_paused(self, repository: str) -> bool:
        """Whether a pause could hold an app of ``repository`` (one of every repository or of
        this one)."""
        with self._redis("reading the pauses"):
            return any(p.repository in (ANY, repository.lower()) for p in pauses(self.client))

    def pause_of(self, repository: str, app: str) -> Pause | None:
        with self._redis("reading the pauses"):
            return pause_of(self.client, repository, app)

    def count_differed(self, repository: str) -> None:
        """Count one merge of ``repository`` whose deploy differed from its preview
        (``gitops_merges_differed_from_preview_total``, :mod:`bot.metrics`)."""
        from bot.metrics import count_differed_from_preview

        with self._redis("counting a deploy that differed from its preview"):
            count_differed_from_preview(self.client, repository)


def _json(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


class RenewedLock:
    """A Redis lock (redis-py's :class:`redis.lock.Lock`) held for as long as its holder runs.

    Its value is the holder's job id; it is taken with ``SET NX`` and a TTL of ``ttl`` seconds,
    which a thread renews every third of it while the ``with`` block runs, so a holder that dies
    (SIGKILL, OOM, a lost host) keeps it at most ``ttl`` seconds: never a lock that outlives its
    holder. The same job id takes a lock it holds back at once: a job redelivered after its
    worker process died does not wait for its own lock to expire.

    Entering waits up to ``wait`` seconds for another holder, then raises :class:`LockBusy`.
    When Redis cannot be reached the renewal keeps trying; when the lock was found taken by
    another holder (it expired meanwhile), :attr:`lost` is set and the block should stop before
    changing anything more."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        holder: str,
        ttl: float,
        wait: float,
        what: str,
    ) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.wait = wait
        self.what = what
        self._client = client
        self._lock = client.lock(name, timeout=ttl, sleep=0.1, thread_local=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def __enter__(self) -> RenewedLock:
        try:
            held = self._client.get(self.name)
            if _text(held) == self.holder:
                encoder = self._client.get_encoder()
                self._lock.local.token = encoder.encode(self.holder)  # type: ignore[no-untyped-call]
                self._lock.reacquire()
            elif not self._lock.acquire(token=self.holder, blocking_timeout=self.wait):
                holder = _text(self._client.get(self.name)) or "?"
                raise LockBusy(f"{self.what} stayed taken (by job {holder}) for {self.wait:g} s")
        except LockNotOwnedError:
            # expired between the read and the renewal: take it afresh
            if not self._lock.acquire(token=self.holder, blocking_timeout=self.wait):
                raise LockBusy(f"{self.what} stayed taken for {self.wait:g} s") from None
        except redis.RedisError as exc:
            raise StateUnavailable(f"Redis is unavailable (taking {self.what}): {exc}") from None
        self._thread = threading.Thread(target=self._renew, name=f"renew {self.name}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
            except LockNotOwnedError:
                self.lost = True
                log.warning("%s expired while held by job %s", self.what, self.holder)
                return
            except (redis.RedisError, LockError) as exc:
                log.warning("could not renew %s: %s", self.what, exc)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # already expired, or Redis went away: it expires on its own
        with suppress(LockError, redis.RedisError):
            self._lock.release()


# -- pauses (gitops-bot pause / resume) --------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """One pause: ``repository`` and ``app`` are ``*`` for every one."""

    repository: str
    app: str
    reason: str
    by: str
    at: float

    @property
    def scope(self) -> str:
        if self.repository == ANY and self.app == ANY:
            return "every deploy"
        if self.app == ANY:
            return f"every app of {self.repository}"
        if self.repository == ANY:
            return f"app {self.app} in every repository"
        return f"app {self.app} of {self.repository}"


def _pause_field(repository: str | None, app: str | None) -> str:
    return f"{(repository or ANY).lower()}|{app or ANY}"


def pause(
    client: redis.Redis, *, repository: str | None, app: str | None, reason: str, by: str
) -> Pause:
    """Pause deploys of ``app`` (None: every app) of ``repository`` (None: every one)."""
    record = Pause(
        repository=(repository or ANY).lower(),
        app=app or ANY,
        reason=reason,
        by=by,
        at=time.time(),
    )
    data = {"reason": reason, "by": by, "at": record.at}
    client.hset(PAUSES_KEY, _pause_field(repository, app), json.dumps(data))
    return record


def resume(client: redis.Redis, *, repository: str | None, app: str | None) -> bool:
    """Lift the pause of exactly that scope; False when there was none."""
    return bool(client.hdel(PAUSES_KEY, _pause_field(repository, app)))


def pauses(client: redis.Redis) -> list[Pause]:
    """Every pause, by scope."""
    out = []
    for raw_field, raw in sorted(client.hgetall(PAUSES_KEY).items()):
        repository, _, app = (_text(raw_field) or "").partition("|")
        data = json.loads(raw)
        out.append(
            Pause(
                repository=repository,
                app=app,
                reason=str(data.get("reason") or ""),
                by=str(data.get("by") or ""),
                at=float(data.get("at") or 0),
            )
        )
    return out


def pause_of(client: redis.Redis, repository: str, app: str) -> Pause | None:
    """The pause that holds ``app`` of ``repository``, the narrowest first, or None."""
    scopes = [(repository, app), (repository, None), (None, app), (None, None)]
    fields = [_pause_field(r, a) for r, a in scopes]
    for field_name, raw in zip(fields, client.hmget(PAUSES_KEY, fields), strict=True):
        if raw is None:
            continue
        data = json.loads(raw)
        scope_repo, _, scope_app = field_name.partition("|")
        return Pause(
            repository=scope_repo,
            app=scope_app,
            reason=str(data.get("reason") or ""),
            by=str(data.get("by") or ""),
            at=float(data.get("at") or 0),
        )
    return None


@dataclass(frozen=True)
class DeployFigures:
    """What /metrics shows about deploys: the pauses, and the pushes with paused apps waiting
    for a resume."""

    pauses: list[Pause]
    parked: int


def deploy_figures(client: redis.Redis) -> DeployFigures:
    """Read the pauses and the paused pushes (raises redis errors as they come)."""
    return DeployFigures(pauses=pauses(client), parked=int(client.zcard(PARKED_KEY)))
