"""A fake GitLab: a stateful local HTTP server with the subset of GitLab's REST API v4 the bot
uses, git over smart HTTP (the real ``git http-backend``), project and group webhooks, and
fault injection, driven by the real python-gitlab.

It is held to GitLab's contract (``gitlab_contract.py``: GitLab's OpenAPI v2 description where
it covers an operation, the operation's documentation page otherwise, named beside each
route below) and refuses what GitLab refuses beyond the schema too: a note over 1,000,000
characters, a commit status moved from ``running`` to ``running`` ("Cannot transition status
via :run from :running"), a status on a commit no branch contains, a write without the role or
without a token's ``api`` scope, a private project to a non-member (404, as GitLab hides it).
Lists are paginated as GitLab paginates (``per_page`` default 20, at most 100; ``X-Page``,
``X-Total``, ``X-Next-Page``, ``Link``). Tests drive it through its Python API and read back
what the bot did::

    with FakeGitLab(tmp_path) as gl:
        token = gl.token_for("gitops-bot")                  # scopes=("api",)
        gl.create_project("acme/app", files={"app/cm.yaml": "..."})
        gl.add_member("acme", "gitops-bot", DEVELOPER)      # a group role, inherited
        gl.commit("acme/app", "feature", {"app/cm.yaml": "..."})
        iid = gl.open_merge_request("acme/app", source_branch="feature", author="alice")
        ...  # GITLAB_URL=gl.url GITLAB_TOKEN=token
        gl.notes("acme/app", iid), gl.latest_status("acme/app", sha, "gitops/preview")

With ``gl.add_webhook(url, token=...)`` it delivers ``Merge Request Hook``, ``Note Hook`` and
``Push Hook`` as GitLab does (``gitlab_hooks.py``), the bot's own notes included.

Standalone: ``python -m tests.fake_forge --gitlab --port 9000`` (see ``__main__.py``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from tests.fake_forge import gitlab_hooks, gitstore
from tests.fake_forge.contract import Match
from tests.fake_forge.gitlab_contract import gitlab_contract
from tests.fake_forge.hooks import Delivery
from tests.fake_forge.server import Answer, FakeForge, Fault, ForgeHandler, Recorded

GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 15, 20, 30, 40, 50
NOTE_LIMIT = 1_000_000
DESCRIPTION_LIMIT = 1_048_576
#: Emoji GitLab knows (a few; an unknown name is refused as GitLab refuses it).
KNOWN_EMOJI = frozenset(
    {"eyes", "thumbsup", "thumbsdown", "rocket", "confused", "tada", "heart", "smile"}
)
#: Commit status transitions: the event each state is reached by, and the states it may
#: leave (GitLab's CommitStatus state machine, external statuses).
STATUS_EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "success",
    "failed": "drop",
    "canceled": "cancel",
    "skipped": "skip",
}
TRANSITIONS = {
    "pending": {"running", "success", "failed", "canceled", "skipped"},
    "running": {"success", "failed", "canceled"},
}
CHALLENGE = [("WWW-Authenticate", 'Basic realm="GitLab"')]
INSUFFICIENT_SCOPE = {
    "error": "insufficient_scope",
    "error_description": "The request requires higher privileges than provided by the access "
    "token.",
    "scope": "api",
}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class User:
    id: int
    username: str
    name: str
    bot: bool = False
    state: str = "active"


@dataclass
class Token:
    value: str
    user_id: int
    scopes: frozenset[str]
    expires_at: datetime | None = None
    revoked: bool = False


@dataclass
class Group:
    id: int
    full_path: str
    members: dict[int, int] = field(default_factory=dict)  # user id → access level

    @property
    def name(self) -> str:
        return self.full_path.rsplit("/", 1)[-1]


@dataclass
class MergeRequest:
    id: int
    iid: int
    project: Project
    source_project: Project
    source_branch: str
    target_branch: str
    title: str
    description: str
    author_id: int
    head_sha: str
    #: The target branch head GitLab diffed against (``diff_refs.start_sha``).
    start_sha: str
    state: str = "opened"
    draft: bool = False
    merge_commit_sha: str | None = None
    #: What ``refs/merge-requests/N/merge`` points at (None: no merge ref, a conflict).
    test_merge_sha: str | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)


@dataclass
class IssueRec:
    id: int
    iid: int
    title: str
    description: str
    author_id: int
    state: str = "opened"
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    closed_at: datetime | None = None


@dataclass
class Award:
    id: int
    name: str
    user_id: int
    created_at: datetime = field(default_factory=now)


@dataclass
class Note:
    id: int
    project_id: int
    noteable_type: str  # "MergeRequest" or "Issue"
    noteable_iid: int
    noteable_id: int
    author_id: int
    body: str
    system: bool = False
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    awards: list[Award] = field(default_factory=list)
    discussion_id: str = field(default_factory=lambda: uuid.uuid4().hex + "00000000")


@dataclass
class StatusRec:
    id: int
    sha: str
    ref: str
    name: str
    status: str
    description: str | None
    target_url: str | None
    author_id: int
    pipeline_id: int
    created_at: datetime = field(default_factory=now)


@dataclass
class Project:
    id: int
    path: str  # path_with_namespace
    default_branch: str
    visibility: str
    git_dir: Path
    owner_id: int | None = None  # a personal namespace's user
    description: str = ""
    members: dict[int, int] = field(default_factory=dict)
    mrs: dict[int, MergeRequest] = field(default_factory=dict)
    issues: dict[int, IssueRec] = field(default_factory=dict)
    statuses: list[StatusRec] = field(default_factory=list)
    forked_from: Project | None = None
    next_mr_iid: int = 1
    next_issue_iid: int = 1

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def namespace_path(self) -> str:
        return self.path.rsplit("/", 1)[0]

    @property
    def namespace_name(self) -> str:
        return self.namespace_path.rsplit("/", 1)[-1].replace("-", " ").title()


@dataclass
class Caller:
    """Who is asking: ``user`` None for an anonymous request."""

    user: User | None
    token: Token | None


class FakeGitLab(FakeForge):
    """The fake GitLab. ``url`` is the instance root (``GITLAB_URL``): the API is under
    ``/api/v4``, git under ``/<namespace>/<project>.git``."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.contract = gitlab_contract()
        super().__init__(root, host=host, port=port)
        self.violations = self.contract.violations
        self.version = "17.9.0"
        self.users: dict[str, User] = {}
        self.users_by_id: dict[int, User] = {}
        self.tokens: dict[str, Token] = {}
        self.groups: dict[str, Group] = {}
        self.projects: dict[str, Project] = {}
        self.projects_by_id: dict[int, Project] = {}
        self.notes_by_id: dict[int, Note] = {}
        #: Longest note GitLab accepts (1,000,000); tests may lower it.
        self.note_limit = NOTE_LIMIT
        self.description_limit = DESCRIPTION_LIMIT
        #: While True, pushes do not recompute ``refs/merge-requests/N/merge`` (GitLab does it
        #: when it next checks mergeability).
        self.merge_refs_stale = False
        #: A personal access token of the bot's user, when a fixture made one.
        self.bot_token: str | None = None
        self.hooks: list[gitlab_hooks.GitLabHook] = []
        self.deliveries: list[Delivery] = []
        self._ids = itertools.count(1000)

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def api_url(self) -> str:
        return self.url + "/api/v4"

    def _is_git(self, path: str) -> bool:
        return ".git/" in path and not path.startswith("/api/")

    # --- the test API: users, tokens, groups, projects -----------------------------------------

    def add_user(self, username: str, *, bot: bool = False, name: str | None = None) -> User:
        with self._lock:
            user = self.users.get(username.lower())
            if user is None:
                user = User(next(self._ids), username, name or username.title(), bot)
                self.users[username.lower()] = user
                self.users_by_id[user.id] = user
            return user

    def token_for(
        self,
        username: str,
        *,
        scopes: tuple[str, ...] = ("api",),
        expires_at: datetime | None = None,
    ) -> str:
        """A new personal access token of ``username``."""
        user = self.add_user(username)
        value = "glpat-" + secrets.token_urlsafe(15)
        self.tokens[value] = Token(value, user.id, frozenset(scopes), expires_at)
        return value

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def project_access_token(
        self, path: str, *, level: int = DEVELOPER, scopes: tuple[str, ...] = ("api",)
    ) -> tuple[User, str]:
        """A project access token: GitLab makes a bot user ``project_<id>_bot_<hex>`` with
        ``level`` on the project."""
        project = self.project(path)
        bot = self.add_user(f"project_{project.id}_bot_{secrets.token_hex(16)}", bot=True)
        project.members[bot.id] = level
        value = "glpat-" + secrets.token_urlsafe(15)
        self.tokens[value] = Token(value, bot.id, frozenset(scopes))
        return bot, value

    def create_group(self, full_path: str) -> Group:
        with self._lock:
            parts = full_path.split("/")
            group = None
            for i in range(1, len(parts) + 1):
                prefix = "/".join(parts[:i])
                group = self.groups.get(prefix.lower())
                if group is None:
                    group = self.groups[prefix.lower()] = Group(next(self._ids), prefix)
            assert group is not None
            return group

    def create_project(
        self,
        path: str,
        *,
        default_branch: str = "main",
        visibility: str = "private",
        files: Mapping[str, str | bytes | None] | None = None,
        owner: str | None = None,
    ) -> Project:
        """A project in group ``path``'s namespace (created with its parents), or in the
        personal namespace of ``owner`` (``owner/name``)."""
        assert visibility in ("private", "internal", "public"), visibility
        namespace = path.rsplit("/", 1)[0]
        owner_id = None
        if owner is not None:
            assert namespace.lower() == owner.lower()
            owner_id = self.add_user(owner).id
        else:
            self.create_group(namespace)
        *namespace_dirs, name = path.split("/")
        git_dir = self.git_root.joinpath(*namespace_dirs, f"{name}.git")
        gitstore.init_bare(git_dir, default_branch)
        project = Project(
            next(self._ids), path, default_branch, visibility, git_dir, owner_id=owner_id
        )
        with self._lock:
            self.projects[path.lower()] = project
            self.projects_by_id[project.id] = project
        gitstore.commit(
            git_dir,
            default_branch,
            files or {"README.md": f"# {project.name}\n"},
            message="Initial commit",
        )
        return project

    def fork_project(self, path: str, into: str) -> Project:
        """Fork ``path`` into the personal namespace of user ``into`` (who owns the fork)."""
        parent = self.project(path)
        fork = self.create_project(
            f"{into}/{parent.name}",
            default_branch=parent.default_branch,
            visibility=parent.visibility,
            owner=into,
        )
        gitstore.git(
            fork.git_dir, "fetch", "--quiet", str(parent.git_dir), "+refs/heads/*:refs/heads/*"
        )
        fork.forked_from = parent
        return fork

    def add_member(self, path: str, username: str, level: int) -> None:
        """Give ``username`` ``level`` on the group or project at ``path`` (a group's role is
        inherited by its subgroups' projects)."""
        user = self.add_user(username)
        with self._lock:
            target = self.groups.get(path.lower()) or self.projects.get(path.lower())
            assert target is not None, f"no group or project {path}"
            target.members[user.id] = level

    def project(self, path: str) -> Project:
        return self.projects[path.lower()]

    def access_level(self, project: Project, user: User | None) -> int:
        """``user``'s effective role: the highest of the project's and its groups'."""
        if user is None:
            return 0
        if project.owner_id == user.id:
            return OWNER
        levels = [project.members.get(user.id, 0)]
        parts = project.namespace_path.split("/")
        for i in range(1, len(parts) + 1):
            group = self.groups.get("/".join(parts[:i]).lower())
            if group is not None:
                levels.append(group.members.get(user.id, 0))
        return max(levels)

    # --- the test API: git and merge requests ---------------------------------------------------

    def commit(
        self,
        path: str,
        branch: str,
        files: Mapping[str, str | bytes | None],
        *,
        message: str = "change",
        start: str | None = None,
        pusher: str | None = None,
    ) -> str:
        """Commit on ``branch`` (created from ``start``, default the default branch) and update
        the merge requests it is the source or target of, as a push would (hooks included)."""
        project = self.project(path)
        with self._lock:
            parents = None
            if gitstore.rev(project.git_dir, f"refs/heads/{branch}") is None:
                origin = gitstore.rev(
                    project.git_dir, start or f"refs/heads/{project.default_branch}"
                )
                parents = [origin] if origin else []
            before = gitstore.rev(project.git_dir, f"refs/heads/{branch}") or "0" * 40
            sha = gitstore.commit(project.git_dir, branch, files, message=message, parents=parents)
            actor = self.add_user(pusher) if pusher else self._owner_user(project)
            push = gitlab_hooks.push_payload(
                self,
                project,
                ref=f"refs/heads/{branch}",
                before=before,
                after=sha,
                pusher=actor,
                shas=[sha],
            )
            updates = self._after_push(project, branch, before, actor)
        self._emit(project, "push_events", push)
        for target, payload in updates:
            self._emit(target, "merge_requests_events", payload)
        return sha

    def open_merge_request(
        self,
        path: str,
        *,
        source_branch: str,
        target_branch: str | None = None,
        author: str = "alice",
        title: str = "A change",
        description: str = "",
        draft: bool = False,
        source_project: str | None = None,
    ) -> int:
        """Open an MR from ``source_branch`` (of ``source_project``, a fork, when given)."""
        project = self.project(path)
        source = self.project(source_project) if source_project else project
        user = self.add_user(author)
        with self._lock:
            head = gitstore.rev(source.git_dir, f"refs/heads/{source_branch}")
            assert head, f"no branch {source_branch} in {source.path}"
            target = target_branch or project.default_branch
            mr = MergeRequest(
                id=next(self._ids),
                iid=project.next_mr_iid,
                project=project,
                source_project=source,
                source_branch=source_branch,
                target_branch=target,
                title=("Draft: " + title) if draft else title,
                description=description,
                author_id=user.id,
                head_sha=head,
                start_sha=gitstore.rev(project.git_dir, f"refs/heads/{target}") or "",
                draft=draft,
            )
            project.next_mr_iid += 1
            project.mrs[mr.iid] = mr
            self._refresh_refs(mr, merge=True)
            payload = gitlab_hooks.merge_request_payload(self, mr, "open", user)
        self._emit(project, "merge_requests_events", payload)
        return mr.iid

    def refresh_merge_ref(self, path: str, iid: int) -> None:
        self._refresh_refs(self.project(path).mrs[iid], merge=True)

    def mark_ready(self, path: str, iid: int) -> None:
        project = self.project(path)
        mr = project.mrs[iid]
        before = mr.title
        mr.draft = False
        mr.title = mr.title.removeprefix("Draft: ")
        mr.updated_at = now()
        changes = {
            "draft": {"previous": True, "current": False},
            "title": {"previous": before, "current": mr.title},
        }
        actor = self.users_by_id[mr.author_id]
        self._emit(
            project,
            "merge_requests_events",
            gitlab_hooks.merge_request_payload(self, mr, "update", actor, changes=changes),
        )

    def merge_merge_request(self, path: str, iid: int, *, by: str | None = None) -> str:
        project = self.project(path)
        with self._lock:
            mr = project.mrs[iid]
            base = gitstore.rev(project.git_dir, f"refs/heads/{mr.target_branch}")
            assert base
            merged = gitstore.test_merge(project.git_dir, base, mr.head_sha)
            assert merged, "the merge request conflicts"
            gitstore.git(project.git_dir, "update-ref", f"refs/heads/{mr.target_branch}", merged)
            mr.state, mr.merge_commit_sha, mr.updated_at = "merged", merged, now()
            actor = self.add_user(by) if by else self.users_by_id[mr.author_id]
            merged_payload = gitlab_hooks.merge_request_payload(self, mr, "merge", actor)
            push = gitlab_hooks.push_payload(
                self,
                project,
                ref=f"refs/heads/{mr.target_branch}",
                before=base,
                after=merged,
                pusher=actor,
                shas=[mr.head_sha, merged],
            )
            for other in project.mrs.values():
                if other.state == "opened" and other.target_branch == mr.target_branch:
                    self._refresh_refs(other, merge=not self.merge_refs_stale)
        self._emit(project, "merge_requests_events", merged_payload)
        self._emit(project, "push_events", push)
        return merged

    def close_merge_request(self, path: str, iid: int) -> None:
        project = self.project(path)
        mr = project.mrs[iid]
        mr.state, mr.updated_at = "closed", now()
        self._emit(
            project,
            "merge_requests_events",
            gitlab_hooks.merge_request_payload(self, mr, "close", self.users_by_id[mr.author_id]),
        )

    def reopen_merge_request(self, path: str, iid: int) -> None:
        project = self.project(path)
        mr = project.mrs[iid]
        mr.state, mr.updated_at = "opened", now()
        self._refresh_refs(mr, merge=not self.merge_refs_stale)
        self._emit(
            project,
            "merge_requests_events",
            gitlab_hooks.merge_request_payload(self, mr, "reopen", self.users_by_id[mr.author_id]),
        )

    def comment_as(self, username: str, path: str, iid: int, body: str) -> int:
        """A note by ``username`` on merge request ``iid`` (a ``Note Hook`` follows)."""
        user = self.add_user(username)
        project = self.project(path)
        note = self._add_note(project, "MergeRequest", iid, user, body, emit=False)
        self._emit(project, "note_events", gitlab_hooks.note_payload(self, note))
        return note.id

    def add_system_note(self, path: str, iid: int, body: str) -> int:
        project = self.project(path)
        author = self.users_by_id[project.mrs[iid].author_id]
        return self._add_note(project, "MergeRequest", iid, author, body, system=True).id

    def add_webhook(
        self,
        url: str,
        *,
        token: str,
        scope: str | None = None,
        events: tuple[str, ...] = ("merge_requests_events", "note_events", "push_events"),
    ) -> gitlab_hooks.GitLabHook:
        """Deliver ``events`` of the projects under ``scope`` (a project or a group path; None:
        every project) to ``url`` with ``X-Gitlab-Token: token``."""
        hook = gitlab_hooks.GitLabHook(url, token, scope, events)
        self.hooks.append(hook)
        return hook

    def redeliver(self, delivery_id: str) -> Delivery:
        """Send a delivery again with the same ``Idempotency-Key``, as "Resend request" does."""
        original = next(d for d in self.deliveries if d.id == delivery_id)
        hook = next(h for h in self.hooks if h.url == original.url)
        self._queue_delivery(hook, original, wait=True)
        return original

    # --- the test API: reading what the bot did --------------------------------------------------

    def notes(self, path: str, iid: int, *, system: bool = False) -> list[Note]:
        """The notes on merge request ``iid``, oldest first (system notes only when asked)."""
        project = self.project(path)
        return sorted(
            (
                n
                for n in self.notes_by_id.values()
                if n.project_id == project.id
                and n.noteable_type == "MergeRequest"
                and n.noteable_iid == iid
                and (system or not n.system)
            ),
            key=lambda n: n.id,
        )

    def issue_notes(self, path: str, iid: int) -> list[Note]:
        project = self.project(path)
        return sorted(
            (
                n
                for n in self.notes_by_id.values()
                if n.project_id == project.id
                and n.noteable_type == "Issue"
                and n.noteable_iid == iid
            ),
            key=lambda n: n.id,
        )

    def statuses(self, path: str, sha: str) -> list[StatusRec]:
        return [s for s in self.project(path).statuses if s.sha == sha]

    def latest_status(self, path: str, sha: str, name: str) -> StatusRec | None:
        found = [s for s in self.statuses(path, sha) if s.name == name]
        return found[-1] if found else None

    def issues(self, path: str) -> list[IssueRec]:
        return list(self.project(path).issues.values())

    def delete_issue(self, path: str, iid: int) -> None:
        """An owner deletes the issue: it leaves the lists and its GET answers 404, as on
        GitLab; its iid is not given again."""
        del self.project(path).issues[iid]

    def commit_info(self, project: Project, sha: str) -> dict[str, Any]:
        out = gitstore.git(
            project.git_dir,
            "show",
            "-s",
            "--format=%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B",
            sha,
        )
        parents, an, ae, ad, cn, ce, cd, message = out.split("\x00", 7)
        message = message.rstrip("\n") + "\n"
        return {
            "id": sha,
            "short_id": sha[:8],
            "created_at": cd,
            "parent_ids": parents.split(),
            "title": message.split("\n", 1)[0],
            "message": message,
            "author_name": an,
            "author_email": ae,
            "authored_date": ad,
            "committer_name": cn,
            "committer_email": ce,
            "committed_date": cd,
            "trailers": {},
            "extended_trailers": {},
            "web_url": f"{self.url}/{project.path}/-/commit/{sha}",
        }

    def commit_files(self, project: Project, sha: str) -> dict[str, list[str]]:
        out = gitstore.git(
            project.git_dir, "diff-tree", "--root", "--no-commit-id", "-r", "--name-status", sha
        )
        changed: dict[str, list[str]] = {"added": [], "modified": [], "removed": []}
        for line in out.splitlines():
            status, _, name = line.partition("\t")
            key = {"A": "added", "D": "removed"}.get(status[:1], "modified")
            changed[key].append(name)
        return changed

    # --- internals ------------------------------------------------------------------------------

    def _owner_user(self, project: Project) -> User:
        if project.owner_id is not None:
            return self.users_by_id[project.owner_id]
        return self.add_user("root")

    def _after_push(
        self, project: Project, branch: str, before: str, actor: User
    ) -> list[tuple[Project, dict[str, Any]]]:
        """Update the MRs ``branch`` of ``project`` is the source or target of; the MR hooks
        to send (to each MR's target project)."""
        updates = []
        for target in list(self.projects.values()):
            for mr in target.mrs.values():
                if mr.state != "opened":
                    continue
                is_source = mr.source_project is project and mr.source_branch == branch
                is_target = mr.project is project and mr.target_branch == branch
                if is_source:
                    old, old_time = mr.head_sha, mr.updated_at
                    head = gitstore.rev(project.git_dir, f"refs/heads/{branch}")
                    assert head
                    mr.head_sha, mr.updated_at = head, now()
                    mr.start_sha = (
                        gitstore.rev(target.git_dir, f"refs/heads/{mr.target_branch}") or ""
                    )
                    self._refresh_refs(mr, merge=not self.merge_refs_stale)
                    self._add_note(
                        target,
                        "MergeRequest",
                        mr.iid,
                        actor,
                        f"added 1 commit\n\n* {head[:8]} - change",
                        system=True,
                        emit=False,
                    )
                    updates.append(
                        (
                            target,
                            gitlab_hooks.merge_request_payload(
                                self,
                                mr,
                                "update",
                                actor,
                                oldrev=old,
                                changes={
                                    "updated_at": {
                                        "previous": gitlab_hooks.hook_time(old_time),
                                        "current": gitlab_hooks.hook_time(mr.updated_at),
                                    }
                                },
                            ),
                        )
                    )
                elif is_target:
                    self._refresh_refs(mr, merge=not self.merge_refs_stale)
        return updates

    def _refresh_refs(self, mr: MergeRequest, *, merge: bool) -> None:
        target = mr.project
        head_ref = f"refs/merge-requests/{mr.iid}/head"
        if mr.source_project is not target:
            # GitLab keeps a fork MR's commits in the target project under its head ref.
            gitstore.git(
                target.git_dir,
                "fetch",
                "--quiet",
                "--no-tags",
                str(mr.source_project.git_dir),
                f"+{mr.head_sha}:{head_ref}",
            )
        else:
            gitstore.git(target.git_dir, "update-ref", head_ref, mr.head_sha)
        if not merge:
            return
        base = gitstore.rev(target.git_dir, f"refs/heads/{mr.target_branch}")
        merged = gitstore.test_merge(target.git_dir, base, mr.head_sha) if base else None
        mr.test_merge_sha = merged
        merge_ref = f"refs/merge-requests/{mr.iid}/merge"
        if merged:
            gitstore.git(target.git_dir, "update-ref", merge_ref, merged)
        else:  # no merge ref for a conflicting MR
            gitstore.git(target.git_dir, "update-ref", "-d", merge_ref, check=False)

    def _add_note(
        self,
        project: Project,
        noteable_type: str,
        iid: int,
        author: User,
        body: str,
        *,
        system: bool = False,
        emit: bool = True,
    ) -> Note:
        noteable = project.mrs[iid] if noteable_type == "MergeRequest" else project.issues[iid]
        note = Note(
            id=next(self._ids),
            project_id=project.id,
            noteable_type=noteable_type,
            noteable_iid=iid,
            noteable_id=noteable.id,
            author_id=author.id,
            body=body,
            system=system,
        )
        self.notes_by_id[note.id] = note
        if emit and not system:  # the bot's own notes are delivered too, as on GitLab
            self._emit(project, "note_events", gitlab_hooks.note_payload(self, note), wait=False)
        return note

    def _emit(
        self, project: Project, event: str, payload: dict[str, Any], *, wait: bool = True
    ) -> None:
        """Queue a delivery to each hook covering ``project``; by default wait until it was
        answered (the test API), not when a request handler emits (the bot's own notes)."""
        for hook in self.hooks:
            if event not in hook.events or not hook.covers(project.path):
                continue
            delivery = Delivery(
                id=str(uuid.uuid4()),
                event=gitlab_hooks.EVENTS[event],
                payload=payload,
                url=hook.url,
            )
            self.deliveries.append(delivery)
            self._queue_delivery(hook, delivery, wait=wait)

    def _deliver(self, hook: Any, delivery: Any) -> None:
        gitlab_hooks.send(self, hook, delivery)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_Handler):
            forge = fake

        return Handler

    # --- authentication -------------------------------------------------------------------------

    def _token(self, value: str | None) -> Token | None:
        if not value:
            return None
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return None
        if token.expires_at is not None and token.expires_at <= datetime.now(UTC):
            return None
        return token


