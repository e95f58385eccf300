"""The :class:`~bot.forges.base.Forge` protocol on GitHub, through PyGithub used as its authors
intend: ``Auth.Token`` or ``Auth.AppAuth(...).get_installation_auth(...)`` (PyGithub fetches
the installation token, caches it and renews it before it expires), ``GithubRetry`` for 5xx,
429 and rate limits (honouring ``Retry-After`` and ``X-RateLimit-Reset``, within a wait budget
derived from the job's time), lazy objects so that only the requests a method needs are made.

Clients and the bot's identity are kept per process (a worker runs many jobs): one ``Github``
per token or per App installation, one ``GET /user`` or ``GET /app``.

Every PyGithub or transport failure leaves this module as a :class:`~bot.errors.ForgeError`:
``ForgeUnavailable`` when GitHub kept failing after the retries, ``ForgeAccessDenied`` with a
message naming what to fix for 401/403/404, ``ForgeRefused`` for 422. No message carries a
credential: they are built from GitHub's ``message`` field, never from headers or the request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

import requests
from github import Auth, Github, GithubException, GithubIntegration, GithubRetry
from github.GithubException import RateLimitExceededException
from github.IssueComment import IssueComment
from github.PullRequest import PullRequest as GhPullRequest
from github.Repository import Repository as GhRepository

from bot.errors import (
    ForgeAccessDenied,
    ForgeError,
    ForgeNotConfigured,
    ForgeRefused,
    ForgeUnavailable,
)
from bot.events import Repository
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
from bot.forges.calls import CountingRetry
from bot.forges.gitauth import basic_auth_env
from bot.forges.markers import Marker
from bot.settings import Settings

log = logging.getLogger("gitops_bot.forges.github")

# PyGithub gives its "github" logger a stderr handler of its own when imported: its lines
# (retries, rate limits) would be printed twice, once in plain text. The bot's logging set-up
# (bot.logs) prints them, in GITOPS_LOG_FORMAT, as they propagate to the root logger.
for _handler in list(logging.getLogger("github").handlers):
    if type(_handler) is logging.StreamHandler:
        logging.getLogger("github").removeHandler(_handler)

COMMENT_LIMIT = 65536
PER_PAGE = 100
ROLES = {
    "none": Permission.NONE,
    "read": Permission.READ,
    "triage": Permission.TRIAGE,
    "write": Permission.WRITE,
    "maintain": Permission.MAINTAIN,
    "admin": Permission.ADMIN,
}

#: The GitHub App permission each action needs, for error messages (README lists the same).
APP_PERMISSION = {
    "read the repository": "Metadata: read",
    "read pull requests": "Pull requests: read",
    "read comments": "Pull requests: read",
    "comment": "Pull requests: write",
    "edit a comment": "Pull requests: write",
    "delete a comment": "Pull requests: write",
    "react to a comment": "Pull requests: write",
    "set a commit status": "Commit statuses: write",
    "read a user's permission": "Metadata: read",
    "read issues": "Issues: read",
    "open an issue": "Issues: write",
    "edit an issue": "Issues: write",
    "fetch with git": "Contents: read",
}
#: What a personal token needs, for error messages.
TOKEN_NEEDS = (
    "a classic token with the `repo` scope (`public_repo` for public repositories), or a "
    "fine-grained token with Pull requests, Issues and Commit statuses read/write and "
    "Contents read"
)
MISSING_CREDENTIALS = (
    "GITHUB_WEBHOOK_SECRET is set but the bot has no GitHub credentials: set GITHUB_TOKEN, "
    "or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE"
)


@dataclass(frozen=True)
class GitHubConfig:
    """How to reach GitHub; built from :class:`~bot.settings.Settings` by
    :meth:`from_settings`. Secrets are kept out of ``repr``."""

    api_url: str
    token: str | None = field(default=None, repr=False)
    app_id: int | None = None
    private_key: str | None = field(default=None, repr=False)
    timeout: float = 15.0
    write_interval: float = 1.0
    #: Longest single wait for a rate limit or ``Retry-After``; beyond it the call fails as
    #: ``ForgeUnavailable`` rather than sleeping past the job's time.
    max_wait: float = 600.0
    retries: int = 6
    backoff_factor: float = 1.0
    secondary_rate_wait: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubConfig:
        """Raises :class:`ForgeNotConfigured` naming the missing setting."""
        key = settings.github_app_private_key
        if settings.github_app_id is not None:
            if key is None and settings.github_app_private_key_file is not None:
                try:
                    key = settings.github_app_private_key_file.read_text().strip()
                except OSError as exc:
                    raise ForgeNotConfigured(
                        f"GITHUB_APP_PRIVATE_KEY_FILE cannot be read: {exc.strerror}"
                    ) from None
            if not key:
                raise ForgeNotConfigured(
                    "GITHUB_APP_ID is set without GITHUB_APP_PRIVATE_KEY or "
                    "GITHUB_APP_PRIVATE_KEY_FILE"
                )
            if "PRIVATE KEY" not in key:
                raise ForgeNotConfigured(
                    "the GitHub App private key is not a PEM private key "
                    "(GITHUB_APP_PRIVATE_KEY / GITHUB_APP_PRIVATE_KEY_FILE)"
                )
        elif not settings.github_token:
            raise ForgeNotConfigured(MISSING_CREDENTIALS)
        max_wait = float(min(settings.job_timeout / 2, 900))
        return cls(
            api_url=settings.github_api_url,
            token=None if settings.github_app_id is not None else settings.github_token,
            app_id=settings.github_app_id,
            private_key=key if settings.github_app_id is not None else None,
            timeout=settings.forge_timeout,
            write_interval=settings.forge_write_interval,
            max_wait=max_wait,
            secondary_rate_wait=min(60.0, max_wait),
        )

    @property
    def is_app(self) -> bool:
        return self.app_id is not None

    @property
    def cache_key(self) -> tuple[str, str]:
        """Identifies the credentials without holding them."""
        if self.app_id is not None:
            return (self.api_url, f"app:{self.app_id}")
        digest = hashlib.sha256((self.token or "").encode()).hexdigest()[:16]
        return (self.api_url, f"token:{digest}")

    def retry(self) -> GithubRetry:
        """PyGithub's retry policy: 5xx and 429 (``Retry-After`` honoured), and the 403s that
        are rate limits (primary: until ``X-RateLimit-Reset``; secondary: ``Retry-After`` or
        ``secondary_rate_wait``). Writes are retried too (PATCH included), so a 502 on a
        comment edit does not fail a job. Every request is counted (:mod:`bot.forges.calls`)."""
        return CountedGithubRetry(
            total=self.retries,
            backoff_factor=self.backoff_factor,
            status_forcelist=[*range(500, 600), 429],
            allowed_methods=frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"}),
            secondary_rate_wait=self.secondary_rate_wait,
            max_rate_limit_wait=self.max_wait,
            retry_after_max=math.ceil(self.max_wait),
            backoff_max=min(self.max_wait, 120.0),
        )

    def client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.api_url,
            "timeout": math.ceil(self.timeout),
            "retry": self.retry(),
            "per_page": PER_PAGE,
            "seconds_between_requests": None,
            "seconds_between_writes": self.write_interval or None,
            "lazy": True,
        }

    def redact(self, text: str) -> str:
        for secret in (self.token, self.private_key):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text


class CountedGithubRetry(CountingRetry, GithubRetry):
    """PyGithub's retry policy, counting each request in ``gitops_forge_requests_total``."""

    provider = "github"


