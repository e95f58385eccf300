"""The :class:`~bot.forges.base.Forge` protocol on GitLab (gitlab.com or self-managed), through
python-gitlab used as its authors intend: a ``Gitlab`` client with ``private_token``,
``retry_transient_errors=True`` and a ``max_retries`` budget (python-gitlab retries 5xx, 52x,
429 and dropped connections itself, sleeping ``Retry-After`` or ``RateLimit-Reset`` when GitLab
sends them), ``keep_base_url=True`` so pagination never leaves ``GITLAB_URL``, and lazy objects
so that only the requests a method needs are made.

What maps onto what:

- a merge request is a :class:`~bot.forges.base.PullRequest` (``number`` is its iid; refs
  ``refs/merge-requests/<iid>/head`` and ``/merge``; from a fork when its source project is not
  its target project; ``opened`` and ``locked`` (being merged) are open);
- notes are comments (system notes are left out); the bot's own are found by their marker;
- an ``eyes`` award emoji on a note is the reaction;
- a commit status ``name`` is the context; ``StatusState`` → GitLab ``running`` / ``success`` /
  ``failed`` (``error`` too: a status the reader must notice, where ``canceled`` reads as
  "nobody cared");
- access levels are permissions (Guest 10 → READ, Reporter 20 → TRIAGE, Developer 30 → WRITE,
  Maintainer 40 → MAINTAIN, Owner 50 → ADMIN), read from ``members/all`` so that a role
  inherited from a group counts;
- issues are issues (``number`` is the iid), found by marker among the bot's own.

Credentials go only to ``GITLAB_URL``: redirects are refused (a ``PRIVATE-TOKEN`` header would
follow one to any host), pagination links are rebased onto the configured URL, and git gets the
token through its environment (``oauth2:<token>`` over HTTP basic). Every python-gitlab or
transport failure leaves this module as a :class:`~bot.errors.ForgeError` whose message names
what to fix and carries no credential.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import gitlab
import requests
from gitlab import exceptions as gl_errors
from requests.adapters import HTTPAdapter

from bot.errors import (
    ForgeAccessDenied,
    ForgeError,
    ForgeNotConfigured,
    ForgeRefused,
    ForgeUnavailable,
)
from bot.forges.base import (
    STATUS_DESCRIPTION_LIMIT,
    Comment,
    GitAccess,
    Identity,
    Issue,
    Permission,
    PullRequest,
    PullState,
    Reaction,
    RepoInfo,
    StatusState,
    shorten,
)
from bot.forges.calls import GitLabRetry
from bot.forges.gitauth import basic_auth_env
from bot.forges.markers import Marker
from bot.settings import Settings

log = logging.getLogger("gitops_bot.forges.gitlab")

COMMENT_LIMIT = 1_000_000
"""GitLab refuses longer notes ("Note is too long (maximum is 1000000 characters)")."""
PER_PAGE = 100
API_PATH = "/api/v4"

MR_STATES = {
    "opened": PullState.OPEN,
    # "locked" is the short moment while GitLab merges: not merged yet.
    "locked": PullState.OPEN,
    "merged": PullState.MERGED,
    "closed": PullState.CLOSED,
}
STATUS_STATES = {
    StatusState.PENDING: "running",
    StatusState.SUCCESS: "success",
    StatusState.FAILURE: "failed",
    StatusState.ERROR: "failed",
}
#: Reactions in GitLab's emoji names.
EMOJI: dict[str, str] = {
    "eyes": "eyes",
    "+1": "thumbsup",
    "-1": "thumbsdown",
    "rocket": "rocket",
    "confused": "confused",
}
#: Users GitLab creates for project and group access tokens (as the webhook intake knows them).
ACCESS_TOKEN_BOT = re.compile(r"(?:project|group)_\d+_bot(?:_[0-9a-f]+)?", re.IGNORECASE)
#: python-gitlab retries these (``retry_transient_errors`` adds 5xx and 52x to 429).
RETRIED_STATUSES = frozenset([429, 500, 502, 503, 504, *range(520, 531)])

TOKEN_NEEDS = (
    "a personal, group or project access token with the `api` scope whose user has the "
    "Developer role (or higher) on the project or its group"
)
MISSING_CREDENTIALS = (
    "GITLAB_WEBHOOK_SECRET is set but the bot has no GitLab credentials: set GITLAB_TOKEN "
    "(a token with the api scope) and, for a self-managed GitLab, GITLAB_URL"
)


def access_level_permission(level: int) -> Permission:
    """GitLab's access level as a :class:`Permission` (custom roles count by their base
    level; Minimal access (5) is none, Planner (15) reads)."""
    if level >= 50:
        return Permission.ADMIN
    if level >= 40:
        return Permission.MAINTAIN
    if level >= 30:
        return Permission.WRITE
    if level >= 20:
        return Permission.TRIAGE
    if level >= 10:
        return Permission.READ
    return Permission.NONE


@dataclass(frozen=True)
class GitLabConfig:
    """How to reach GitLab; built from :class:`~bot.settings.Settings` by
    :meth:`from_settings`. The token is kept out of ``repr``."""

    url: str
    token: str = field(repr=False)
    timeout: float = 15.0
    #: Retries of one request after 5xx/429/dropped connections (python-gitlab's budget).
    max_retries: int = 10
    #: Longest ``Retry-After`` the bot sleeps; beyond it the call fails as ``ForgeUnavailable``
    #: rather than sleeping past the job's time.
    max_wait: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GitLabConfig:
        """Raises :class:`ForgeNotConfigured` naming the missing setting."""
        if not settings.gitlab_token:
            raise ForgeNotConfigured(MISSING_CREDENTIALS)
        return cls(
            url=settings.gitlab_url,
            token=settings.gitlab_token,
            timeout=settings.forge_timeout,
            max_wait=float(min(settings.job_timeout / 2, 900)),
        )

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    @property
    def cache_key(self) -> tuple[str, str]:
        """Identifies the credentials without holding them."""
        return (self.url, hashlib.sha256(self.token.encode()).hexdigest()[:16])

    def redact(self, text: str) -> str:
        return text.replace(self.token, "<redacted>") if self.token else text


class RetryAfterTooLong(requests.RequestException):
    """GitLab asked the bot to wait longer than the job may (raised from the session's response
    hook, before python-gitlab would sleep)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"GitLab asked to wait {seconds:.0f} s (Retry-After)")
        self.seconds = seconds


