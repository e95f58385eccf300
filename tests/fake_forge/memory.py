"""An in-memory :class:`bot.forges.Forge` for fast unit tests of jobs.

Faithful to the protocol and to what the forges refuse: comments over ``comment_limit`` and
status descriptions over 140 characters are :class:`~bot.errors.ForgeRefused` (the GitHub
adapter shortens descriptions before sending, so does this), unknown pull requests and comments
are refused with 404, and ``fail_next`` makes the next calls raise ``ForgeUnavailable`` or any
other error, as an outage would. Tests set it up and read it back through plain attributes::

    forge = MemoryForge("acme/app")
    forge.add_pull_request(7, head_sha="a" * 40, base_sha="b" * 40, author="alice")
    forge.permissions["alice"] = Permission.WRITE
    ...  # run the job with forge=forge
    forge.comments_on(7), forge.latest_status("a" * 40, "gitops/preview")
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bot.errors import ForgeError, ForgeRefused, ForgeUnavailable
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
from bot.forges.markers import Marker


@dataclass(frozen=True)
class StatusRecord:
    state: StatusState
    context: str
    description: str
    target_url: str | None


@dataclass
class MemoryForge:
    """One repository held in dicts. ``calls`` lists every method called, in order."""

    repository: str = "acme/app"
    provider: str = "github"
    comment_limit: int = 65536
    me: Identity = field(default_factory=lambda: Identity("gitops-bot"))
    default_branch: str = "main"
    default_branch_sha: str = "0" * 40
    clone_url: str = "https://forge.invalid/acme/app.git"
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    #: Comments per pull request number, oldest first.
    posted: dict[int, list[Comment]] = field(default_factory=dict)
    reactions: list[tuple[int, str]] = field(default_factory=list)
    statuses: dict[str, list[StatusRecord]] = field(default_factory=dict)
    permissions: dict[str, Permission] = field(default_factory=dict)
    commit_pulls: dict[str, list[int]] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    #: The highest issue number given so far: a deleted issue's number is not given again.
    last_issue_number: int = 0
    issue_comments: dict[int, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    failures: list[ForgeError] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- set-up ------------------------------------------------------------------------------

    def add_pull_request(
        self,
        number: int,
        *,
        head_sha: str,
        base_sha: str,
        author: str = "alice",
        head_ref: str = "feature",
        base_ref: str = "main",
        state: PullState = PullState.OPEN,
        draft: bool = False,
        from_fork: bool = False,
    ) -> PullRequest:
        pr = PullRequest(
            number=number,
            state=state,
            head_sha=head_sha,
            head_ref=head_ref,
            base_sha=base_sha,
            base_ref=base_ref,
            author=author,
            draft=draft,
            from_fork=from_fork,
            head_fetch_ref=f"refs/pull/{number}/head",
            merge_ref=f"refs/pull/{number}/merge",
            web_url=f"https://forge.invalid/{self.repository}/pull/{number}",
        )
        self.pulls[number] = pr
        self.posted.setdefault(number, [])
        return pr

    def add_comment(self, number: int, author: str, body: str, *, bot: bool = False) -> Comment:
        """Someone else's comment."""
        comment = Comment(next(self._ids), author, bot or author.endswith("[bot]"), body)
        self.posted.setdefault(number, []).append(comment)
        return comment

    def fail_next(self, error: ForgeError | None = None, *, times: int = 1) -> None:
        """The next ``times`` calls raise ``error`` (default: GitHub unavailable)."""
        for _ in range(times):
            self.failures.append(error or ForgeUnavailable("the forge is down (MemoryForge)"))

    def comments_on(self, number: int) -> list[Comment]:
        return list(self.posted.get(number, []))

    def latest_status(self, sha: str, context: str) -> StatusRecord | None:
        found = [s for s in self.statuses.get(sha, []) if s.context == context]
        return found[-1] if found else None

    # --- the protocol ---------------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.failures:
            raise self.failures.pop(0)

    def _pr(self, number: int) -> PullRequest:
        if number not in self.pulls:
            raise ForgeRefused(f"pull request #{number} does not exist", status=404)
        return self.pulls[number]

    def identity(self) -> Identity:
        self._enter("identity")
        return self.me

    def repository_info(self) -> RepoInfo:
        self._enter("repository_info")
        return RepoInfo(
            full_name=self.repository,
            default_branch=self.default_branch,
            default_branch_sha=self.default_branch_sha,
            clone_url=self.clone_url,
            web_url=self.clone_url.removesuffix(".git"),
        )

    def pull_request(self, number: int) -> PullRequest:
        self._enter("pull_request")
        return self._pr(number)

    def open_pull_requests(self) -> Sequence[PullRequest]:
        self._enter("open_pull_requests")
        return [p for _, p in sorted(self.pulls.items()) if p.state is PullState.OPEN]

    def pull_requests_for_commit(self, sha: str) -> Sequence[PullRequest]:
        self._enter("pull_requests_for_commit")
        return [self.pulls[n] for n in self.commit_pulls.get(sha, [])]

    def comments(self, number: int) -> Sequence[Comment]:
        self._enter("comments")
        self._pr(number)
        return list(self.posted.get(number, []))

    def _check_size(self, body: str) -> None:
        if len(body) > self.comment_limit:
            raise ForgeRefused(
                f"body is too long (maximum is {self.comment_limit} characters)", status=422
            )

    def create_comment(self, number: int, body: str) -> Comment:
        self._enter("create_comment")
        self._pr(number)
        self._check_size(body)
        comment = Comment(next(self._ids), self.me.login, True, body)
        self.posted.setdefault(number, []).append(comment)
        return comment

    def _find(self, number: int, comment_id: int) -> tuple[list[Comment], int]:
        listed = self.posted.get(number, [])
        for index, comment in enumerate(listed):
            if comment.id == comment_id:
                return listed, index
        raise ForgeRefused(f"comment {comment_id} does not exist", status=404)

    def edit_comment(self, number: int, comment_id: int, body: str) -> Comment:
        self._enter("edit_comment")
        self._check_size(body)
        listed, index = self._find(number, comment_id)
        listed[index] = replace(listed[index], body=body)
        return listed[index]

    def delete_comment(self, number: int, comment_id: int) -> None:
        self._enter("delete_comment")
        try:
            listed, index = self._find(number, comment_id)
        except ForgeRefused:
            return
        del listed[index]

    def react(self, number: int, comment_id: int, reaction: Reaction = "eyes") -> None:
        self._enter("react")
        self._find(number, comment_id)
        if (comment_id, reaction) not in self.reactions:
            self.reactions.append((comment_id, reaction))

    def set_status(
        self,
        sha: str,
        *,
        state: StatusState,
        context: str,
        description: str,
        target_url: str | None = None,
    ) -> None:
        self._enter("set_status")
        record = StatusRecord(
            state, context, shorten(description, STATUS_DESCRIPTION_LIMIT), target_url
        )
        self.statuses.setdefault(sha, []).append(record)

    def permission(self, login: str) -> Permission:
        self._enter("permission")
        return self.permissions.get(login, Permission.NONE)

    def find_issue(self, marker: Marker) -> Issue | None:
        self._enter("find_issue")
        for _, issue in sorted(self.issues.items(), reverse=True):
            if issue.author.casefold() == self.me.login.casefold() and marker.in_body(issue.body):
                return issue
        return None

    def open_issue(self, *, title: str, body: str) -> Issue:
        self._enter("open_issue")
        self._check_size(body)
        number = max([*self.issues, *self.pulls, self.last_issue_number]) + 1
        self.last_issue_number = number
        self.issues[number] = Issue(number, True, title, body, author=self.me.login)
        return self.issues[number]

    def get_issue(self, number: int) -> Issue | None:
        self._enter("get_issue")
        return self.issues.get(number)

    def update_issue(self, number: int, *, title: str, body: str) -> Issue:
        self._enter("update_issue")
        self._check_size(body)
        self.issues[number] = replace(self._issue(number), title=title, body=body)
        return self.issues[number]

    def _issue(self, number: int) -> Issue:
        if number not in self.issues:
            raise ForgeRefused(f"issue #{number} does not exist", status=404)
        return self.issues[number]

    def close_issue(self, number: int, *, comment: str | None = None) -> None:
        self._enter("close_issue")
        issue = self._issue(number)
        if comment:
            self.issue_comments.setdefault(number, []).append(comment)
        self.issues[number] = replace(issue, open=False)

    def comment_on_issue(self, number: int, body: str) -> None:
        self._enter("comment_on_issue")
        self._check_size(body)
        self._issue(number)
        self.issue_comments.setdefault(number, []).append(body)

    def reopen_issue(self, number: int) -> None:
        self._enter("reopen_issue")
        self.issues[number] = replace(self._issue(number), open=True)

    def git_access(self) -> GitAccess:
        self._enter("git_access")
        return GitAccess(clone_url=self.clone_url, env={})