# --- per-process caches ------------------------------------------------------------------------

_lock = threading.Lock()
_clients: dict[tuple[GitHubConfig, int | None], tuple[Github, Auth.Auth]] = {}
_identities: dict[tuple[str, str], Identity] = {}
_installations: dict[tuple[str, str, str], int] = {}


def clear_caches() -> None:
    """Forget clients, identities and installation ids (tests; a rotated credential)."""
    with _lock:
        _clients.clear()
        _identities.clear()
        _installations.clear()


def _app_auth(config: GitHubConfig) -> Auth.AppAuth:
    assert config.app_id is not None and config.private_key is not None
    return Auth.AppAuth(config.app_id, config.private_key)


def _client(config: GitHubConfig, installation_id: int | None) -> tuple[Github, Auth.Auth]:
    key = (config, installation_id)
    with _lock:
        cached = _clients.get(key)
        if cached is None:
            auth: Auth.Auth
            if config.is_app:
                assert installation_id is not None
                auth = _app_auth(config).get_installation_auth(installation_id)
            else:
                assert config.token is not None
                auth = Auth.Token(config.token)
            # Github() gives an installation auth its requester; the same object then fetches
            # and renews the token, for the API and for git alike.
            client = Github(auth=auth, **config.client_options())
            cached = _clients[key] = (client, auth)
        return cached


