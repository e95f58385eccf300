"""A fake GitHub: a stateful local HTTP server with the subset of GitHub's REST API the bot uses,
git over smart HTTP, GitHub App installation tokens, and fault injection.

It is held to GitHub's contract (``contract.py`` checks every API request against GitHub's
OpenAPI description) and refuses what GitHub refuses beyond the schema too (a status
description over 140 characters, a comment over 65,536, a write without the permission). Tests
drive it through its Python API and read back what the bot posted::

    with FakeGitHub(tmp_path) as gh:
        gh.add_user("gitops-bot"); token = gh.token_for("gitops-bot")
        gh.create_repo("acme/app", files={"app/cm.yaml": "..."})
        gh.set_permission("acme/app", "gitops-bot", "write")
        sha = gh.commit("acme/app", "feature", {"app/cm.yaml": "..."})
        number = gh.open_pull_request("acme/app", head="feature", author="alice")
        ...  # GITHUB_API_URL=gh.url GITHUB_TOKEN=token
        gh.comments("acme/app", number)

With ``gh.add_webhook(url, secret=...)`` it also delivers signed webhooks to the bot as GitHub
does (``hooks.py``): pushes, pull requests opened / synchronized / closed / ready for review,
comments (the bot's own included), and ``gh.redeliver(id)``.

Standalone: ``python -m tests.fake_forge --port 9000`` (see ``__main__.py``).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fake_forge import gitstore, hooks
from tests.fake_forge.app_manifests import ManifestFlow
from tests.fake_forge.contract import Contract, Match
from tests.fake_forge.server import Answer, FakeForge, Fault, ForgeHandler, Recorded

COMMENT_LIMIT = 65536
DESCRIPTION_LIMIT = 140
ROLES = ("none", "read", "triage", "write", "maintain", "admin")
#: What a GitHub App needs for the bot (the README lists the same).
DEFAULT_APP_PERMISSIONS = {
    "metadata": "read",
    "contents": "read",
    "pull_requests": "write",
    "issues": "write",
    "statuses": "write",
}
#: Operation → (App permission, level) it needs; PATs need the repository role instead.
NEEDS: dict[str, tuple[str, str]] = {
    "repos/get": ("metadata", "read"),
    "repos/get-branch": ("metadata", "read"),
    "pulls/list": ("pull_requests", "read"),
    "pulls/get": ("pull_requests", "read"),
    "repos/list-pull-requests-associated-with-commit": ("pull_requests", "read"),
    "issues/list-comments": ("pull_requests", "read"),
    "issues/create-comment": ("pull_requests", "write"),
    "issues/get-comment": ("pull_requests", "read"),
    "issues/update-comment": ("pull_requests", "write"),
    "issues/delete-comment": ("pull_requests", "write"),
    "reactions/create-for-issue-comment": ("pull_requests", "write"),
    "repos/create-commit-status": ("statuses", "write"),
    "repos/list-commit-statuses-for-ref": ("statuses", "read"),
    "repos/get-collaborator-permission-level": ("metadata", "read"),
    "issues/list-for-repo": ("issues", "read"),
    "issues/create": ("issues", "write"),
    "issues/get": ("issues", "read"),
    "issues/update": ("issues", "write"),
}
#: Repository role a personal token's user needs for each write.
ROLE_NEEDED = {"repos/create-commit-status": "write"}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class User:
    login: str
    id: int
    type: str = "User"


@dataclass
class Comment:
    id: int
    repo: str
    number: int
    author: str
    body: str
    created_at: datetime
    updated_at: datetime
    reactions: list[tuple[str, str]] = field(default_factory=list)  # (login, content)


@dataclass
class Status:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime


@dataclass
class Pull:
    number: int
    title: str
    author: str
    head_ref: str
    head_sha: str
    base_ref: str
    fork_owner: str | None
    draft: bool
    state: str = "open"
    merged: bool = False
    merge_sha: str | None = None
    #: What ``refs/pull/N/merge`` points at (None: no merge ref, the PR conflicts).
    test_merge_sha: str | None = None
    created_at: datetime = field(default_factory=now)


@dataclass
class IssueRec:
    number: int
    title: str
    body: str
    author: str
    state: str = "open"
    state_reason: str | None = None
    created_at: datetime = field(default_factory=now)


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    default_branch: str
    private: bool
    git_dir: Path
    roles: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, Pull] = field(default_factory=dict)
    issues: dict[int, IssueRec] = field(default_factory=dict)
    #: Numbers of issues deleted by an admin: GitHub answers 410 Gone for them.
    deleted_issues: set[int] = field(default_factory=set)
    #: Issues transferred away: number → (repository, number there); GitHub redirects (301).
    transferred_issues: dict[int, tuple[str, int]] = field(default_factory=dict)
    statuses: dict[str, list[Status]] = field(default_factory=dict)
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class App:
    id: int
    slug: str
    name: str
    owner: str
    private_key_pem: str
    public_key: Any
    permissions: dict[str, str]
    events: list[str] = field(default_factory=lambda: ["pull_request", "issue_comment", "push"])


@dataclass
class Installation:
    id: int
    app_id: int
    account: str
    repos: set[str]


@dataclass
class Token:
    value: str
    login: str | None = None  # a personal token
    installation: int | None = None  # an installation token
    expires_at: datetime | None = None


class FakeGitHub(FakeForge):
    """The fake GitHub. ``url`` is both the API root (``GITHUB_API_URL``) and the git host."""

    def __init__(self, root: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.contract = Contract()
        super().__init__(root, host=host, port=port)
        # One list: requests GitHub's contract refuses and crashes of the fake alike.
        self.violations = self.contract.violations
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}
        self.comments_by_id: dict[int, Comment] = {}
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, Token] = {}
        #: Lifetime of new installation tokens (GitHub: one hour).
        self.token_ttl = timedelta(hours=1)
        #: While True, pushes do not recompute ``refs/pull/N/merge`` (GitHub does it lazily).
        self.merge_refs_stale = False
        #: A personal token of the bot's user, when a fixture made one.
        self.bot_token: str | None = None
        #: Webhooks (``add_webhook``) and every delivery sent, in order.
        self.hooks: list[tuple[str | None, hooks.Hook]] = []
        self.deliveries: list[hooks.Delivery] = []
        self.shapes = Shapes()
        self.shapes.forge = self
        #: The GitHub App manifest flow (app_manifests.py).
        self.manifests = ManifestFlow(self)
        self._ids = itertools.count(1000)

    # --- the test API: set-up ----------------------------------------------------------------

    def add_user(self, login: str, *, type: str = "User") -> User:
        with self._lock:
            user = self.users.get(login.lower())
            if user is None:
                user = self.users[login.lower()] = User(login, next(self._ids), type)
            return user

    def token_for(self, login: str) -> str:
        """A new personal access token of ``login``."""
        self.add_user(login)
        value = "ghp_" + secrets.token_hex(18)
        self.tokens[value] = Token(value, login=login)
        return value

    def create_app(
        self,
        slug: str,
        *,
        permissions: Mapping[str, str] | None = None,
        owner: str = "acme",
        events: list[str] | None = None,
    ) -> App:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        app = App(
            id=next(self._ids),
            slug=slug,
            name=slug.replace("-", " ").title(),
            owner=owner,
            private_key_pem=pem,
            public_key=key.public_key(),
            permissions=dict(permissions or DEFAULT_APP_PERMISSIONS),
        )
        if events is not None:
            app.events = list(events)
        self.apps[app.id] = app
        self.add_user(f"{slug}[bot]", type="Bot")
        self.add_user(owner, type="Organization")
        return app

    def install(self, app: App, repos: list[str], *, account: str | None = None) -> int:
        """Install ``app`` on ``repos``; returns the installation id deliveries carry."""
        installation = Installation(
            id=next(self._ids),
            app_id=app.id,
            account=account or repos[0].split("/")[0],
            repos={r.lower() for r in repos},
        )
        self.installations[installation.id] = installation
        return installation.id

    def create_repo(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        private: bool = True,
        files: Mapping[str, str | bytes | None] | None = None,
    ) -> Repo:
        owner, name = full_name.split("/")
        self.add_user(owner)
        git_dir = self.git_root / owner / f"{name}.git"
        gitstore.init_bare(git_dir, default_branch)
        repo = Repo(owner, name, next(self._ids), default_branch, private, git_dir)
        repo.roles[owner.lower()] = "admin"
        self.repos[full_name.lower()] = repo
        gitstore.commit(
            git_dir,
            default_branch,
            files or {"README.md": "# " + name + "\n"},
            message="initial commit",
        )
        return repo

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        assert role in ROLES, role
        self.add_user(login)
        self.repo(full_name).roles[login.lower()] = role

    def repo(self, full_name: str) -> Repo:
        return self.repos[full_name.lower()]

    def commit(
        self,
        full_name: str,
        branch: str,
        files: Mapping[str, str | bytes | None],
        *,
        message: str = "change",
        start: str | None = None,
    ) -> str:
        """Commit on ``branch`` (created from ``start``, default the default branch) and update
        the pull requests it is the head or base of, as a push would."""
        repo = self.repo(full_name)
        with self._lock:
            parents = None
            if gitstore.rev(repo.git_dir, f"refs/heads/{branch}") is None:
                origin = gitstore.rev(repo.git_dir, start or f"refs/heads/{repo.default_branch}")
                parents = [origin] if origin else []
            before = gitstore.rev(repo.git_dir, f"refs/heads/{branch}") or "0" * 40
            sha = gitstore.commit(repo.git_dir, branch, files, message=message, parents=parents)
            synchronized = []
            for pull in repo.pulls.values():
                if pull.state != "open":
                    continue
                if pull.head_ref == branch and pull.fork_owner is None:
                    synchronized.append((pull, pull.head_sha))
                    pull.head_sha = sha
                if pull.head_ref == branch or pull.base_ref == branch:
                    self._refresh_refs(repo, pull, merge=not self.merge_refs_stale)
            pusher = repo.owner
            push = hooks.push_payload(
                self, repo, ref=f"refs/heads/{branch}", before=before, after=sha, pusher=pusher
            )
            events = [
                (
                    "pull_request",
                    hooks.pull_request_payload(self, repo, pull, "synchronize", before=old),
                )
                for pull, old in synchronized
            ]
        self._emit(repo, "push", push)
        for event, payload in events:
            self._emit(repo, event, payload)
        return sha

    def open_pull_request(
        self,
        full_name: str,
        *,
        head: str,
        base: str | None = None,
        author: str = "alice",
        title: str = "A change",
        draft: bool = False,
        fork_owner: str | None = None,
    ) -> int:
        """Open a PR from branch ``head`` (for a fork PR, ``fork_owner`` names the fork's owner
        and ``head`` is a branch of this repository standing in for the fork's)."""
        repo = self.repo(full_name)
        self.add_user(author)
        with self._lock:
            sha = gitstore.rev(repo.git_dir, f"refs/heads/{head}")
            assert sha, f"no branch {head}"
            pull = Pull(
                number=repo.next_number,
                title=title,
                author=author,
                head_ref=head,
                head_sha=sha,
                base_ref=base or repo.default_branch,
                fork_owner=fork_owner,
                draft=draft,
            )
            repo.next_number += 1
            repo.pulls[pull.number] = pull
            self._refresh_refs(repo, pull, merge=True)
            payload = hooks.pull_request_payload(self, repo, pull, "opened")
        self._emit(repo, "pull_request", payload)
        return pull.number

    def push_to_fork_pull_request(
        self, full_name: str, number: int, files: Mapping[str, str | None]
    ) -> str:
        """A new commit on a fork PR's head."""
        repo = self.repo(full_name)
        pull = repo.pulls[number]
        before = pull.head_sha
        sha = gitstore.commit(repo.git_dir, pull.head_ref, files, parents=[pull.head_sha])
        pull.head_sha = sha
        self._refresh_refs(repo, pull, merge=not self.merge_refs_stale)
        self._emit(
            repo,
            "pull_request",
            hooks.pull_request_payload(self, repo, pull, "synchronize", before=before),
        )
        return sha

    def refresh_merge_ref(self, full_name: str, number: int) -> None:
        repo = self.repo(full_name)
        self._refresh_refs(repo, repo.pulls[number], merge=True)

    def merge_pull_request(self, full_name: str, number: int) -> str:
        repo = self.repo(full_name)
        with self._lock:
            pull = repo.pulls[number]
            base = gitstore.rev(repo.git_dir, f"refs/heads/{pull.base_ref}")
            assert base
            merged = gitstore.test_merge(repo.git_dir, base, pull.head_sha)
            assert merged, "the pull request conflicts"
            gitstore.git(repo.git_dir, "update-ref", f"refs/heads/{pull.base_ref}", merged)
            pull.state, pull.merged, pull.merge_sha = "closed", True, merged
            for other in repo.pulls.values():
                if other.state == "open" and other.base_ref == pull.base_ref:
                    self._refresh_refs(repo, other, merge=not self.merge_refs_stale)
            closed = hooks.pull_request_payload(self, repo, pull, "closed")
            push = hooks.push_payload(
                self,
                repo,
                ref=f"refs/heads/{pull.base_ref}",
                before=base,
                after=merged,
                pusher=pull.author,
            )
        self._emit(repo, "pull_request", closed)
        self._emit(repo, "push", push)
        return merged

    def close_pull_request(self, full_name: str, number: int) -> None:
        repo = self.repo(full_name)
        repo.pulls[number].state = "closed"
        self._emit(
            repo,
            "pull_request",
            hooks.pull_request_payload(self, repo, repo.pulls[number], "closed"),
        )

    def comment_as(self, login: str, full_name: str, number: int, body: str) -> int:
        self.add_user(login)
        repo = self.repo(full_name)
        comment_id = self._add_comment(repo, number, login, body, emit=False).id
        self._emit(
            repo, "issue_comment", hooks.issue_comment_payload(self, repo, number, comment_id)
        )
        return comment_id

    def add_webhook(
        self,
        url: str,
        *,
        secret: str,
        repo: str | None = None,
        events: tuple[str, ...] = ("pull_request", "issue_comment", "push"),
    ) -> None:
        """Send deliveries of ``events`` (of ``repo``, default every repository) to ``url``."""
        self.hooks.append((repo.lower() if repo else None, hooks.Hook(url, secret, events)))

    def redeliver(self, delivery_id: str) -> hooks.Delivery:
        """Send a delivery again with the same id, as GitHub's "Redeliver" button does."""
        original = next(d for d in self.deliveries if d.id == delivery_id)
        hook = next(h for _, h in self.hooks if h.url == original.url)
        self._queue_delivery(hook, original, wait=True)
        return original

    def installation_of(self, full_name: str) -> int | None:
        for installation in self.installations.values():
            if full_name.lower() in installation.repos:
                return installation.id
        return None

    def mark_ready_for_review(self, full_name: str, number: int) -> None:
        repo = self.repo(full_name)
        pull = repo.pulls[number]
        pull.draft = False
        self._emit(
            repo, "pull_request", hooks.pull_request_payload(self, repo, pull, "ready_for_review")
        )

    # --- the test API: reading what the bot did ------------------------------------------------

    def comments(self, full_name: str, number: int) -> list[Comment]:
        key = full_name.lower()
        return sorted(
            (c for c in self.comments_by_id.values() if c.repo == key and c.number == number),
            key=lambda c: c.id,
        )

    def statuses(self, full_name: str, sha: str) -> list[Status]:
        return list(self.repo(full_name).statuses.get(sha, []))

    def latest_status(self, full_name: str, sha: str, context: str) -> Status | None:
        found = [s for s in self.statuses(full_name, sha) if s.context.lower() == context.lower()]
        return found[-1] if found else None

    def issues(self, full_name: str) -> list[IssueRec]:
        return list(self.repo(full_name).issues.values())

    def delete_issue(self, full_name: str, number: int) -> None:
        """An admin deletes the issue: it leaves the lists, and asking for it answers 410."""
        repo = self.repo(full_name)
        del repo.issues[number]
        repo.deleted_issues.add(number)

    def transfer_issue(self, full_name: str, number: int, to: str) -> int:
        """Someone moves the issue to repository ``to``; returns its number there."""
        repo, target = self.repo(full_name), self.repo(to)
        issue = repo.issues.pop(number)
        issue.number = target.next_number
        target.next_number += 1
        target.issues[issue.number] = issue
        repo.transferred_issues[number] = (target.full_name, issue.number)
        return issue.number

    # --- internals ------------------------------------------------------------------------------

    def _refresh_refs(self, repo: Repo, pull: Pull, *, merge: bool) -> None:
        gitstore.git(repo.git_dir, "update-ref", f"refs/pull/{pull.number}/head", pull.head_sha)
        if not merge:
            return
        base = gitstore.rev(repo.git_dir, f"refs/heads/{pull.base_ref}")
        merged = gitstore.test_merge(repo.git_dir, base, pull.head_sha) if base else None
        pull.test_merge_sha = merged
        if merged:
            gitstore.git(repo.git_dir, "update-ref", f"refs/pull/{pull.number}/merge", merged)
        else:  # GitHub drops the merge ref of a conflicting PR
            gitstore.git(
                repo.git_dir, "update-ref", "-d", f"refs/pull/{pull.number}/merge", check=False
            )

    def _emit(self, repo: Repo, event: str, payload: dict[str, Any], *, wait: bool = True) -> None:
        """Queue a delivery to each matching webhook; by default wait until it was answered
        (the test API), not when a request handler emits (the bot's own comments)."""
        for repo_filter, hook in self.hooks:
            if repo_filter not in (None, repo.full_name.lower()) or event not in hook.events:
                continue
            delivery = hooks.new_delivery(event, payload, hook.url)
            self.deliveries.append(delivery)
            self._queue_delivery(hook, delivery, wait=wait)

    def _deliver(self, hook: Any, delivery: Any) -> None:
        hooks.send(hook, delivery)

    def _add_comment(
        self, repo: Repo, number: int, author: str, body: str, *, emit: bool = True
    ) -> Comment:
        moment = now()
        comment = Comment(
            next(self._ids), repo.full_name.lower(), number, author, body, moment, moment
        )
        self.comments_by_id[comment.id] = comment
        if emit:  # the bot's own comments are delivered too, as on GitHub
            payload = hooks.issue_comment_payload(self, repo, number, comment.id)
            self._emit(repo, "issue_comment", payload, wait=False)
        return comment

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_Handler):
            forge = fake

        return Handler

    # --- authentication ---------------------------------------------------------------------

    def _token(self, header: str | None) -> Token | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        token = self.tokens.get(value.strip())
        if token is None:
            return None
        if token.expires_at is not None and token.expires_at <= datetime.now(UTC):
            return None
        return token

    def _app_from_jwt(self, header: str | None) -> App:
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "bearer" or value.count(".") != 2:
            raise ApiError(401, "A JSON web token could not be decoded")
        try:
            unverified = jwt.decode(value, options={"verify_signature": False})
            app = self.apps[int(unverified["iss"])]
            claims = jwt.decode(
                value,
                app.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=0,
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise ApiError(401, f"A JSON web token could not be decoded ({exc})") from None
        if claims["exp"] - time.time() > 600:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        return app

    def _visible(self, token: Token, repo: Repo) -> bool:
        if token.installation is not None:
            inst = self.installations.get(token.installation)
            return inst is not None and repo.full_name.lower() in inst.repos
        role = repo.roles.get((token.login or "").lower(), "none")
        return role != "none" or not repo.private

    def _role(self, token: Token, repo: Repo) -> str:
        return repo.roles.get((token.login or "").lower(), "none")

    def _check_permission(self, token: Token, repo: Repo, operation: str) -> None:
        if not self._visible(token, repo):
            raise ApiError(404, "Not Found")
        if token.installation is not None:
            need = NEEDS.get(operation)
            if need is None:
                return
            inst = self.installations[token.installation]
            granted = self.apps[inst.app_id].permissions.get(need[0])
            if granted is None or (need[1] == "write" and granted != "write"):
                raise ApiError(403, "Resource not accessible by integration")
            return
        needed = ROLE_NEEDED.get(operation)
        if needed and ROLES.index(self._role(token, repo)) < ROLES.index(needed):
            raise ApiError(
                404 if repo.private else 403,
                "Not Found" if repo.private else "Must have push access to repository",
            )

    def _login_of(self, token: Token) -> str:
        if token.login:
            return token.login
        inst = self.installations[token.installation or 0]
        return f"{self.apps[inst.app_id].slug}[bot]"


class ApiError(Answer):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(
            status,
            {
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
                "status": str(status),
                **extra,
            },
        )


def validation_failed(resource: str, field_name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "code": "custom", "field": field_name, "message": message}],
    )