def _retry_after_hook(max_wait: float) -> Callable[..., None]:
    """A ``requests`` response hook for python-gitlab's retries: ``Retry-After`` as an HTTP
    date becomes seconds (python-gitlab reads only seconds), and a wait longer than
    ``max_wait`` fails the call instead of sleeping through the job."""

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code not in RETRIED_STATUSES:
            return
        raw = response.headers.get("Retry-After")
        if raw is None:
            return
        raw = raw.strip()
        if raw.isdigit():
            seconds = float(raw)
        else:
            moment = email.utils.parsedate_to_datetime(raw) if raw else None
            if moment is None or moment.tzinfo is None:
                del response.headers["Retry-After"]  # unreadable: python-gitlab backs off
                return
            seconds = max(0.0, moment.timestamp() - time.time())
            response.headers["Retry-After"] = str(math.ceil(seconds))
        if seconds > max_wait:
            raise RetryAfterTooLong(seconds)

    return hook


class _Client(gitlab.Gitlab):
    """python-gitlab's client with the bot's retry budget as every request's default (its
    pagination and ``auth()`` make requests the bot cannot pass ``max_retries`` to)."""

    def __init__(self, *args: Any, max_retries: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bot_max_retries = max_retries

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("max_retries", self.bot_max_retries)
        return super().http_request(verb, path, *args, **kwargs)


# --- per-process caches ------------------------------------------------------------------------

_lock = threading.Lock()
_clients: dict[GitLabConfig, _Client] = {}
_identities: dict[tuple[str, str], Identity] = {}


def clear_caches() -> None:
    """Forget clients and identities (tests; a rotated token)."""
    with _lock:
        for client in _clients.values():
            client.session.close()
        _clients.clear()
        _identities.clear()


def client(config: GitLabConfig) -> _Client:
    """The process's python-gitlab client for ``config``."""
    with _lock:
        found = _clients.get(config)
        if found is None:
            session = requests.Session()
            # A redirect would carry PRIVATE-TOKEN to wherever it points (requests strips only
            # Authorization): refuse any, and say which URL to configure instead.
            session.max_redirects = 0
            session.hooks["response"].append(_retry_after_hook(config.max_wait))
            # requests' own policy (no retry at this level), counting every request
            for scheme in ("https://", "http://"):
                session.mount(scheme, HTTPAdapter(max_retries=GitLabRetry()))
            found = _Client(
                config.url,
                private_token=config.token,
                timeout=config.timeout,
                retry_transient_errors=True,
                per_page=PER_PAGE,
                keep_base_url=True,
                session=session,
                user_agent="gitops-bot (python-gitlab)",
                max_retries=config.max_retries,
            )
            _clients[config] = found
        return found


def identity(config: GitLabConfig) -> Identity:
    """The bot's username, asked once per process (``GET /user``)."""
    with _lock:
        known = _identities.get(config.cache_key)
    if known is not None:
        return known
    gl = client(config)
    with _translate(config, action="read the bot's own account", repository=None):
        gl.auth()
        assert gl.user is not None
        found = Identity(login=str(gl.user.username), is_app=False)
    with _lock:
        _identities[config.cache_key] = found
    return found


# --- errors --------------------------------------------------------------------------------------


@contextmanager
def _translate(config: GitLabConfig, *, action: str, repository: str | None) -> Iterator[None]:
    """python-gitlab's and the transport's exceptions as the ForgeError family."""
    try:
        yield
    except ForgeError:
        raise
    except gl_errors.GitlabError as exc:
        _raise_for_status(config, exc, action=action, repository=repository)
    except RetryAfterTooLong as exc:
        raise ForgeUnavailable(
            f"GitLab asked the bot to wait {exc.seconds:.0f} s before it may {action}"
            f"{_on(repository)}, longer than the job allows ({config.max_wait:.0f} s)",
            status=429,
            repository=repository,
        ) from None
    except requests.TooManyRedirects as exc:
        target = exc.response.headers.get("Location", "?") if exc.response is not None else "?"
        raise ForgeAccessDenied(
            f"GitLab at {config.url} answered with a redirect to {config.redact(target)[:200]} "
            f"when asked to {action}; set GITLAB_URL to the address GitLab is served at (no "
            "credential follows a redirect)",
            repository=repository,
        ) from None
    except requests.RequestException as exc:
        raise ForgeUnavailable(
            f"GitLab at {config.url} could not be reached to {action}{_on(repository)} "
            f"({type(exc).__name__})",
            repository=repository,
        ) from None


def _raise_for_status(
    config: GitLabConfig, exc: gl_errors.GitlabError, *, action: str, repository: str | None
) -> NoReturn:
    status = exc.response_code
    message = _message(config, exc)
    if status is None:
        # Not an HTTP answer: an unparsable body, a redirected write.
        raise ForgeUnavailable(
            f"GitLab at {config.url} gave an unusable answer when asked to {action}"
            f"{_on(repository)}: {message}",
            repository=repository,
        ) from None
    if status == 401:
        raise ForgeAccessDenied(
            f"GitLab at {config.url} refused GITLAB_TOKEN (401 {message}): it is wrong, "
            "expired or revoked",
            status=401,
            repository=repository,
        ) from None
    if status == 403 and "insufficient_scope" in message:
        raise ForgeAccessDenied(
            f"GITLAB_TOKEN lacks the api scope (403 {message} when trying to {action}"
            f"{_on(repository)}): it needs {TOKEN_NEEDS}",
            status=403,
            repository=repository,
        ) from None
    if status == 404 and repository is None:
        raise ForgeAccessDenied(
            f"{config.api_url} answered 404 when asked to {action}: is GITLAB_URL the root of "
            "a GitLab (https://gitlab.example.com, with its relative path if any)?",
            status=404,
        ) from None
    if status == 404:
        raise ForgeAccessDenied(
            f"the bot is not a member of {repository}, or the project does not exist (404 "
            f"while trying to {action}; GitLab hides private projects from non-members): "
            f"GITLAB_TOKEN needs {TOKEN_NEEDS}",
            status=404,
            repository=repository,
        ) from None
    if status == 403:
        raise ForgeAccessDenied(
            f"GITLAB_TOKEN's user may not {action}{_on(repository)} (403 {message}): give it "
            "the Developer role (or higher) on the project or its group",
            status=403,
            repository=repository,
        ) from None
    if status >= 500 or status == 429:
        raise ForgeUnavailable(
            f"GitLab kept failing to {action}{_on(repository)} after retries ({status} {message})",
            status=status,
            repository=repository,
        ) from None
    raise ForgeRefused(
        f"GitLab refused to {action}{_on(repository)} ({status} {message})",
        status=status,
        repository=repository,
    ) from None


def _on(repository: str | None) -> str:
    return f" on {repository}" if repository else ""


def _message(config: GitLabConfig, exc: gl_errors.GitlabError) -> str:
    text = exc.error_message
    if not isinstance(text, str):
        text = str(text)
    return config.redact(text.strip())[:300]


# --- the forge ---------------------------------------------------------------------------------


class GitLabForge:
    """One GitLab project (``group/subgroup/project``) through the bot's token."""

    provider = "gitlab"
    comment_limit = COMMENT_LIMIT

    def __init__(self, config: GitLabConfig, repository: str) -> None:
        self.config = config
        self.repository = repository
        self._gl = client(config)
        # Lazy: no request; every call names the project by its URL-encoded path.
        self._project = self._gl.projects.get(repository, lazy=True)
        self._info: RepoInfo | None = None
        #: Head SHA → the ref its commit status belongs to (the MR's source branch, or its
        #: ``refs/merge-requests/<iid>/head`` for a fork), learned from the MRs read.
        self._status_refs: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"GitLabForge({self.repository!r}, url={self.config.url!r})"

    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        with _translate(self.config, action=action, repository=self.repository):
            yield

    @contextmanager
    def _call_on(self, action: str, what: str) -> Iterator[None]:
        """Like :meth:`_call` for one object (an MR, a note): a 404 says the object is missing
        when the project itself is visible."""
        try:
            with self._call(action):
                yield
        except ForgeAccessDenied as exc:
            if exc.status == 404 and self._project_visible():
                raise ForgeRefused(
                    f"{what} does not exist on {self.repository}",
                    status=404,
                    repository=self.repository,
                ) from None
            raise

    def _project_visible(self) -> bool:
        try:
            self.repository_info()
        except ForgeError:
            return False
        return True

    def _mr(self, number: int) -> Any:
        return self._project.mergerequests.get(number, lazy=True)

    # --- identity and repository -------------------------------------------------------------

    def identity(self) -> Identity:
        return identity(self.config)

    def repository_info(self) -> RepoInfo:
        if self._info is None:
            with self._call("read the project"):
                project = self._gl.projects.get(self.repository)
                branch = project.default_branch
                if not branch:
                    raise ForgeRefused(
                        f"{self.repository} has no default branch (an empty repository)",
                        repository=self.repository,
                    )
                head = project.branches.get(branch).commit["id"]
                self._info = RepoInfo(
                    full_name=str(project.path_with_namespace),
                    default_branch=str(branch),
                    default_branch_sha=str(head),
                    clone_url=str(project.http_url_to_repo),
                    web_url=str(project.web_url),
                    private=project.visibility != "public",
                )
        return self._info

    # --- merge requests -----------------------------------------------------------------------

    def _pull(self, mr: Mapping[str, Any], base_sha: str) -> PullRequest:
        iid = int(mr["iid"])
        from_fork = mr.get("source_project_id") != mr.get("target_project_id")
        head_sha = str(mr.get("sha") or "")
        if head_sha:
            self._status_refs[head_sha] = (
                f"refs/merge-requests/{iid}/head" if from_fork else str(mr["source_branch"])
            )
        author = mr.get("author") or {}
        return PullRequest(
            number=iid,
            state=MR_STATES.get(str(mr.get("state")), PullState.CLOSED),
            head_sha=head_sha,
            head_ref=str(mr["source_branch"]),
            base_sha=base_sha,
            base_ref=str(mr["target_branch"]),
            author=str(author.get("username") or ""),
            draft=bool(mr.get("draft") or mr.get("work_in_progress")),
            from_fork=from_fork,
            head_fetch_ref=f"refs/merge-requests/{iid}/head",
            merge_ref=f"refs/merge-requests/{iid}/merge",
            web_url=str(mr.get("web_url") or ""),
            title=str(mr.get("title") or ""),
        )

    def _branch_heads(self, names: set[str]) -> dict[str, str]:
        """The head of each target branch, one request per branch (a list of MRs carries no
        target SHA)."""
        heads = {}
        for name in sorted(names):
            try:
                heads[name] = str(self._project.branches.get(name).commit["id"])
            except gl_errors.GitlabGetError as exc:
                if exc.response_code != 404:
                    raise
                heads[name] = ""  # the target branch is gone
        return heads

    def _pulls(self, mrs: Sequence[Mapping[str, Any]]) -> list[PullRequest]:
        heads = self._branch_heads({str(mr["target_branch"]) for mr in mrs})
        return [self._pull(mr, heads[str(mr["target_branch"])]) for mr in mrs]

    def pull_request(self, number: int) -> PullRequest:
        with self._call_on("read merge requests", f"merge request !{number}"):
            mr = self._project.mergerequests.get(number).attributes
            # diff_refs.start_sha: the target branch head GitLab diffed against (GitHub's
            # base.sha); a list of MRs carries none, so those ask the branch.
            start = (mr.get("diff_refs") or {}).get("start_sha")
            if start:
                return self._pull(mr, str(start))
            return self._pulls([mr])[0]

    def open_pull_requests(self) -> Sequence[PullRequest]:
        with self._call("read merge requests"):
            mrs = self._project.mergerequests.list(
                state="opened", order_by="created_at", sort="asc", get_all=True
            )
            return self._pulls([mr.attributes for mr in mrs])

    def pull_requests_for_commit(self, sha: str) -> Sequence[PullRequest]:
        with self._call("read merge requests"):
            mrs = self._project.commits.get(sha, lazy=True).merge_requests(get_all=True)
            return self._pulls(list(mrs))

    # --- notes ----------------------------------------------------------------------------------

    @staticmethod
    def _is_bot(user: Mapping[str, Any]) -> bool:
        return bool(user.get("bot")) or bool(
            ACCESS_TOKEN_BOT.fullmatch(str(user.get("username") or ""))
        )

    @classmethod
    def _comment(cls, note: Mapping[str, Any]) -> Comment:
        author = note.get("author") or {}
        return Comment(
            id=int(note["id"]),
            author=str(author.get("username") or ""),
            author_is_bot=cls._is_bot(author),
            body=str(note.get("body") or ""),
        )

    def comments(self, number: int) -> Sequence[Comment]:
        with self._call_on("read notes", f"merge request !{number}"):
            notes = self._mr(number).notes.list(sort="asc", order_by="created_at", get_all=True)
            return [self._comment(n.attributes) for n in notes if not n.attributes.get("system")]

    def _check_size(self, body: str, what: str = "note") -> None:
        if len(body) > self.comment_limit:
            raise ForgeRefused(
                f"a {what} of {len(body)} characters is over GitLab's limit of "
                f"{self.comment_limit}",
                status=400,
                repository=self.repository,
            )

    def create_comment(self, number: int, body: str) -> Comment:
        self._check_size(body)
        with self._call_on("comment", f"merge request !{number}"):
            return self._comment(self._mr(number).notes.create({"body": body}).attributes)

    def edit_comment(self, number: int, comment_id: int, body: str) -> Comment:
        self._check_size(body)
        with self._call_on("edit a note", f"note {comment_id} on !{number}"):
            return self._comment(self._mr(number).notes.update(comment_id, {"body": body}))

    def delete_comment(self, number: int, comment_id: int) -> None:
        try:
            with self._call_on("delete a note", f"note {comment_id} on !{number}"):
                self._mr(number).notes.delete(comment_id)
        except ForgeRefused as exc:
            if exc.status != 404:
                raise
            # Already gone (a concurrent run, a person): what we wanted.

    def react(self, number: int, comment_id: int, reaction: Reaction = "eyes") -> None:
        note = self._mr(number).notes.get(comment_id, lazy=True)
        what = f"note {comment_id} on !{number}"
        try:
            with self._call_on("award an emoji", what):
                note.awardemojis.create({"name": EMOJI[reaction]})
        except ForgeRefused as exc:
            # GitLab answers a second identical award 404 "Award Emoji Name has already been
            # taken": the reaction is there, as wanted. A missing note is 404 too.
            if exc.status == 404 and self._awarded(note, EMOJI[reaction]):
                return
            raise

    def _awarded(self, note: Any, name: str) -> bool:
        me = self.identity().login.casefold()
        try:
            with self._call("read award emoji"):
                awards = note.awardemojis.list(get_all=True)
        except ForgeError:
            return False
        return any(a.name == name and str(a.user["username"]).casefold() == me for a in awards)

    # --- statuses and permissions ----------------------------------------------------------------

    def set_status(
        self,
        sha: str,
        *,
        state: StatusState,
        context: str,
        description: str,
        target_url: str | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "state": STATUS_STATES[state],
            "name": context,
            "description": shorten(description, STATUS_DESCRIPTION_LIMIT),
        }
        if target_url:
            data["target_url"] = target_url
        ref = self._status_refs.get(sha)
        if ref:
            data["ref"] = ref
        try:
            # GitLab files a status under a branch: 404 when no branch (and no MR the bot
            # read) holds the commit.
            with self._call_on("set a commit status", f"a branch containing commit {sha}"):
                self._project.commits.get(sha, lazy=True).statuses.create(data)
        except ForgeRefused as exc:
            # GitLab refuses to move a running status to running again ("Cannot transition
            # status via :run from :running"): it already says what we meant (a second
            # delivery, a retry).
            if exc.status == 400 and "Cannot transition status" in exc.message:
                log.debug("status %s on %s already %s", context, sha, data["state"])
                return
            raise

    def permission(self, login: str) -> Permission:
        with self._call("read a user's role"):
            users = self._gl.users.list(username=login, get_all=True)
        user = next(
            (u for u in users if str(u.username).casefold() == login.casefold()),
            None,
        )
        if user is None:
            return Permission.NONE
        try:
            with self._call("read a user's role"):
                member = self._project.members_all.get(user.id)
        except ForgeAccessDenied as exc:
            if exc.status == 404 and self._project_visible():
                return Permission.NONE  # not a member, directly or through a group
            raise
        if member.attributes.get("membership_state", "active") != "active":
            return Permission.NONE  # invited, awaiting approval
        return access_level_permission(int(member.access_level))

    # --- issues ----------------------------------------------------------------------------------

    @staticmethod
    def _issue(issue: Mapping[str, Any]) -> Issue:
        return Issue(
            number=int(issue["iid"]),
            open=issue.get("state") == "opened",
            title=str(issue.get("title") or ""),
            body=str(issue.get("description") or ""),
            web_url=str(issue.get("web_url") or ""),
            author=str((issue.get("author") or {}).get("username") or ""),
        )

    def find_issue(self, marker: Marker) -> Issue | None:
        me = self.identity().login
        with self._call("read issues"):
            for issue in self._project.issues.list(
                author_username=me, order_by="created_at", sort="desc", iterator=True
            ):
                if marker.in_body(str(issue.attributes.get("description") or "")):
                    return self._issue(issue.attributes)
        return None

    def get_issue(self, number: int) -> Issue | None:
        try:
            with self._call("read issues"):
                issue = self._project.issues.get(number)
        except ForgeAccessDenied as exc:
            # 404: deleted (an issue moved to another project stays here, closed)
            if exc.status == 404 and self._project_visible():
                return None
            raise
        return self._issue(issue.attributes)

    def open_issue(self, *, title: str, body: str) -> Issue:
        self._check_size(body, "description")
        with self._call("open an issue"):
            made = self._project.issues.create({"title": title, "description": body})
            return self._issue(made.attributes)

    def update_issue(self, number: int, *, title: str, body: str) -> Issue:
        self._check_size(body, "description")
        with self._call_on("edit an issue", f"issue #{number}"):
            return self._issue(
                self._project.issues.update(number, {"title": title, "description": body})
            )

    def close_issue(self, number: int, *, comment: str | None = None) -> None:
        with self._call_on("edit an issue", f"issue #{number}"):
            if comment:
                self._check_size(comment)
                self._project.issues.get(number, lazy=True).notes.create({"body": comment})
            self._project.issues.update(number, {"state_event": "close"})

    def reopen_issue(self, number: int) -> None:
        with self._call_on("edit an issue", f"issue #{number}"):
            self._project.issues.update(number, {"state_event": "reopen"})

    def comment_on_issue(self, number: int, body: str) -> None:
        self._check_size(body)
        with self._call_on("edit an issue", f"issue #{number}"):
            self._project.issues.get(number, lazy=True).notes.create({"body": body})

    # --- git -----------------------------------------------------------------------------------

    def git_access(self) -> GitAccess:
        clone_url = self.repository_info().clone_url
        return GitAccess(
            clone_url=clone_url, env=basic_auth_env(clone_url, "oauth2", self.config.token)
        )