def _integration(config: GitHubConfig) -> GithubIntegration:
    return GithubIntegration(auth=_app_auth(config), **config.client_options())


def identity(config: GitHubConfig) -> Identity:
    """The bot's login, asked once per process: ``GET /user`` for a token, ``GET /app`` for an
    App (its comments show as ``<slug>[bot]``)."""
    with _lock:
        known = _identities.get(config.cache_key)
    if known is not None:
        return known
    who = "the GitHub App" if config.is_app else "GITHUB_TOKEN"
    with _translate(config, action="read the bot's own account", repository=None, who=who):
        if config.is_app:
            found = Identity(login=f"{_integration(config).get_app().slug}[bot]", is_app=True)
        else:
            client, _ = _client(config, None)
            found = Identity(login=client.get_user().login, is_app=False)
    with _lock:
        _identities[config.cache_key] = found
    return found


def installation_for(config: GitHubConfig, full_name: str) -> int:
    """The App's installation on ``full_name`` (deliveries carry it; the CLI and the catch-up
    ask ``GET /repos/{owner}/{repo}/installation``)."""
    key = (*config.cache_key, full_name.lower())
    with _lock:
        known = _installations.get(key)
    if known is not None:
        return known
    owner, _, name = full_name.partition("/")
    with _translate(
        config, action="find its installation", repository=full_name, who="the GitHub App"
    ):
        found = int(_integration(config).get_repo_installation(owner, name).id)
    with _lock:
        _installations[key] = found
    return found


def installed_repositories(config: GitHubConfig) -> list[tuple[Repository, int]]:
    """Every repository the App is installed on, with its installation id (the catch-up and
    the drift job walk them): ``GET /app/installations``, then each installation's
    ``GET /installation/repositories``. Empty for a token. Raises the ForgeError family."""
    if not config.is_app:
        return []
    found: list[tuple[Repository, int]] = []
    with _translate(config, action="list its installations", repository=None, who="the GitHub App"):
        for installation in _integration(config).get_installations():
            for repo in installation.get_repos():
                found.append(
                    (
                        Repository(
                            provider="github",
                            full_name=repo.full_name,
                            id=int(repo.id),
                            default_branch=repo.default_branch or "main",
                            clone_url=repo.clone_url or "",
                            web_url=repo.html_url or "",
                            api_url=config.api_url,
                        ),
                        int(installation.id),
                    )
                )
    return found


# --- errors --------------------------------------------------------------------------------------


@contextmanager
def _translate(
    config: GitHubConfig, *, action: str, repository: str | None, who: str
) -> Iterator[None]:
    """PyGithub's and the transport's exceptions as the ForgeError family."""
    try:
        yield
    except ForgeError:
        raise
    except RateLimitExceededException as exc:
        raise ForgeUnavailable(
            f"GitHub's rate limit stops the bot from being able to {action}"
            f"{_on(repository)}: {_message(config, exc)}",
            status=exc.status,
            repository=repository,
        ) from None
    except GithubException as exc:
        _raise_for_status(config, exc, action=action, repository=repository, who=who)
    except requests.exceptions.RetryError as exc:
        raise ForgeUnavailable(
            f"GitHub kept failing to {action}{_on(repository)} after retries ({_reason(exc)})",
            repository=repository,
        ) from None
    except requests.exceptions.RequestException as exc:
        raise ForgeUnavailable(
            f"GitHub at {config.api_url} could not be reached to {action}{_on(repository)} "
            f"({type(exc).__name__})",
            repository=repository,
        ) from None


