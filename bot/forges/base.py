"""The forge protocol: what the jobs may ask of GitHub or GitLab, as plain values.

A :class:`Forge` is one repository on one forge, as the bot's credentials see it. The jobs get
one from :func:`bot.forges.connect` and never learn which forge is behind it: pull requests and
merge requests are both a :class:`PullRequest`, comments and notes both a :class:`Comment`,
GitHub's permissions and GitLab's access levels both a :class:`Permission`.

Every method may raise the :class:`~bot.errors.ForgeError` family: ``ForgeUnavailable``
(transient: retried already, worth retrying the job later) or a ``ForgePermanentError`` whose
message says what to fix. No value here holds a credential, except :class:`GitAccess`, which
hides it from ``repr`` and is meant for the git subprocess's environment only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from bot.forges.markers import Marker

Reaction = Literal["eyes", "+1", "-1", "rocket", "confused"]
"""Reactions the bot may add to a comment (each forge maps them onto its own names)."""


class PullState(enum.Enum):
    """Where a pull/merge request stands."""

    OPEN = "open"
    CLOSED = "closed"  # closed without merging
    MERGED = "merged"


class StatusState(enum.Enum):
    """A commit status, in GitHub's words (GitLab: pending/running → PENDING, success, failed →
    FAILURE, canceled → ERROR)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class Permission(enum.IntEnum):
    """A user's role on a repository, ordered. GitHub's roles map one to one; GitLab's access
    levels map Guest → READ, Reporter → TRIAGE, Developer → WRITE, Maintainer → MAINTAIN,
    Owner → ADMIN."""

    NONE = 0
    READ = 10
    TRIAGE = 20
    WRITE = 30
    MAINTAIN = 40
    ADMIN = 50

    @property
    def may_run_commands(self) -> bool:
        """``/sync`` and friends need write access or more."""
        return self >= Permission.WRITE


@dataclass(frozen=True)
class Identity:
    """Who the bot is on this forge: ``login`` as comments show it (``<slug>[bot]`` for a
    GitHub App), learned once per process."""

    login: str
    is_app: bool = False


@dataclass(frozen=True)
class RepoInfo:
    """A repository as the forge's API describes it (never as a payload claims)."""

    full_name: str
    default_branch: str
    #: The commit the default branch points at now (for the catch-up).
    default_branch_sha: str
    #: Where git fetches from, as the API answered it (``https://github.com/o/r.git``).
    clone_url: str
    web_url: str
    private: bool = True


@dataclass(frozen=True)
class PullRequest:
    """A pull request (GitHub) or merge request (GitLab; ``number`` is its iid)."""

    number: int
    state: PullState
    head_sha: str
    head_ref: str
    base_sha: str
    base_ref: str
    author: str
    draft: bool
    #: The head branch lives in another repository; its author may not be trusted with live
    #: cluster reads.
    from_fork: bool
    #: Ref in *this* repository holding the head commit, forks included (``refs/pull/N/head``,
    #: GitLab ``refs/merge-requests/N/head``).
    head_fetch_ref: str
    #: Ref of the forge's test merge of head into base (``refs/pull/N/merge``, GitLab
    #: ``refs/merge-requests/N/merge``); it may be missing or stale: see ``bot.checkouts``.
    merge_ref: str
    web_url: str = ""
    title: str = ""


@dataclass(frozen=True)
class Comment:
    """A comment on a pull request (GitLab: a note on a merge request)."""

    id: int
    author: str
    author_is_bot: bool
    body: str


@dataclass(frozen=True)
class Issue:
    """An issue (drift reports)."""

    number: int
    open: bool
    title: str
    body: str
    web_url: str = ""
    #: Who opened it (a login, compared with :meth:`Forge.identity` case-insensitively).
    author: str = ""


@dataclass(frozen=True)
class GitAccess:
    """What ``git`` needs to fetch from the repository: the clone URL the API answered and
    environment variables carrying the credential (``GIT_CONFIG_COUNT`` / ``http.extraHeader``),
    so it is never written into a URL, a remote or a file. ``repr`` shows no value of ``env``."""

    clone_url: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"GitAccess(clone_url={self.clone_url!r}, env=<{len(self.env)} variables>)"


@runtime_checkable
class Forge(Protocol):
    """One repository on one forge, through the bot's credentials."""

    #: ``"github"`` or ``"gitlab"``.
    provider: str
    #: ``owner/name`` (GitLab: the project's ``path_with_namespace``).
    repository: str
    #: Longest comment body the forge accepts, in characters (GitHub 65,536, GitLab 1,000,000).
    comment_limit: int

    def identity(self) -> Identity:
        """The bot's own account (cached per process)."""
        ...

    def repository_info(self) -> RepoInfo:
        """Default branch, its head, clone URL."""
        ...

    def pull_request(self, number: int) -> PullRequest:
        """One pull request as it is now."""
        ...

    def open_pull_requests(self) -> Sequence[PullRequest]:
        """Every open pull request, oldest first."""
        ...

    def pull_requests_for_commit(self, sha: str) -> Sequence[PullRequest]:
        """Pull requests the commit belongs to (merged ones included: a merge commit's PR)."""
        ...

    def comments(self, number: int) -> Sequence[Comment]:
        """Every comment on the pull request, oldest first."""
        ...

    def create_comment(self, number: int, body: str) -> Comment: ...

    def edit_comment(self, number: int, comment_id: int, body: str) -> Comment: ...

    def delete_comment(self, number: int, comment_id: int) -> None:
        """Deleting a comment that is already gone is not an error."""
        ...

    def react(self, number: int, comment_id: int, reaction: Reaction = "eyes") -> None:
        """Add the bot's reaction; reacting twice is not an error."""
        ...

    def set_status(
        self,
        sha: str,
        *,
        state: StatusState,
        context: str,
        description: str,
        target_url: str | None = None,
    ) -> None:
        """Set the commit status ``context`` on ``sha``. ``description`` longer than 140
        characters is shortened with an ellipsis (GitHub refuses longer ones)."""
        ...

    def permission(self, login: str) -> Permission:
        """``login``'s role on the repository (NONE for strangers)."""
        ...

    def find_issue(self, marker: Marker) -> Issue | None:
        """The bot's newest issue (open or closed) whose body starts with ``marker``'s tag.
        It lists the repository's issues (GitHub: all of them, newest first, 100 a page):
        as many requests as pages before it."""
        ...

    def get_issue(self, number: int) -> Issue | None:
        """Issue ``number`` as it is now, whoever opened it (one request); None when it is
        gone: deleted, transferred to another repository (GitHub; GitLab keeps a moved issue
        where it was, closed), or a pull request's number (GitHub)."""
        ...

    def open_issue(self, *, title: str, body: str) -> Issue: ...

    def update_issue(self, number: int, *, title: str, body: str) -> Issue: ...

    def close_issue(self, number: int, *, comment: str | None = None) -> None:
        """Comment (when given), then close."""
        ...

    def reopen_issue(self, number: int) -> None: ...

    def comment_on_issue(self, number: int, body: str) -> None:
        """Add a comment to an issue, open or closed (the drift issue's history: what was
        healed, when drift ended)."""
        ...

    def git_access(self) -> GitAccess:
        """Clone URL and credential environment for ``git fetch`` (a fresh token for Apps)."""
        ...


STATUS_DESCRIPTION_LIMIT = 140
"""GitHub refuses a longer commit status description (422)."""


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