class Shapes:
    """GitHub's JSON for the fake's objects (API answers and webhook payloads alike)."""

    forge: FakeGitHub

    def _user(self, login: str) -> dict[str, Any]:
        user = self.forge.add_user(login)
        base = self.forge.url
        return {
            "login": user.login,
            "id": user.id,
            "node_id": f"U_{user.id}",
            "type": user.type,
            "site_admin": False,
            "url": f"{base}/users/{quote(user.login)}",
            "html_url": f"{base}/{quote(user.login)}",
            "avatar_url": "",
            "gravatar_id": "",
        }

    def _installation(self, inst: Installation) -> dict[str, Any]:
        return {
            "id": inst.id,
            "app_id": inst.app_id,
            "account": self._user(inst.account),
            "target_type": "Organization",
            "repository_selection": "selected",
            "permissions": self.forge.apps[inst.app_id].permissions,
            "events": self.forge.apps[inst.app_id].events,
            "created_at": iso(now()),
            "updated_at": iso(now()),
            "access_tokens_url": f"{self.forge.url}/app/installations/{inst.id}/access_tokens",
        }

    def _repo_json(self, repo: Repo) -> dict[str, Any]:
        base = self.forge.url
        api = f"{base}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self._user(repo.owner),
            "html_url": f"{base}/{repo.full_name}",
            "url": api,
            "hooks_url": f"{api}/hooks",
            "clone_url": f"{base}/{repo.full_name}.git",
            "git_url": f"git://127.0.0.1/{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "fork": False,
            "archived": False,
            "visibility": "private" if repo.private else "public",
        }

    def _pull_json(
        self, repo: Repo, pull: Pull, heads: dict[str, str] | None = None
    ) -> dict[str, Any]:
        base_url = self.forge.url
        api = f"{base_url}/repos/{repo.full_name}"
        heads = gitstore.heads(repo.git_dir) if heads is None else heads
        base_sha = heads.get(pull.base_ref, "")
        merge = pull.test_merge_sha
        head_repo = self._repo_json(repo)
        if pull.fork_owner:
            head_repo = dict(
                head_repo,
                full_name=f"{pull.fork_owner}/{repo.name}",
                owner=self._user(pull.fork_owner),
                id=repo.id + 500_000,
                fork=True,
            )
        head_owner = pull.fork_owner or repo.owner
        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": pull.number + repo.id * 1000,
            "number": pull.number,
            "state": pull.state,
            "title": pull.title,
            "user": self._user(pull.author),
            "body": "",
            "draft": pull.draft,
            "merged": pull.merged,
            "merged_at": iso(now()) if pull.merged else None,
            "merge_commit_sha": pull.merge_sha if pull.merged else merge,
            "mergeable": None if pull.state != "open" else merge is not None,
            "html_url": f"{base_url}/{repo.full_name}/pull/{pull.number}",
            "issue_url": f"{api}/issues/{pull.number}",
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.created_at),
            "head": {
                "label": f"{head_owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user(head_owner),
                "repo": head_repo,
            },
            "base": {
                "label": f"{repo.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": base_sha,
                "user": self._user(repo.owner),
                "repo": self._repo_json(repo),
            },
        }

    def _comment_json(self, repo: Repo, comment: Comment) -> dict[str, Any]:
        base = self.forge.url
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{base}/repos/{repo.full_name}/issues/comments/{comment.id}",
            "html_url": f"{base}/{repo.full_name}/pull/{comment.number}#issuecomment-{comment.id}",
            "issue_url": f"{base}/repos/{repo.full_name}/issues/{comment.number}",
            "body": comment.body,
            "user": self._user(comment.author),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": "NONE",
        }

    def _issue_json(self, repo: Repo, issue: IssueRec) -> dict[str, Any]:
        base = self.forge.url
        return {
            "id": issue.number + repo.id * 1000,
            "node_id": f"I_{issue.number}",
            "url": f"{base}/repos/{repo.full_name}/issues/{issue.number}",
            "repository_url": f"{base}/repos/{repo.full_name}",
            "html_url": f"{base}/{repo.full_name}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "title": issue.title,
            "body": issue.body,
            "user": self._user(issue.author),
            "labels": [],
            "assignees": [],
            "comments": 0,
            "locked": False,
            "created_at": iso(issue.created_at),
            "updated_at": iso(now()),
            "closed_at": None,
            "author_association": "NONE",
        }

    def _status_json(self, repo: Repo, status: Status) -> dict[str, Any]:
        return {
            "id": status.id,
            "node_id": f"S_{status.id}",
            "url": f"{self.forge.url}/repos/{repo.full_name}/statuses/{status.sha}",
            "state": status.state,
            "context": status.context,
            "description": status.description,
            "target_url": status.target_url,
            "creator": self._user(status.creator),
            "avatar_url": None,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
        }


