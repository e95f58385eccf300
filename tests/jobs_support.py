"""What the job tests share: a real bare git repository standing in for the forge's git server
(pull request refs as GitHub writes them), a :class:`MemoryForge` on top of it, and a
:class:`~bot.jobs.context.JobContext` wired to a real Redis and real clusters.

The job functions run in-process; only their collaborators are local: the bot's own git cache
fetches from the bare repository with real git, Redis is the session's real server, clusters are
the kube emulator (or a closed port: an unreachable target).

A :class:`World` is one pull request's surroundings as a test drives and reads them, on either
forge a scenario runs against: :class:`MemoryWorld` (the MemoryForge above) or
:class:`GitHubWorld` (the real PyGithub adapter against the contract-checked fake GitHub over
HTTP). Tests parametrized over :data:`WORLDS` (fixture: :func:`open_world`) state a scenario once
and prove it on both.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from bot.checkouts import RepoCache
from bot.cluster.targets import Target, Targets
from bot.forges import Permission, connect_by_name
from bot.forges.base import Forge, PullRequest
from bot.jobs.context import JobContext, JobLog, job_state
from bot.settings import Settings
from bot.state import PullKey
from tests.fake_forge import gitstore
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.memory import MemoryForge

REPO = "acme/app"
GITOPS_YAML = """version: 1
apps:
  - {name: web, path: web, namespace: web}
  - {name: api, path: api, namespace: api}
"""


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def configmap(name: str, value: str, *, namespace: str | None = None) -> str:
    where = f"\n  namespace: {namespace}" if namespace else ""
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{where}\n"
        f"data:\n  value: {value!r}\n"
    )


BASE_FILES: dict[str, str | bytes | None] = {
    ".gitops.yaml": GITOPS_YAML,
    "web/ns.yaml": namespace("web"),
    "web/a.yaml": configmap("a", "1"),
    "api/ns.yaml": namespace("api"),
    "api/b.yaml": configmap("b", "1"),
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server is a local port nothing listens on."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{closed_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


class Remote:
    """A bare repository serving as the forge's git server, with PR refs maintained as GitHub
    maintains them (``refs/pull/N/head``; ``refs/pull/N/merge`` unless ``stale``)."""

    def __init__(self, path: Path, files: Mapping[str, str | bytes | None] | None = None) -> None:
        self.path = path
        gitstore.init_bare(path, "main")
        self.base = gitstore.commit(path, "main", dict(files or BASE_FILES), message="base")

    def commit(
        self, branch: str, files: Mapping[str, str | bytes | None], *, start: str | None = None
    ) -> str:
        parents = None
        if gitstore.rev(self.path, f"refs/heads/{branch}") is None:
            parents = [start or gitstore.rev(self.path, "refs/heads/main") or ""]
        return gitstore.commit(self.path, branch, dict(files), parents=parents)

    def head(self, branch: str = "main") -> str:
        sha = gitstore.rev(self.path, f"refs/heads/{branch}")
        assert sha is not None
        return sha

    def publish(self, forge: MemoryForge, number: int, branch: str, **kwargs: Any) -> PullRequest:
        """Open (or update) PR ``number`` from ``branch`` on ``forge``, refs included."""
        head = self.head(branch)
        gitstore.git(self.path, "update-ref", f"refs/pull/{number}/head", head)
        merged = gitstore.test_merge(self.path, self.head("main"), head)
        if merged is not None:
            gitstore.git(self.path, "update-ref", f"refs/pull/{number}/merge", merged)
        else:
            gitstore.git(self.path, "update-ref", "-d", f"refs/pull/{number}/merge")
        return forge.add_pull_request(
            number, head_sha=head, base_sha=self.head("main"), head_ref=branch, **kwargs
        )


def memory_forge(remote: Remote, **kwargs: Any) -> MemoryForge:
    forge = MemoryForge(REPO, **kwargs)
    forge.clone_url = str(remote.path)
    return forge


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"GITOPS_DATA_DIR": str(tmp_path / "data"), **env})


def targets_at(kubeconfig: str | Path, *, repositories: tuple[str, ...] | None = None) -> Targets:
    return Targets(
        {"default": Target("default", kubeconfig=Path(kubeconfig), repositories=repositories)}
    )


def make_context(
    forge: Any,
    redis_url: str,
    tmp_path: Path,
    *,
    targets: Targets | None = None,
    settings: Settings | None = None,
    job_id: str = "job-1",
    retries_left: bool = False,
    part_limit: int | None = None,
    max_parts: int = 10,
) -> JobContext:
    settings = settings or settings_for(tmp_path)
    chosen = targets or Targets({})
    return JobContext(
        settings=settings,
        forge=forge,
        repos=RepoCache(tmp_path / "cache"),
        state=job_state(redis.Redis.from_url(redis_url), settings),
        targets=lambda: chosen,
        log=JobLog(logging.getLogger("gitops_bot.jobs"), {"delivery": "d", "job": job_id}),
        job_id=job_id,
        retries_left=retries_left,
        part_limit=part_limit,
        max_parts=max_parts,
    )


def intake_head(ctx: JobContext, number: int, sha: str) -> None:
    """What the intake's script records for a new preview delivery."""
    ctx.state.record_head(PullKey(ctx.forge.provider, ctx.forge.repository, number), sha)