# --- the HTTP side --------------------------------------------------------------------------------


def _message(status: int, text: str | None = None) -> Answer:
    """GitLab's ``{"message": "404 Project Not Found"}``."""
    return Answer(status, {"message": text or f"{status} {HTTPStatus(status).phrase}"})


def not_found(what: str | None = None) -> Answer:
    return _message(404, f"404 {what} Not Found" if what else "404 Not found")


def forbidden() -> Answer:
    return _message(403, "403 Forbidden")


class _Handler(ForgeHandler):
    forge: FakeGitLab
    server_version = "nginx"

    def _common_headers(self) -> list[tuple[str, str]]:
        return [("X-Gitlab-Meta", json.dumps({"correlation_id": uuid.uuid4().hex}))]

    def _fault(self, fault: Fault) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers: list[tuple[str, str]] = []
        retry_after = fault.retry_after
        if fault.status == 429 and retry_after is None:
            retry_after = 60  # GitLab's throttles always say how long: the period's rest
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        if fault.status == 429:
            # Rack::Attack's throttled answer, as GitLab sends it.
            reset = int(time.time()) + 60
            headers += [
                ("Content-Type", "text/plain"),
                ("RateLimit-Name", "throttle_authenticated_api"),
                ("RateLimit-Limit", "60"),
                ("RateLimit-Observed", "61"),
                ("RateLimit-Remaining", "0"),
                ("RateLimit-Reset", str(reset)),
            ]
            return 429, b"Retry later\n", headers
        if fault.status == 500:
            headers.append(("Content-Type", "application/json"))
            return 500, json.dumps({"message": "500 Internal Server Error"}).encode(), headers
        phrase = HTTPStatus(fault.status).phrase
        headers.append(("Content-Type", "text/html"))
        page = f"<html><body><h1>{fault.status} {phrase}</h1></body></html>\n"
        return fault.status, page.encode(), headers

    # --- git -----------------------------------------------------------------------------------

    def _git_access(
        self, path: str, record: Recorded
    ) -> tuple[int, bytes, list[tuple[str, str]]] | str:
        fake = self.forge
        project = fake.projects.get(path.lstrip("/").split(".git/", 1)[0].lower())
        hidden = (
            b"The project you were looking for could not be found or you don't have "
            b"permission to view it.\n"
        )
        if project is None:
            return 404, hidden, []
        auth = record.headers.get("authorization", "")
        token: Token | None = None
        if auth.lower().startswith("basic "):
            try:
                _, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                password = ""
            token = fake._token(password)
            if token is None:
                return 401, b"HTTP Basic: Access denied\n", CHALLENGE
        if token is None:
            if project.visibility != "public":
                return 401, b"HTTP Basic: Access denied\n", CHALLENGE
            return ""
        if not token.scopes & {"api", "read_api", "read_repository", "write_repository"}:
            return 403, b"HTTP Basic: Access denied\n", []
        user = fake.users_by_id[token.user_id]
        level = fake.access_level(project, user)
        if project.visibility == "private" and level < GUEST:
            return 404, hidden, []
        if project.visibility == "private" and level < REPORTER:
            return 403, b"You are not allowed to download code from this project.\n", []
        return user.username

    # --- the REST API --------------------------------------------------------------------------

    def _api(
        self, method: str, path: str, query: str, body: bytes, record: Recorded
    ) -> tuple[int, Any, dict[str, str]]:
        fake = self.forge
        if not path.startswith("/api/v4/"):
            raise Answer(404, b"Not Found\n", {"Content-Type": "text/plain"})
        params = dict(parse_qsl(query, keep_blank_values=True))
        headers = record.headers
        value = headers.get("private-token") or params.pop("private_token", None)
        authorization = headers.get("authorization", "")
        if not value and authorization.lower().startswith("bearer "):
            value = authorization[7:].strip()
        token = fake._token(value)
        if value and token is None:
            raise _message(401, "401 Unauthorized")
        caller = Caller(fake.users_by_id[token.user_id] if token else None, token)
        match = fake.contract.check(
            method, path, params, body, headers.get("content-type", "application/json")
        )
        op = match.operation
        if token is not None:
            _check_scope(token, method, op.path)
        handler = ROUTES.get((op.method, op.path))
        if handler is None:
            raise Answer(404, {"error": f"fake forge: {op.method} {op.path} is not implemented"})
        with fake._lock:
            return handler(self, caller, match)

    def _page(self, items: list[Any], match: Match) -> tuple[int, list[Any], dict[str, str]]:
        """GitLab's offset pagination and its headers."""
        per_page = min(max(int(match.query.get("per_page", 20)), 1), 100)
        page = max(int(match.query.get("page", 1)), 1)
        total = len(items)
        pages = max((total + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        raw = urlsplit(self.path)
        base_query = {k: v for k, v in parse_qsl(raw.query, keep_blank_values=True) if k != "page"}

        def link(n: int) -> str:
            return f"{self.forge.url}{raw.path}?" + urlencode({**base_query, "page": str(n)})

        links = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links += [f'<{link(1)}>; rel="first"', f'<{link(pages)}>; rel="last"']
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(total),
            "X-Total-Pages": str(pages),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),
        }
        return 200, chunk, headers

    # --- lookups and permissions ----------------------------------------------------------------

    def _project(self, caller: Caller, match: Match, *, need: int = 0) -> Project:
        """The project ``id`` names (numeric or URL-encoded path); 404 when the caller may not
        see it, 403 when they see it but lack the role ``need``."""
        fake = self.forge
        ident = str(match.path_params["id"])
        project = (
            fake.projects_by_id.get(int(ident))
            if ident.isdigit()
            else fake.projects.get(ident.lower())
        )
        if project is None:
            raise not_found("Project")
        level = fake.access_level(project, caller.user)
        if project.visibility == "private" and level < GUEST:
            raise not_found("Project")
        if project.visibility == "internal" and caller.user is None:
            raise not_found("Project")
        if level < need and not (need <= REPORTER and project.visibility == "public"):
            raise forbidden()
        return project

    def _mr(self, caller: Caller, match: Match, *, need: int = REPORTER) -> MergeRequest:
        project = self._project(caller, match, need=need)
        mr = project.mrs.get(match.path_params["merge_request_iid"])
        if mr is None:
            raise not_found()
        return mr

    def _mr_note(self, caller: Caller, match: Match, *, need: int = REPORTER) -> Note:
        mr = self._mr(caller, match, need=need)
        note = self.forge.notes_by_id.get(match.path_params["note_id"])
        if note is None or note.noteable_type != "MergeRequest" or note.noteable_id != mr.id:
            raise not_found("Note")
        return note

    def _level(self, caller: Caller, project: Project) -> int:
        return self.forge.access_level(project, caller.user)

    def _need_user(self, caller: Caller) -> User:
        if caller.user is None:
            raise _message(401, "401 Unauthorized")
        return caller.user

    # --- JSON shapes ------------------------------------------------------------------------------

    def _user_basic(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "username": user.username,
            "public_email": None,
            "name": user.name,
            "state": user.state,
            "locked": False,
            "avatar_url": f"{self.forge.url}/uploads/-/system/user/avatar/{user.id}/avatar.png",
            "web_url": f"{self.forge.url}/{user.username}",
        }

    def _project_json(self, project: Project, caller: Caller) -> dict[str, Any]:
        fake = self.forge
        web = f"{fake.url}/{project.path}"
        namespace = fake.groups.get(project.namespace_path.lower())
        level = self._level(caller, project)
        data: dict[str, Any] = {
            "id": project.id,
            "description": project.description,
            "name": project.name,
            "name_with_namespace": f"{project.namespace_name} / {project.name}",
            "path": project.name,
            "path_with_namespace": project.path,
            "created_at": iso(now()),
            "default_branch": project.default_branch,
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": f"git@{fake.host}:{project.path}.git",
            "http_url_to_repo": f"{web}.git",
            "web_url": web,
            "readme_url": f"{web}/-/blob/{project.default_branch}/README.md",
            "forks_count": 0,
            "star_count": 0,
            "last_activity_at": iso(now()),
            "namespace": {
                "id": namespace.id if namespace else project.owner_id,
                "name": project.namespace_name,
                "path": project.namespace_path.rsplit("/", 1)[-1],
                "kind": "group" if namespace else "user",
                "full_path": project.namespace_path,
                "parent_id": None,
                "web_url": f"{fake.url}/{'groups/' if namespace else ''}{project.namespace_path}",
            },
            "visibility": project.visibility,
            "empty_repo": False,
            "archived": False,
            "merge_requests_enabled": True,
            "issues_enabled": True,
            "permissions": {
                "project_access": {"access_level": level} if level else None,
                "group_access": None,
            },
        }
        if project.forked_from is not None:
            data["forked_from_project"] = {
                "id": project.forked_from.id,
                "path_with_namespace": project.forked_from.path,
                "web_url": f"{fake.url}/{project.forked_from.path}",
            }
        return data

    def _mr_json(self, mr: MergeRequest, *, single: bool = False) -> dict[str, Any]:
        fake = self.forge
        project = mr.project
        author = fake.users_by_id[mr.author_id]
        data: dict[str, Any] = {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": iso(mr.created_at),
            "updated_at": iso(mr.updated_at),
            "merged_by": None,
            "merge_user": None,
            "merged_at": iso(mr.updated_at) if mr.state == "merged" else None,
            "closed_by": None,
            "closed_at": iso(mr.updated_at) if mr.state == "closed" else None,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "author": self._user_basic(author),
            "assignees": [],
            "assignee": None,
            "reviewers": [],
            "source_project_id": mr.source_project.id,
            "target_project_id": project.id,
            "labels": [],
            "draft": mr.draft,
            "imported": False,
            "imported_from": "none",
            "work_in_progress": mr.draft,
            "milestone": None,
            "merge_when_pipeline_succeeds": False,
            "merge_status": "can_be_merged" if mr.test_merge_sha else "cannot_be_merged",
            "detailed_merge_status": "mergeable" if mr.test_merge_sha else "conflict",
            "sha": mr.head_sha,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": None,
            "discussion_locked": None,
            "should_remove_source_branch": None,
            "force_remove_source_branch": False,
            "prepared_at": iso(mr.created_at),
            "reference": f"!{mr.iid}",
            "references": {
                "short": f"!{mr.iid}",
                "relative": f"!{mr.iid}",
                "full": f"{project.path}!{mr.iid}",
            },
            "web_url": f"{fake.url}/{project.path}/-/merge_requests/{mr.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "squash": False,
            "squash_on_merge": False,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": mr.test_merge_sha is None and mr.state == "opened",
            "blocking_discussions_resolved": True,
        }
        if single:
            base = ""
            if mr.start_sha:
                base = gitstore.git(
                    project.git_dir, "merge-base", mr.start_sha, mr.head_sha, check=False
                ).strip()
            data.update(
                {
                    "subscribed": False,
                    "changes_count": None,
                    "latest_build_started_at": None,
                    "latest_build_finished_at": None,
                    "first_deployed_to_production_at": None,
                    "pipeline": None,
                    "head_pipeline": None,
                    "diff_refs": {
                        "base_sha": base or None,
                        "head_sha": mr.head_sha,
                        "start_sha": mr.start_sha or None,
                    },
                    "merge_error": None,
                    "first_contribution": False,
                    "user": {"can_merge": False},
                }
            )
        return data

    def _note_json(self, note: Note) -> dict[str, Any]:
        author = self.forge.users_by_id[note.author_id]
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "attachment": None,
            "author": self._user_basic(author),
            "created_at": iso(note.created_at),
            "updated_at": iso(note.updated_at),
            "system": note.system,
            "noteable_id": note.noteable_id,
            "noteable_type": note.noteable_type,
            "project_id": note.project_id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "imported": False,
            "imported_from": "none",
            "noteable_iid": note.noteable_iid,
            "commands_changes": {},
        }

    def _award_json(self, award: Award, note: Note) -> dict[str, Any]:
        return {
            "id": award.id,
            "name": award.name,
            "user": self._user_basic(self.forge.users_by_id[award.user_id]),
            "created_at": iso(award.created_at),
            "updated_at": iso(award.created_at),
            "awardable_id": note.id,
            "awardable_type": "Note",
            "url": None,
        }

    def _status_json(self, status: StatusRec) -> dict[str, Any]:
        return {
            "id": status.id,
            "sha": status.sha,
            "ref": status.ref,
            "status": status.status,
            "name": status.name,
            "target_url": status.target_url,
            "description": status.description,
            "created_at": iso(status.created_at),
            "started_at": iso(status.created_at) if status.status != "pending" else None,
            "finished_at": None
            if status.status in ("pending", "running")
            else iso(status.created_at),
            "allow_failure": False,
            "coverage": None,
            "pipeline_id": status.pipeline_id,
            "author": self._user_basic(self.forge.users_by_id[status.author_id]),
        }

    def _issue_json(self, project: Project, issue: IssueRec) -> dict[str, Any]:
        fake = self.forge
        web = f"{fake.url}/{project.path}/-/issues/{issue.iid}"
        return {
            "id": issue.id,
            "iid": issue.iid,
            "project_id": project.id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "closed_by": None,
            "labels": [],
            "milestone": None,
            "assignees": [],
            "author": self._user_basic(fake.users_by_id[issue.author_id]),
            "type": "ISSUE",
            "assignee": None,
            "user_notes_count": 0,
            "merge_requests_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "due_date": None,
            "confidential": False,
            "discussion_locked": None,
            "issue_type": "issue",
            "web_url": web,
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "task_completion_status": {"count": 0, "completed_count": 0},
            "references": {
                "short": f"#{issue.iid}",
                "relative": f"#{issue.iid}",
                "full": f"{project.path}#{issue.iid}",
            },
        }