class _Handler(Shapes, ForgeHandler):
    forge: FakeGitHub
    server_version = "FakeGitHub/1"

    def _common_headers(self) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "4999"),
            ("X-RateLimit-Reset", str(int(time.time()) + 3600)),
            ("X-GitHub-Api-Version-Selected", "2022-11-28"),
        ]

    def _fault(self, fault: Fault) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers = [("Content-Type", "application/json; charset=utf-8")]
        if fault.retry_after is not None:
            headers.append(("Retry-After", str(fault.retry_after)))
        if fault.kind == "primary":
            message = "API rate limit exceeded for user ID 1."
            headers += [
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", str(int(time.time()) + 1)),
            ]
        elif fault.kind == "secondary":
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again."
            )
        else:
            message = HTTPStatus(fault.status).phrase
        payload = json.dumps({"message": message, "status": str(fault.status)}).encode()
        return fault.status, payload, headers

    # --- git -----------------------------------------------------------------------------------

    def _git_access(
        self, path: str, record: Recorded
    ) -> tuple[int, bytes, list[tuple[str, str]]] | str:
        fake = self.forge
        owner, _, rest = path.lstrip("/").partition("/")
        name = rest.split(".git/", 1)[0]
        repo = fake.repos.get(f"{owner}/{name}".lower())
        challenge = [("WWW-Authenticate", 'Basic realm="GitHub"')]
        if repo is None:
            return 404, b"Repository not found.\n", []
        auth = record.headers.get("authorization", "")
        token: Token | None = None
        if auth.lower().startswith("basic "):
            try:
                _, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                password = ""
            token = fake._token(f"token {password}")
        if token is None:
            if repo.private or auth:
                return 401, b"Authentication failed\n", challenge
            return ""
        if not fake._visible(token, repo):
            return 404, b"Repository not found.\n", []
        if token.installation is not None:
            inst = fake.installations[token.installation]
            if fake.apps[inst.app_id].permissions.get("contents") is None:
                return 403, b"Permission denied\n", []
        return token.login or "x-access-token"

    # --- the REST API --------------------------------------------------------------------------

    def _api(
        self, method: str, path: str, query: str, body: bytes, record: Recorded
    ) -> tuple[int, Any, dict[str, str]]:
        fake = self.forge
        headers = record.headers
        if fake.manifests.is_web(path):  # a web page, not the API: no contract to check
            return fake.manifests.web(method, path, query, body, headers)
        params = dict(parse_qsl(query, keep_blank_values=True))
        match = fake.contract.check(method, path, params, body)
        op = match.operation.operation_id
        if op == "apps/create-from-manifest":  # no authentication: the code is the credential
            return fake.manifests.convert(match.path_params["code"], self)
        auth = headers.get("authorization")
        if path.startswith("/app") or path.endswith("/installation"):
            app = fake._app_from_jwt(auth)
            return self._app_api(op, app, match)
        token = fake._token(auth)
        if token is None:
            raise ApiError(401, "Bad credentials")
        route = ROUTES.get(op)
        if route is None:
            raise ApiError(404, f"fake forge: {op} is not implemented")
        with fake._lock:
            return route(self, token, match)

    def _app_api(self, op: str, app: App, match: Match) -> tuple[int, Any, dict[str, str]]:
        fake = self.forge
        if op == "apps/get-authenticated":
            return (
                200,
                {
                    "id": app.id,
                    "slug": app.slug,
                    "node_id": f"A_{app.id}",
                    "name": app.name,
                    "owner": self._user(app.owner),
                    "description": "",
                    "external_url": fake.url,
                    "html_url": f"{fake.url}/apps/{app.slug}",
                    "created_at": iso(now()),
                    "updated_at": iso(now()),
                    "permissions": app.permissions,
                    "events": app.events,
                },
                {},
            )
        if op == "apps/create-installation-access-token":
            inst = fake.installations.get(match.path_params["installation_id"])
            if inst is None or inst.app_id != app.id:
                raise ApiError(404, "Not Found")
            expires = now() + fake.token_ttl
            value = "ghs_" + secrets.token_hex(18)
            fake.tokens[value] = Token(value, installation=inst.id, expires_at=expires)
            return (
                201,
                {
                    "token": value,
                    "expires_at": iso(expires),
                    "permissions": app.permissions,
                    "repository_selection": "selected",
                },
                {},
            )
        if op == "apps/list-installations":
            mine = [i for i in fake.installations.values() if i.app_id == app.id]
            return self._page([self._installation(i) for i in mine], match)
        if op == "apps/get-repo-installation":
            full = f"{match.path_params['owner']}/{match.path_params['repo']}".lower()
            for inst in fake.installations.values():
                if inst.app_id == app.id and full in inst.repos:
                    return 200, self._installation(inst), {}
            raise ApiError(404, "Not Found")
        raise ApiError(404, f"fake forge: {op} is not implemented")

    def _page(self, items: list[Any], match: Match) -> tuple[int, list[Any], dict[str, str]]:
        per_page = min(int(match.query.get("per_page", 30)), 100)
        page = max(int(match.query.get("page", 1)), 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        last = max((len(items) + per_page - 1) // per_page, 1)
        if page < last:
            base_query = {k: str(v) for k, v in match.query.items() if k != "page"}

            def link(n: int) -> str:
                return f"{self.forge.url}{urlsplit(self.path).path}?" + urlencode(
                    {**base_query, "page": str(n)}
                )

            headers["Link"] = f'<{link(page + 1)}>; rel="next", <{link(last)}>; rel="last"'
        return 200, chunk, headers

    def _repo(self, token: Token, match: Match, operation: str) -> Repo:
        full = f"{match.path_params['owner']}/{match.path_params['repo']}".lower()
        repo = self.forge.repos.get(full)
        if repo is None:
            raise ApiError(404, "Not Found")
        self.forge._check_permission(token, repo, operation)
        return repo


Route = Callable[[_Handler, Token, Match], tuple[int, Any, dict[str, str]]]
ROUTES: dict[str, Route] = {}


def route(operation_id: str) -> Callable[[Route], Route]:
    def register(fn: Route) -> Route:
        ROUTES[operation_id] = fn
        return fn

    return register


@route("users/get-authenticated")
def _get_user(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    if token.installation is not None:
        raise ApiError(403, "Resource not accessible by integration")
    return 200, h._user(token.login or ""), {}


@route("repos/get")
def _get_repo(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    return 200, h._repo_json(h._repo(token, match, "repos/get")), {}


@route("apps/list-repos-accessible-to-installation")
def _installation_repos(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    if token.installation is None:  # GitHub: only an installation token may ask
        raise ApiError(403, "You must authenticate with an installation access token")
    inst = h.forge.installations[token.installation]
    repos = [
        h._repo_json(h.forge.repos[name]) for name in sorted(inst.repos) if name in h.forge.repos
    ]
    status, chunk, headers = h._page(repos, match)
    return status, {"total_count": len(repos), "repositories": chunk}, headers


@route("repos/get-branch")
def _get_branch(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "repos/get-branch")
    branch = match.path_params["branch"]
    sha = gitstore.rev(repo.git_dir, f"refs/heads/{branch}")
    if sha is None:
        raise ApiError(404, "Branch not found")
    return (
        200,
        {
            "name": branch,
            "protected": False,
            "commit": {"sha": sha, "url": f"{h.forge.url}/repos/{repo.full_name}/commits/{sha}"},
            "_links": {"self": "", "html": ""},
            "protection_url": "",
        },
        {},
    )


@route("pulls/list")
def _list_pulls(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "pulls/list")
    state = match.query.get("state", "open")
    pulls = [p for p in repo.pulls.values() if state == "all" or p.state == state]
    if match.query.get("direction", "desc") == "desc":
        pulls.reverse()
    heads = gitstore.heads(repo.git_dir)
    return h._page([h._pull_json(repo, p, heads) for p in pulls], match)


@route("pulls/get")
def _get_pull(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "pulls/get")
    pull = repo.pulls.get(match.path_params["pull_number"])
    if pull is None:
        raise ApiError(404, "Not Found")
    return 200, h._pull_json(repo, pull), {}


@route("repos/list-pull-requests-associated-with-commit")
def _commit_pulls(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "repos/list-pull-requests-associated-with-commit")
    sha = match.path_params["commit_sha"]
    found = []
    for pull in repo.pulls.values():
        base = gitstore.rev(repo.git_dir, f"refs/heads/{pull.base_ref}") or ""
        if (
            pull.merge_sha == sha
            or pull.head_sha == sha
            or (
                pull.state == "open"
                and _is_ancestor(repo, sha, pull.head_sha)
                and not _is_ancestor(repo, sha, base)
            )
        ):
            found.append(pull)
    return h._page([h._pull_json(repo, p) for p in found], match)


def _is_ancestor(repo: Repo, sha: str, of: str) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(repo.git_dir), "merge-base", "--is-ancestor", sha, of],
        env=gitstore.git_env(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    return proc.returncode == 0


def _issue_or_pull_exists(repo: Repo, number: int) -> None:
    if number not in repo.pulls and number not in repo.issues:
        raise ApiError(404, "Not Found")


@route("issues/list-comments")
def _list_comments(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/list-comments")
    number = match.path_params["issue_number"]
    _issue_or_pull_exists(repo, number)
    comments = h.forge.comments(repo.full_name, number)
    return h._page([h._comment_json(repo, c) for c in comments], match)


def _check_body(resource: str, body: str) -> None:
    if len(body) > COMMENT_LIMIT:
        raise validation_failed(
            resource, "body", f"body is too long (maximum is {COMMENT_LIMIT} characters)"
        )


@route("issues/create-comment")
def _create_comment(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/create-comment")
    number = match.path_params["issue_number"]
    _issue_or_pull_exists(repo, number)
    _check_body("IssueComment", match.body["body"])
    comment = h.forge._add_comment(repo, number, h.forge._login_of(token), match.body["body"])
    return 201, h._comment_json(repo, comment), {}


def _comment(h: _Handler, repo: Repo, match: Match) -> Comment:
    comment = h.forge.comments_by_id.get(match.path_params["comment_id"])
    if comment is None or comment.repo != repo.full_name.lower():
        raise ApiError(404, "Not Found")
    return comment


@route("issues/get-comment")
def _get_comment(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/get-comment")
    return 200, h._comment_json(repo, _comment(h, repo, match)), {}


@route("issues/update-comment")
def _update_comment(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/update-comment")
    comment = _comment(h, repo, match)
    if comment.author.lower() != h.forge._login_of(token).lower() and h.forge._role(
        token, repo
    ) not in ("write", "maintain", "admin"):
        raise ApiError(403, "Resource not accessible by integration")
    _check_body("IssueComment", match.body["body"])
    comment.body = match.body["body"]
    comment.updated_at = now()
    return 200, h._comment_json(repo, comment), {}


@route("issues/delete-comment")
def _delete_comment(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/delete-comment")
    comment = _comment(h, repo, match)
    if comment.author.lower() != h.forge._login_of(token).lower() and h.forge._role(
        token, repo
    ) not in ("write", "maintain", "admin"):
        raise ApiError(403, "Resource not accessible by integration")
    del h.forge.comments_by_id[comment.id]
    return 204, None, {}


@route("reactions/create-for-issue-comment")
def _react(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "reactions/create-for-issue-comment")
    comment = _comment(h, repo, match)
    login = h.forge._login_of(token)
    content = match.body["content"]
    status = 200 if (login, content) in comment.reactions else 201
    if status == 201:
        comment.reactions.append((login, content))
    return (
        status,
        {
            "id": next(h.forge._ids),
            "node_id": "RE_1",
            "user": h._user(login),
            "content": content,
            "created_at": iso(now()),
        },
        {},
    )


@route("repos/create-commit-status")
def _create_status(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "repos/create-commit-status")
    sha = match.path_params["sha"]
    if gitstore.rev(repo.git_dir, sha) is None or len(sha) < 40:
        raise validation_failed("Status", "sha", f"No commit found for SHA: {sha}")
    body = match.body
    description = body.get("description")
    if description is not None and len(description) > DESCRIPTION_LIMIT:
        raise validation_failed(
            "Status",
            "description",
            f"description is too long (maximum is {DESCRIPTION_LIMIT} characters)",
        )
    target = body.get("target_url")
    if target and urlsplit(target).scheme not in ("http", "https"):
        raise validation_failed("Status", "target_url", "target_url is not a valid URL")
    status = Status(
        id=next(h.forge._ids),
        sha=sha,
        state=body["state"],
        context=body.get("context", "default"),
        description=description,
        target_url=target,
        creator=h.forge._login_of(token),
        created_at=now(),
    )
    repo.statuses.setdefault(sha, []).append(status)
    return 201, h._status_json(repo, status), {}


@route("repos/list-commit-statuses-for-ref")
def _list_statuses(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "repos/list-commit-statuses-for-ref")
    sha = gitstore.rev(repo.git_dir, match.path_params["ref"]) or match.path_params["ref"]
    items = list(reversed(repo.statuses.get(sha, [])))
    return h._page([h._status_json(repo, s) for s in items], match)


@route("repos/get-collaborator-permission-level")
def _permission(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "repos/get-collaborator-permission-level")
    login = match.path_params["username"]
    if login.lower() not in h.forge.users:
        raise ApiError(404, f"{login} is not a user")
    role = repo.roles.get(login.lower(), "none" if repo.private else "read")
    legacy = {"maintain": "write", "triage": "read"}.get(role, role)
    return 200, {"permission": legacy, "role_name": role, "user": h._user(login)}, {}


@route("issues/list-for-repo")
def _list_issues(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/list-for-repo")
    state = match.query.get("state", "open")
    creator = match.query.get("creator")
    issues = [
        i
        for i in repo.issues.values()
        if (state == "all" or i.state == state)
        and (creator is None or i.author.lower() == creator.lower())
    ]
    if match.query.get("direction", "desc") == "desc":
        issues.reverse()
    return h._page([h._issue_json(repo, i) for i in issues], match)


@route("issues/create")
def _create_issue(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/create")
    body = match.body
    _check_body("Issue", body.get("body") or "")
    issue = IssueRec(
        repo.next_number, str(body["title"]), body.get("body") or "", h.forge._login_of(token)
    )
    repo.next_number += 1
    repo.issues[issue.number] = issue
    return 201, h._issue_json(repo, issue), {}


def _issue(repo: Repo, match: Match) -> IssueRec:
    number = match.path_params["issue_number"]
    issue = repo.issues.get(number)
    if issue is None and number in repo.deleted_issues:
        raise ApiError(410, "This issue was deleted")

    if issue is None:
        raise ApiError(404, "Not Found")
    return issue


@route("issues/get")
def _get_issue(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/get")
    pull = repo.pulls.get(match.path_params["issue_number"])
    if pull is not None:  # GitHub: every pull request is an issue too, with ``pull_request``
        as_issue = IssueRec(pull.number, pull.title, "", pull.author, state=pull.state)
        base = h.forge.url
        links = {
            "url": f"{base}/repos/{repo.full_name}/pulls/{pull.number}",
            "html_url": f"{base}/{repo.full_name}/pull/{pull.number}",
        }
        return 200, {**h._issue_json(repo, as_issue), "pull_request": links}, {}
    moved = repo.transferred_issues.get(match.path_params["issue_number"])
    if moved is not None:
        where, number = moved
        location = f"{h.forge.url}/repos/{where}/issues/{number}"
        return 301, {"message": "Moved Permanently", "url": location}, {"Location": location}
    return 200, h._issue_json(repo, _issue(repo, match)), {}


@route("issues/update")
def _update_issue(h: _Handler, token: Token, match: Match) -> tuple[int, Any, dict[str, str]]:
    repo = h._repo(token, match, "issues/update")
    issue = _issue(repo, match)
    body = match.body or {}
    if "title" in body and body["title"] is not None:
        issue.title = str(body["title"])
    if "body" in body:
        _check_body("Issue", body["body"] or "")
        issue.body = body["body"] or ""
    if "state" in body:
        issue.state = body["state"]
        issue.state_reason = body.get("state_reason") or (
            "completed" if issue.state == "closed" else "reopened"
        )
    return 200, h._issue_json(repo, issue), {}