# -- one scenario, two forges --------------------------------------------------------------------

WORLDS = ("memory", "github")
FORK_OWNER = "outsider"


class World(Protocol):
    """A pull request's surroundings: its git (branches of :data:`REPO`, created from ``main``
    holding :data:`BASE_FILES`), the :class:`Forge` a job is given, and what reviewers see."""

    forge: Forge

    def commit(self, branch: str, files: Mapping[str, str | bytes | None]) -> str:
        """Commit on ``branch``; returns its new head."""
        ...

    def head(self, branch: str = "main") -> str: ...

    def publish(self, number: int, branch: str, *, from_fork: bool = False) -> None:
        """Open pull request ``number`` from ``branch`` (numbers in order), or bring it to the
        branch's head."""
        ...

    def allow(self, login: str, permission: Permission) -> None: ...

    def add_comment(self, number: int, author: str, body: str) -> int: ...

    def comments(self, number: int) -> list[tuple[int, str]]:
        """``(id, body)`` of every comment on ``number``, oldest first."""
        ...

    def statuses(self, sha: str) -> list[tuple[str, str]]:
        """``(state, description)`` of every status set on ``sha``, in order."""
        ...


class MemoryWorld:
    """The scenario on a :class:`MemoryForge` over a bare repository."""

    def __init__(self, path: Path, *, comment_limit: int = 65536) -> None:
        self.remote = Remote(path)
        self.memory = memory_forge(self.remote, comment_limit=comment_limit)
        self.forge: Forge = self.memory

    def commit(self, branch: str, files: Mapping[str, str | bytes | None]) -> str:
        return self.remote.commit(branch, files)

    def head(self, branch: str = "main") -> str:
        return self.remote.head(branch)

    def publish(self, number: int, branch: str, *, from_fork: bool = False) -> None:
        self.remote.publish(self.memory, number, branch, from_fork=from_fork)

    def allow(self, login: str, permission: Permission) -> None:
        self.memory.permissions[login] = permission

    def add_comment(self, number: int, author: str, body: str) -> int:
        return self.memory.add_comment(number, author, body).id

    def comments(self, number: int) -> list[tuple[int, str]]:
        return [(c.id, c.body) for c in self.memory.comments_on(number)]

    def statuses(self, sha: str) -> list[tuple[str, str]]:
        return [(s.state.value, s.description) for s in self.memory.statuses.get(sha, [])]


class GitHubWorld:
    """The scenario on the fake GitHub, through the bot's PyGithub adapter (a token user with
    write access, as ``GITHUB_TOKEN``). A fork PR's head is a branch of the repository standing
    in for the fork's, owned by :data:`FORK_OWNER` in the API's answers."""

    def __init__(self, fake: FakeGitHub, settings: Settings) -> None:
        self.fake = fake
        fake.create_repo(REPO, files=BASE_FILES)
        fake.set_permission(REPO, "gitops-bot", "write")
        self.forge = connect_by_name(settings, "github", REPO)

    def commit(self, branch: str, files: Mapping[str, str | bytes | None]) -> str:
        return self.fake.commit(REPO, branch, files)

    def head(self, branch: str = "main") -> str:
        sha = gitstore.rev(self.fake.repo(REPO).git_dir, f"refs/heads/{branch}")
        assert sha is not None
        return sha

    def publish(self, number: int, branch: str, *, from_fork: bool = False) -> None:
        pull = self.fake.repo(REPO).pulls.get(number)
        if pull is None:
            fork = FORK_OWNER if from_fork else None
            opened = self.fake.open_pull_request(REPO, head=branch, fork_owner=fork)
            assert opened == number, f"the fake numbered the pull request {opened}"
        elif pull.fork_owner is not None:  # a push to the fork: GitHub updates the PR's refs
            pull.head_sha = self.head(branch)
            self.fake.refresh_merge_ref(REPO, number)
        # a branch of the repository itself: fake.commit updated the pull request already

    def allow(self, login: str, permission: Permission) -> None:
        self.fake.set_permission(REPO, login, permission.name.lower())

    def add_comment(self, number: int, author: str, body: str) -> int:
        return self.fake.comment_as(author, REPO, number, body)

    def comments(self, number: int) -> list[tuple[int, str]]:
        return [(c.id, c.body) for c in self.fake.comments(REPO, number)]

    def statuses(self, sha: str) -> list[tuple[str, str]]:
        return [(s.state, s.description or "") for s in self.fake.statuses(REPO, sha)]


def open_world(request: pytest.FixtureRequest, tmp_path: Path, *, comment_limit: int) -> World:
    """The :class:`World` ``request.param`` names; ``comment_limit`` is the MemoryForge's (the
    fake GitHub keeps GitHub's own, 65,536 characters)."""
    if request.param == "memory":
        return MemoryWorld(tmp_path / "remote.git", comment_limit=comment_limit)
    return GitHubWorld(
        request.getfixturevalue("fake_github"), request.getfixturevalue("github_settings")
    )