def _check_scope(token: Token, method: str, path: str) -> None:
    """``api`` may do anything; ``read_api`` only read; ``read_user`` only read users."""
    if "api" in token.scopes:
        return
    reading = method in ("GET", "HEAD")
    if reading and "read_api" in token.scopes:
        return
    if reading and "read_user" in token.scopes and path in ("/api/v4/user", "/api/v4/users"):
        return
    raise Answer(403, dict(INSUFFICIENT_SCOPE))


Result = tuple[int, Any, dict[str, str]]
Route = Callable[[_Handler, Caller, Match], Result]
ROUTES: dict[tuple[str, str], Route] = {}


def route(method: str, path: str) -> Callable[[Route], Route]:
    """Register the handler of one operation (``path`` as GitLab's OpenAPI description writes
    it; the documentation page is in ``gitlab_contract.py``)."""

    def register(fn: Route) -> Route:
        ROUTES[(method, path)] = fn
        return fn

    return register


_P = "/api/v4/projects/{id}"
_MR = _P + "/merge_requests/{merge_request_iid}"


# docs: users/#get-the-current-user
@route("GET", "/api/v4/user")
def _current_user(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    data = h._user_basic(user)
    data.update(
        {
            "created_at": iso(now()),
            "bio": "",
            "location": "",
            "bot": user.bot,
            "email": f"{user.username}@example.invalid",
            "is_admin": False,
            "two_factor_enabled": False,
            "external": False,
            "private_profile": False,
        }
    )
    return 200, data, {}


# docs: personal_access_tokens/#get-details-on-a-personal-access-token (the `self` form)
@route("GET", "/api/v4/personal_access_tokens/self")
def _token_self(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    token = caller.token
    assert token is not None
    return (
        200,
        {
            "id": int(hashlib.sha256(token.value.encode()).hexdigest()[:8], 16),
            "name": "gitops-bot",
            "revoked": token.revoked,
            "created_at": iso(now()),
            "description": None,
            "scopes": sorted(token.scopes),
            "user_id": user.id,
            "last_used_at": iso(now()),
            "active": not token.revoked,
            "expires_at": token.expires_at.date().isoformat() if token.expires_at else None,
        },
        {},
    )


# docs: users/#list-users
@route("GET", "/api/v4/users")
def _list_users(h: _Handler, caller: Caller, match: Match) -> Result:
    users = sorted(h.forge.users_by_id.values(), key=lambda u: -u.id)
    wanted = match.query.get("username")
    if wanted is not None:
        users = [u for u in users if u.username.lower() == wanted.lower()]
    search = match.query.get("search")
    if search:
        users = [u for u in users if search.lower() in (u.username + u.name).lower()]
    return h._page([h._user_basic(u) for u in users], match)


# docs: projects/#get-a-single-project
@route("GET", _P)
def _get_project(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match)
    return 200, h._project_json(project, caller), {}


# openapi: getApiV4ProjectsIdRepositoryBranchesBranch
@route("GET", _P + "/repository/branches/{branch}")
def _get_branch(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match, need=REPORTER)
    name = str(match.path_params["branch"])
    sha = gitstore.rev(project.git_dir, f"refs/heads/{name}")
    if sha is None:
        raise not_found("Branch")
    return (
        200,
        {
            "name": name,
            "commit": h.forge.commit_info(project, sha),
            "merged": False,
            "protected": name == project.default_branch,
            "developers_can_push": False,
            "developers_can_merge": False,
            "can_push": h._level(caller, project) >= DEVELOPER,
            "default": name == project.default_branch,
            "web_url": f"{h.forge.url}/{project.path}/-/tree/{quote(name)}",
        },
        {},
    )


_MR_ORDER = {
    "created_at": lambda mr: (mr.created_at, mr.id),
    "updated_at": lambda mr: (mr.updated_at, mr.id),
    "title": lambda mr: (mr.title, mr.id),
}


# docs: merge_requests/#list-project-merge-requests
@route("GET", _P + "/merge_requests")
def _list_mrs(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match, need=REPORTER)
    state = match.query.get("state", "all")
    mrs = [mr for mr in project.mrs.values() if state == "all" or mr.state == state]
    for key in ("source_branch", "target_branch"):
        if key in match.query:
            mrs = [mr for mr in mrs if getattr(mr, key) == match.query[key]]
    order = _MR_ORDER.get(match.query.get("order_by", "created_at"), _MR_ORDER["created_at"])
    mrs.sort(key=order, reverse=match.query.get("sort", "desc") == "desc")
    return h._page([h._mr_json(mr) for mr in mrs], match)


# docs: merge_requests/#get-single-mr
@route("GET", _MR)
def _get_mr(h: _Handler, caller: Caller, match: Match) -> Result:
    return 200, h._mr_json(h._mr(caller, match), single=True), {}


# docs: notes/#list-all-merge-request-notes
@route("GET", _MR + "/notes")
def _list_mr_notes(h: _Handler, caller: Caller, match: Match) -> Result:
    mr = h._mr(caller, match)
    notes = [
        n
        for n in h.forge.notes_by_id.values()
        if n.noteable_type == "MergeRequest" and n.noteable_id == mr.id
    ]
    field_name = match.query.get("order_by", "created_at")
    notes.sort(
        key=lambda n: (getattr(n, field_name), n.id),
        reverse=match.query.get("sort", "desc") == "desc",
    )
    return h._page([h._note_json(n) for n in notes], match)


def _check_note(h: _Handler, body: str, *, failed_to_save: bool = False) -> None:
    if len(body) > h.forge.note_limit:
        errors = f'{{:note=>["is too long (maximum is {h.forge.note_limit} characters)"]}}'
        prefix = "Failed to save note " if failed_to_save else "Note "
        raise _message(400, f"400 Bad request - {prefix}{errors}")
    if not body.strip():
        raise _message(400, '400 Bad request - Note {:note=>["can\'t be blank"]}')


# docs: notes/#create-new-merge-request-note
@route("POST", _MR + "/notes")
def _create_mr_note(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    mr = h._mr(caller, match)
    body = str(match.body["body"])
    _check_note(h, body)
    note = h.forge._add_note(mr.project, "MergeRequest", mr.iid, user, body)
    return 201, h._note_json(note), {}


# docs: notes/#get-single-merge-request-note
@route("GET", _MR + "/notes/{note_id}")
def _get_mr_note(h: _Handler, caller: Caller, match: Match) -> Result:
    return 200, h._note_json(h._mr_note(caller, match)), {}


def _may_edit(h: _Handler, caller: Caller, note: Note) -> None:
    user = h._need_user(caller)
    project = h.forge.projects_by_id[note.project_id]
    if note.system or (note.author_id != user.id and h._level(caller, project) < MAINTAINER):
        raise forbidden()


# docs: notes/#modify-existing-merge-request-note
@route("PUT", _MR + "/notes/{note_id}")
def _update_mr_note(h: _Handler, caller: Caller, match: Match) -> Result:
    note = h._mr_note(caller, match)
    _may_edit(h, caller, note)
    if "body" in match.body:
        body = str(match.body["body"])
        _check_note(h, body, failed_to_save=True)
        note.body = body
        note.updated_at = now()
    return 200, h._note_json(note), {}


# docs: notes/#delete-a-merge-request-note
@route("DELETE", _MR + "/notes/{note_id}")
def _delete_mr_note(h: _Handler, caller: Caller, match: Match) -> Result:
    note = h._mr_note(caller, match)
    _may_edit(h, caller, note)
    del h.forge.notes_by_id[note.id]
    return 204, None, {}


# openapi: getApiV4ProjectsIdMergeRequestsMergeRequestIidNotesNoteIdAwardEmoji
@route("GET", _MR + "/notes/{note_id}/award_emoji")
def _list_awards(h: _Handler, caller: Caller, match: Match) -> Result:
    note = h._mr_note(caller, match)
    return h._page([h._award_json(a, note) for a in note.awards], match)


# openapi: postApiV4ProjectsIdMergeRequestsMergeRequestIidNotesNoteIdAwardEmoji
@route("POST", _MR + "/notes/{note_id}/award_emoji")
def _award(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    note = h._mr_note(caller, match)
    name = str(match.body["name"])
    # AwardEmojis::AddService refusals come back as not_found!("Award Emoji <reason>").
    if name not in KNOWN_EMOJI:
        raise not_found("Award Emoji Name is not a valid emoji name")
    if any(a.name == name and a.user_id == user.id for a in note.awards):
        raise not_found("Award Emoji Name has already been taken")
    award = Award(next(h.forge._ids), name, user.id)
    note.awards.append(award)
    return 201, h._award_json(award, note), {}


def _commit_mrs(project: Project, sha: str) -> list[MergeRequest]:
    found = []
    for mr in project.mrs.values():
        if mr.head_sha == sha or mr.merge_commit_sha == sha:
            found.append(mr)
            continue
        base = gitstore.rev(project.git_dir, f"refs/heads/{mr.target_branch}") or ""
        if (
            mr.state == "opened"
            and _is_ancestor(project, sha, mr.head_sha)
            and not (base and _is_ancestor(project, sha, base))
        ):
            found.append(mr)
    return found


def _is_ancestor(project: Project, sha: str, of: str) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(project.git_dir), "merge-base", "--is-ancestor", sha, of],
        env=gitstore.git_env(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    return proc.returncode == 0


# openapi: getApiV4ProjectsIdRepositoryCommitsShaMergeRequests
@route("GET", _P + "/repository/commits/{sha}/merge_requests")
def _commit_merge_requests(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match, need=REPORTER)
    sha = str(match.path_params["sha"])
    resolved = gitstore.rev(project.git_dir, sha)
    if resolved is None:
        raise not_found("Commit")
    mrs = _commit_mrs(project, resolved)
    if "state" in match.query:
        mrs = [mr for mr in mrs if mr.state == match.query["state"]]
    return h._page([h._mr_json(mr) for mr in mrs], match)


def _status_ref(project: Project, sha: str) -> str | None:
    """``branch_names_contains(sha).first``: the ref GitLab files a status without one under."""
    out = gitstore.git(
        project.git_dir,
        "for-each-ref",
        "--contains",
        sha,
        "--format=%(refname:lstrip=2)",
        "refs/heads",
    )
    names = out.split()
    if project.default_branch in names:
        return project.default_branch
    return sorted(names)[0] if names else None


# openapi: postApiV4ProjectsIdStatusesSha
@route("POST", _P + "/statuses/{sha}")
def _create_status(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    project = h._project(caller, match, need=DEVELOPER)
    sha = gitstore.rev(project.git_dir, str(match.path_params["sha"]))
    if sha is None or len(str(match.path_params["sha"])) < 7:
        raise not_found("Commit")
    body = match.body
    ref = body.get("ref") or _status_ref(project, sha)
    if ref is None:
        raise not_found("References for commit")
    name = body.get("name") or body.get("context") or "default"
    state = str(body["state"])
    active = [
        s
        for s in project.statuses
        if s.sha == sha and s.ref == ref and s.name == name and s.status in TRANSITIONS
    ]
    if active:
        existing = active[-1]
        if state not in TRANSITIONS[existing.status]:
            event = STATUS_EVENTS[state]
            raise _message(
                400,
                f"Cannot transition status via :{event} from :{existing.status} (Reason(s): "
                f'Status cannot transition via "{event}")',
            )
        existing.status = state
        if "description" in body:
            existing.description = body["description"]
        if "target_url" in body:
            existing.target_url = body["target_url"]
        # Appended again so the list reads in update order.
        project.statuses.remove(existing)
        project.statuses.append(existing)
        return 201, h._status_json(existing), {}
    status = StatusRec(
        id=next(h.forge._ids),
        sha=sha,
        ref=str(ref),
        name=str(name),
        status=state,
        description=body.get("description"),
        target_url=body.get("target_url"),
        author_id=user.id,
        pipeline_id=next(h.forge._ids),
    )
    project.statuses.append(status)
    return 201, h._status_json(status), {}


# openapi: getApiV4ProjectsIdRepositoryCommitsShaStatuses
@route("GET", _P + "/repository/commits/{sha}/statuses")
def _list_statuses(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match, need=REPORTER)
    sha = gitstore.rev(project.git_dir, str(match.path_params["sha"])) or ""
    found = [s for s in project.statuses if s.sha == sha]
    if "ref" in match.query:
        found = [s for s in found if s.ref == match.query["ref"]]
    if "name" in match.query:
        found = [s for s in found if s.name == match.query["name"]]
    return h._page([h._status_json(s) for s in found], match)


# docs: members/#get-a-member-of-a-group-or-project-including-inherited-and-invited-members
@route("GET", _P + "/members/all/{user_id}")
def _member(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match)
    user = h.forge.users_by_id.get(match.path_params["user_id"])
    level = h.forge.access_level(project, user) if user else 0
    if user is None or level == 0:
        raise not_found()
    data = h._user_basic(user)
    data.update(
        {
            "access_level": level,
            "created_at": iso(now()),
            "created_by": None,
            "expires_at": None,
            "group_saml_identity": None,
            "membership_state": "active",
        }
    )
    return 200, data, {}


# docs: issues/#list-project-issues
@route("GET", _P + "/issues")
def _list_issues(h: _Handler, caller: Caller, match: Match) -> Result:
    project = h._project(caller, match, need=GUEST)
    state = match.query.get("state", "all")
    issues = [i for i in project.issues.values() if state == "all" or i.state == state]
    author = match.query.get("author_username")
    if author is not None:
        issues = [
            i for i in issues if h.forge.users_by_id[i.author_id].username.lower() == author.lower()
        ]
    field_name = match.query.get("order_by", "created_at")
    if field_name not in ("created_at", "updated_at", "title"):
        field_name = "created_at"
    issues.sort(
        key=lambda i: (getattr(i, field_name), i.id),
        reverse=match.query.get("sort", "desc") == "desc",
    )
    return h._page([h._issue_json(project, i) for i in issues], match)


def _check_description(h: _Handler, description: str) -> None:
    if len(description) > h.forge.description_limit:
        limit = h.forge.description_limit
        raise Answer(
            400, {"message": {"description": [f"is too long (maximum is {limit} characters)"]}}
        )


# docs: issues/#new-issue
@route("POST", _P + "/issues")
def _create_issue(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    project = h._project(caller, match, need=GUEST)
    description = str(match.body.get("description") or "")
    _check_description(h, description)
    issue = IssueRec(
        id=next(h.forge._ids),
        iid=project.next_issue_iid,
        title=str(match.body["title"]),
        description=description,
        author_id=user.id,
    )
    project.next_issue_iid += 1
    project.issues[issue.iid] = issue
    return 201, h._issue_json(project, issue), {}


def _issue(h: _Handler, caller: Caller, match: Match) -> tuple[Project, IssueRec]:
    project = h._project(caller, match, need=GUEST)
    issue = project.issues.get(match.path_params["issue_iid"])
    if issue is None:
        raise not_found()
    return project, issue


# docs: issues/#single-project-issue
@route("GET", _P + "/issues/{issue_iid}")
def _get_issue(h: _Handler, caller: Caller, match: Match) -> Result:
    project, issue = _issue(h, caller, match)
    return 200, h._issue_json(project, issue), {}


# docs: issues/#edit-an-issue
@route("PUT", _P + "/issues/{issue_iid}")
def _update_issue(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    project, issue = _issue(h, caller, match)
    if issue.author_id != user.id and h._level(caller, project) < REPORTER:
        raise forbidden()
    body = match.body
    if not body:
        raise Answer(
            400,
            {
                "error": "title, description, state_event, confidential, labels, "
                "discussion_locked are missing, at least one parameter must be provided"
            },
        )
    if "title" in body:
        issue.title = str(body["title"])
    if "description" in body:
        _check_description(h, str(body["description"] or ""))
        issue.description = str(body["description"] or "")
    event = body.get("state_event")
    if event == "close" and issue.state == "opened":
        issue.state, issue.closed_at = "closed", now()
    elif event == "reopen" and issue.state == "closed":
        issue.state, issue.closed_at = "opened", None
    issue.updated_at = now()
    return 200, h._issue_json(project, issue), {}


# docs: notes/#create-new-issue-note
@route("POST", _P + "/issues/{issue_iid}/notes")
def _create_issue_note(h: _Handler, caller: Caller, match: Match) -> Result:
    user = h._need_user(caller)
    project, issue = _issue(h, caller, match)
    body = str(match.body["body"])
    _check_note(h, body)
    note = h.forge._add_note(project, "Issue", issue.iid, user, body)
    return 201, h._note_json(note), {}
