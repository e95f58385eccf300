"""What the job tests share: a real bare git repository standing in for the forge's git server
(pull request refs as GitHub writes them), a :class:`MemoryForge` on top of it, and a
:class:`~bot.jobs.context.JobContext` wired to a real Redis and real clusters.

The job functions run in-process; only their collaborators are local: the bot's own git cache
fetches from the bare repository with real git, Redis is the session's real server, clusters are
the kube emulator (or a closed port: an unreachable target).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from bot.checkouts import RepoCache
from bot.cluster.targets import Target, Targets
from bot.forges.base import PullRequest
from bot.jobs.context import JobContext, JobLog, job_state
from bot.settings import Settings
from bot.state import PullKey
from tests.fake_forge import gitstore
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