def _raise_for_status(
    config: GitHubConfig, exc: GithubException, *, action: str, repository: str | None, who: str
) -> NoReturn:
    status = exc.status
    message = _message(config, exc)
    if status == 401:
        if config.is_app:
            text = (
                f"GitHub at {config.api_url} refused the GitHub App's credentials (401 "
                f"{message}): check GITHUB_APP_ID and the App's private key"
            )
        else:
            text = (
                f"GitHub at {config.api_url} refused GITHUB_TOKEN (401 {message}): it is "
                "wrong, expired or revoked"
            )
        raise ForgeAccessDenied(text, status=401, repository=repository) from None
    if status == 404 and repository is None:
        raise ForgeAccessDenied(
            f"{config.api_url} answered 404 when asked to {action}: is GITHUB_API_URL GitHub's "
            "REST API root (https://<host>/api/v3 on GitHub Enterprise Server)?",
            status=404,
        ) from None
    if status == 404:
        if config.is_app:
            text = (
                f"the GitHub App is not installed on {repository}, or cannot see it "
                f"(404 while trying to {action})"
            )
        else:
            text = (
                f"GITHUB_TOKEN cannot read {repository} (404 while trying to {action}): "
                f"the repository does not exist or the token's user has no access; it needs "
                f"{TOKEN_NEEDS}"
            )
        raise ForgeAccessDenied(text, status=404, repository=repository) from None
    if status == 403:
        if config.is_app:
            need = APP_PERMISSION.get(action)
            hint = f": give the GitHub App the {need} permission" if need else ""
        else:
            hint = f": GITHUB_TOKEN needs {TOKEN_NEEDS}"
        raise ForgeAccessDenied(
            f"{who} may not {action}{_on(repository)} (403 {message}){hint}",
            status=403,
            repository=repository,
        ) from None
    if status == 422:
        raise ForgeRefused(
            f"GitHub refused to {action}{_on(repository)} (422 {message})",
            status=422,
            repository=repository,
        ) from None
    if status >= 500 or status == 429:
        raise ForgeUnavailable(
            f"GitHub kept failing to {action}{_on(repository)} ({status} {message})",
            status=status,
            repository=repository,
        ) from None
    raise ForgeRefused(
        f"GitHub answered {status} when asked to {action}{_on(repository)}: {message}",
        status=status,
        repository=repository,
    ) from None


def _on(repository: str | None) -> str:
    return f" on {repository}" if repository else ""


def _message(config: GitHubConfig, exc: GithubException) -> str:
    data = exc.data
    text = ""
    if isinstance(data, dict):
        text = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [
                str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                for e in errors
            ]
            text = "; ".join(filter(None, [text, *details]))
    elif isinstance(data, str):
        text = data
    return config.redact(text.strip())[:300]


def _reason(exc: requests.exceptions.RetryError) -> str:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return str(reason or "too many error responses")[:200]


# --- the forge ---------------------------------------------------------------------------------


class GitHubForge:
    """One GitHub repository through the bot's token or App installation."""

    provider = "github"
    comment_limit = COMMENT_LIMIT

    def __init__(
        self, config: GitHubConfig, repository: str, *, installation_id: int | None = None
    ) -> None:
        self.config = config
        self.repository = repository
        if not config.is_app:
            installation_id = None  # a token serves every installation alike
        elif installation_id is None:
            installation_id = installation_for(config, repository)
        self.installation_id = installation_id
        self._client, self._auth = _client(config, installation_id)
        self._repo: GhRepository = self._client.get_repo(repository)
        self._info: RepoInfo | None = None

    def __repr__(self) -> str:
        return f"GitHubForge({self.repository!r}, api={self.config.api_url!r})"

    @contextmanager
    def _call(self, action: str) -> Iterator[None]:
        who = "the GitHub App" if self.config.is_app else "GITHUB_TOKEN"
        with _translate(self.config, action=action, repository=self.repository, who=who):
            yield

    @contextmanager
    def _call_on(self, action: str, what: str) -> Iterator[None]:
        """Like :meth:`_call` for one object (a PR, a comment): a 404 says the object is
        missing when the repository itself is visible."""
        try:
            with self._call(action):
                yield
        except ForgeAccessDenied as exc:
            if exc.status == 404 and self._repository_visible():
                raise ForgeRefused(
                    f"{what} does not exist on {self.repository}",
                    status=404,
                    repository=self.repository,
                ) from None
            raise

    def _repository_visible(self) -> bool:
        try:
            self.repository_info()
        except ForgeError:
            return False
        return True

    # --- identity and repository -------------------------------------------------------------

    def identity(self) -> Identity:
        return identity(self.config)

    def repository_info(self) -> RepoInfo:
        if self._info is None:
            with self._call("read the repository"):
                data = self._client.get_repo(self.repository)
                branch = data.default_branch
                head = data.get_branch(branch).commit.sha
                self._info = RepoInfo(
                    full_name=data.full_name,
                    default_branch=branch,
                    default_branch_sha=head,
                    clone_url=data.clone_url,
                    web_url=data.html_url,
                    private=bool(data.private),
                )
        return self._info

    # --- pull requests ------------------------------------------------------------------------

    def _pull(self, pr: GhPullRequest) -> PullRequest:
        head_repo = pr.head.repo
        from_fork = head_repo is None or head_repo.full_name.lower() != self.repository.lower()
        if pr.merged:
            state = PullState.MERGED
        elif pr.state == "open":
            state = PullState.OPEN
        else:
            state = PullState.CLOSED
        return PullRequest(
            number=pr.number,
            state=state,
            head_sha=pr.head.sha,
            head_ref=pr.head.ref,
            base_sha=pr.base.sha,
            base_ref=pr.base.ref,
            author=pr.user.login,
            draft=bool(pr.draft),
            from_fork=from_fork,
            head_fetch_ref=f"refs/pull/{pr.number}/head",
            merge_ref=f"refs/pull/{pr.number}/merge",
            web_url=pr.html_url,
            title=pr.title or "",
        )

    def pull_request(self, number: int) -> PullRequest:
        with self._call_on("read pull requests", f"pull request #{number}"):
            return self._pull(self._repo.get_pull(number))

    def open_pull_requests(self) -> Sequence[PullRequest]:
        with self._call("read pull requests"):
            pulls = self._repo.get_pulls(state="open", sort="created", direction="asc")
            return [self._pull(pr) for pr in pulls]

    def pull_requests_for_commit(self, sha: str) -> Sequence[PullRequest]:
        with self._call("read pull requests"):
            return [self._pull(pr) for pr in self._repo.get_commit(sha).get_pulls()]

    # --- comments ------------------------------------------------------------------------------

    @staticmethod
    def _comment(comment: IssueComment) -> Comment:
        user = comment.user
        login = user.login if user is not None else ""
        return Comment(
            id=comment.id,
            author=login,
            author_is_bot=(user is not None and user.type == "Bot") or login.endswith("[bot]"),
            body=comment.body or "",
        )

    def comments(self, number: int) -> Sequence[Comment]:
        with self._call_on("read comments", f"pull request #{number}"):
            return [self._comment(c) for c in self._repo.get_issue(number).get_comments()]

    def _check_size(self, body: str) -> None:
        if len(body) > self.comment_limit:
            raise ForgeRefused(
                f"a comment of {len(body)} characters is over GitHub's limit of "
                f"{self.comment_limit}",
                status=422,
                repository=self.repository,
            )

    def create_comment(self, number: int, body: str) -> Comment:
        self._check_size(body)
        with self._call_on("comment", f"pull request #{number}"):
            return self._comment(self._repo.get_issue(number).create_comment(body))

    def edit_comment(self, number: int, comment_id: int, body: str) -> Comment:
        self._check_size(body)
        with self._call_on("edit a comment", f"comment {comment_id}"):
            comment = self._repo.get_issue(number).get_comment(comment_id)
            comment.edit(body)
            return self._comment(comment)

    def delete_comment(self, number: int, comment_id: int) -> None:
        try:
            with self._call_on("delete a comment", f"comment {comment_id}"):
                self._repo.get_issue(number).get_comment(comment_id).delete()
        except ForgeRefused as exc:
            if exc.status != 404:
                raise
            # Already gone (a concurrent run, a person): what we wanted.

    def react(self, number: int, comment_id: int, reaction: Reaction = "eyes") -> None:
        with self._call_on("react to a comment", f"comment {comment_id}"):
            self._repo.get_issue(number).get_comment(comment_id).create_reaction(reaction)

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
        with self._call("set a commit status"):
            commit = self._repo.get_commit(sha)
            if target_url:
                commit.create_status(
                    state.value,
                    target_url=target_url,
                    description=shorten(description, STATUS_DESCRIPTION_LIMIT),
                    context=context,
                )
            else:
                commit.create_status(
                    state.value,
                    description=shorten(description, STATUS_DESCRIPTION_LIMIT),
                    context=context,
                )

    def permission(self, login: str) -> Permission:
        try:
            with self._call("read a user's permission"):
                role = self._repo.get_collaborator_role_name(login)
                if role not in ROLES:  # a custom role: its base permission
                    role = self._repo.get_collaborator_permission(login)
        except ForgeAccessDenied as exc:
            if exc.status == 404 and self._repository_visible():
                return Permission.NONE  # no such user
            raise
        return ROLES.get(role, Permission.NONE)

    # --- issues ----------------------------------------------------------------------------------

    @staticmethod
    def _issue(issue: Any) -> Issue:
        return Issue(
            number=issue.number,
            open=issue.state == "open",
            title=issue.title or "",
            body=issue.body or "",
            web_url=issue.html_url or "",
            author=issue.user.login if issue.user is not None else "",
        )

    def find_issue(self, marker: Marker) -> Issue | None:
        me = self.identity().login.casefold()
        with self._call("read issues"):
            for issue in self._repo.get_issues(state="all", sort="created", direction="desc"):
                # author and body first: they are in the listed page, where ``pull_request`` is
                # only on pull requests, and asking a plain issue for it fetches the issue
                if issue.user.login.casefold() != me or not marker.in_body(issue.body or ""):
                    continue
                if issue.pull_request is None:
                    return self._issue(issue)
        return None

    def get_issue(self, number: int) -> Issue | None:
        try:
            with self._call("read issues"):
                issue = self._repo.get_issue(number)
                # GitHub answers a transferred issue with a redirect (which PyGithub follows)
                # to the issue in its new repository, under another number
                moved = issue.number != number or not (
                    issue.repository_url or ""
                ).casefold().endswith(f"/repos/{self.repository.casefold()}")
                if moved or issue.pull_request is not None:
                    return None
                return self._issue(issue)
        except ForgeAccessDenied as exc:
            # 404: deleted or moved where the bot cannot read it, unless the repository is gone
            if exc.status == 404 and self._repository_visible():
                return None
            raise
        except ForgeRefused as exc:
            if exc.status == 410:  # deleted
                return None
            raise

    def open_issue(self, *, title: str, body: str) -> Issue:
        self._check_size(body)
        with self._call("open an issue"):
            return self._issue(self._repo.create_issue(title=title, body=body))

    def update_issue(self, number: int, *, title: str, body: str) -> Issue:
        self._check_size(body)
        with self._call_on("edit an issue", f"issue #{number}"):
            issue = self._repo.get_issue(number)
            issue.edit(title=title, body=body)
            return self._issue(issue)

    def close_issue(self, number: int, *, comment: str | None = None) -> None:
        with self._call_on("edit an issue", f"issue #{number}"):
            issue = self._repo.get_issue(number)
            if comment:
                self._check_size(comment)
                issue.create_comment(comment)
            issue.edit(state="closed", state_reason="completed")

    def reopen_issue(self, number: int) -> None:
        with self._call_on("edit an issue", f"issue #{number}"):
            self._repo.get_issue(number).edit(state="open")

    def comment_on_issue(self, number: int, body: str) -> None:
        self._check_size(body)
        with self._call_on("edit an issue", f"issue #{number}"):
            self._repo.get_issue(number).create_comment(body)

    # --- git -----------------------------------------------------------------------------------

    def token(self) -> str:
        """The token git presents (an installation token is renewed by PyGithub when close to
        expiry). Never log it."""
        with self._call("fetch with git"):
            return str(self._auth.token)

    def git_access(self) -> GitAccess:
        clone_url = self.repository_info().clone_url
        return GitAccess(
            clone_url=clone_url, env=basic_auth_env(clone_url, "x-access-token", self.token())
        )
