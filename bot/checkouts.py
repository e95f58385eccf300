"""The worker's git cache: one bare repository per forge repository under ``GITOPS_DATA_DIR``,
updated by fetching exactly the commits a job needs, shared safely by every worker process.

Why here (``bot/checkouts.py``) and not in ``bot/forges``: this is git, not a forge API. It is
the same for GitHub and GitLab (``bot.forges`` hands it a :class:`~bot.forges.base.GitAccess`
and the :class:`~bot.forges.base.PullRequest`'s refs), and the jobs use it beside
``bot.manifests`` (``gitrepo.checkout`` fills a clean tree per job from the cache, and
``gitrepo.changed_files`` reads a PR's changed files from git, with no 3,000-file API limit).

- **Incremental.** ``git ls-remote`` first (one request); ``git fetch`` only when a commit the
  job needs is missing, and only those refs. No clone per job.
- **Shared.** Fetches and local merges hold an exclusive ``flock`` on ``<repo>.git.lock``, so
  worker processes on one machine take turns; reading commits and filling trees needs no lock
  (git objects are immutable, refs are updated atomically).
- **No credential on disk.** The token reaches git only through the environment of the fetch
  (``GitAccess.env``: ``GIT_CONFIG_COUNT`` / ``http.<url>.extraHeader``); the cache has no
  remote, no URL and no credential helper in its config.
- **What the merge will deploy.** :meth:`RepoCache.prepare_pull_request` fetches the PR's head,
  the current head of its base branch and the forge's merge ref; it uses the merge ref when
  its parents are exactly (base head, PR head), and otherwise writes the merge itself
  (``git merge-tree --write-tree`` + ``git commit-tree``, deterministic: the same inputs give
  the same SHA in every worker), reporting a conflict with the conflicting files.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot.errors import PermanentError, TransientError
from bot.forges.base import GitAccess, PullRequest

GIT_TIMEOUT = 300.0
LOCK_TIMEOUT = 600.0
MERGE_IDENTITY = {
    "GIT_AUTHOR_NAME": "gitops-bot",
    "GIT_AUTHOR_EMAIL": "gitops-bot@localhost",
    "GIT_COMMITTER_NAME": "gitops-bot",
    "GIT_COMMITTER_EMAIL": "gitops-bot@localhost",
}
_SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REFUSED = re.compile(
    r"Authentication failed|could not read Username|returned error: 40[134]|"
    r"[Rr]epository not found|not our ref|couldn't find remote ref"
)


class CheckoutError(PermanentError):
    """git refused (unknown commit, corrupt cache); the message has git's own words."""


class FetchFailed(TransientError):
    """The forge's git server could not be reached or failed; worth retrying."""


class CacheBusy(TransientError):
    """Another worker held the repository's lock for longer than the timeout."""


@dataclass(frozen=True)
class MergeResult:
    """The commit a PR preview renders: the PR merged into the current head of its base."""

    base_sha: str
    head_sha: str
    #: The merge commit; None when the merge conflicts.
    sha: str | None
    #: ``forge``: the forge's merge ref was up to date; ``local``: merged in the cache.
    source: Literal["forge", "local"] | None
    #: Files that conflict (when ``sha`` is None), sorted.
    conflicts: tuple[str, ...] = ()

    @property
    def conflicted(self) -> bool:
        return self.sha is None


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # GIT_* variables of the worker (GIT_DIR, GIT_TRACE_CURL, ...) would redirect git or print
    # the credential header; start from none of them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_LFS_SKIP_SMUDGE="1",
        LC_ALL="C",
    )
    if extra:
        env.update(extra)
    return env


class RepoCache:
    """Bare repositories under ``root`` (``GITOPS_DATA_DIR/repos``), one per forge repository."""

    def __init__(
        self, root: Path, *, git_timeout: float = GIT_TIMEOUT, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        self.root = Path(root)
        self.git_timeout = git_timeout
        self.lock_timeout = lock_timeout

    # --- layout and locking ------------------------------------------------------------------

    def path(self, provider: str, full_name: str) -> Path:
        """``<root>/<provider>/<owner>/<name>.git`` (GitLab subgroups nest); names are checked so
        a repository name can never point outside the cache."""
        parts = [provider, *full_name.lower().split("/")]
        if len(parts) < 3 or not all(
            _SAFE_PART.fullmatch(p) and p not in (".", "..") for p in parts
        ):
            raise CheckoutError(f"{provider} repository name {full_name!r} is not a safe path")
        return self.root.joinpath(*parts[:-1], parts[-1] + ".git")

    @contextmanager
    def locked(self, repo: Path) -> Iterator[None]:
        """Exclusive use of ``repo`` among processes on this machine (``flock``)."""
        repo.parent.mkdir(parents=True, exist_ok=True)
        lock_path = repo.with_name(repo.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise
                    if time.monotonic() > deadline:
                        raise CacheBusy(
                            f"the git cache {repo} stayed locked for {self.lock_timeout:g} s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _ensure(self, repo: Path) -> None:
        if (repo / "HEAD").exists():
            return
        repo.mkdir(parents=True, exist_ok=True)
        self._git(repo, "init", "--bare", "--quiet")
        # No remote, no URL, no credential in here: fetches name the URL on the command line
        # and take the credential from their environment.
        self._git(repo, "config", "core.logAllRefUpdates", "false")
        # git's automatic housekeeping after a fetch runs in the fetch, under our lock, rather
        # than detached after it; readers without the lock are safe (git re-scans packs).
        self._git(repo, "config", "gc.autoDetach", "false")
        self._git(repo, "config", "maintenance.autoDetach", "false")

    # --- git ---------------------------------------------------------------------------------

    def _git(
        self,
        repo: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        ok: Sequence[int] = (0,),
        network: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(
                ["git", "-C", str(repo), *args],
                capture_output=True,
                env=_clean_env(env),
                timeout=self.git_timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            error = f"git {args[0]} did not finish within {self.git_timeout:g} s"
            raise (FetchFailed(error) if network else CheckoutError(error)) from None
        if proc.returncode not in ok:
            stderr = proc.stderr.decode("utf-8", "replace").strip()
            if env:  # never echo a credential git might print
                for value in env.values():
                    if len(value) > 12:
                        stderr = stderr.replace(value, "<redacted>")
            error = f"git {args[0]} failed: {stderr[-2000:]}"
            if network and not _REFUSED.search(stderr):
                raise FetchFailed(error)
            # Refused credentials, a missing repository or commit: retrying will not help.
            if "could not read Username" in stderr or "Authentication failed" in stderr:
                error = f"the forge refused the bot's credentials for git ({error})"
            raise CheckoutError(error)
        return proc

    def _has_commit(self, repo: Path, sha: str) -> bool:
        proc = self._git(repo, "cat-file", "-e", f"{sha}^{{commit}}", ok=(0, 1, 128))
        return proc.returncode == 0

    def _rev(self, repo: Path, ref: str) -> str | None:
        proc = self._git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        return proc.stdout.decode().strip() or None

    def ls_remote(self, repo: Path, access: GitAccess, refs: Sequence[str]) -> dict[str, str]:
        """Ref → SHA on the forge for the ``refs`` that exist (one request)."""
        proc = self._git(
            repo, "ls-remote", "--", access.clone_url, *refs, env=access.env, network=True
        )
        found = {}
        for line in proc.stdout.decode().splitlines():
            sha, _, ref = line.partition("\t")
            if _SHA.fullmatch(sha):
                found[ref] = sha
        return found

    def _fetch(self, repo: Path, access: GitAccess, refspecs: Sequence[str]) -> None:
        if refspecs:
            self._git(
                repo,
                "-c",
                "fetch.writeCommitGraph=false",
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--",
                access.clone_url,
                *refspecs,
                env=access.env,
                network=True,
            )

    # --- what jobs call ----------------------------------------------------------------------------

    def fetch_commits(
        self, provider: str, full_name: str, access: GitAccess, shas: Sequence[str]
    ) -> Path:
        """The cache of ``full_name``, holding every commit of ``shas`` (fetched by SHA when
        missing; forges serve any reachable commit). Returns the bare repository's path, for
        ``bot.manifests.gitrepo.checkout(path, sha)``."""
        for sha in shas:
            if not _SHA.fullmatch(sha):
                raise CheckoutError(f"{sha!r} is not a full commit SHA")
        repo = self.path(provider, full_name)
        missing = [s for s in shas if not (repo / "HEAD").exists() or not self._has_commit(repo, s)]
        if missing:
            with self.locked(repo):
                self._ensure(repo)
                missing = [s for s in missing if not self._has_commit(repo, s)]
                self._fetch(repo, access, [f"+{s}:refs/gitops/commits/{s}" for s in missing])
        return repo

    def fetch_branch(
        self, provider: str, full_name: str, access: GitAccess, branch: str
    ) -> tuple[Path, str]:
        """The cache and the SHA ``branch`` points at on the forge now."""
        repo = self.path(provider, full_name)
        with self.locked(repo):
            self._ensure(repo)
            ref = f"refs/heads/{branch}"
            remote = self.ls_remote(repo, access, [ref])
            if ref not in remote:
                raise CheckoutError(f"branch {branch!r} does not exist on {full_name}")
            sha = remote[ref]
            if not self._has_commit(repo, sha):
                self._fetch(repo, access, [f"+{ref}:refs/gitops/heads/{branch}"])
            else:
                self._git(repo, "update-ref", f"refs/gitops/heads/{branch}", sha)
        return repo, sha

    def prepare_pull_request(
        self, provider: str, full_name: str, access: GitAccess, pr: PullRequest
    ) -> tuple[Path, MergeResult]:
        """Fetch ``pr``'s head (``pr.head_sha``), the current head of its base branch and the
        forge's merge ref, and find the merge result to preview.

        The head is ``pr.head_sha`` even when the PR moved on since (the job compares with the
        PR's latest head itself); the base is the base branch's head *now*, because that is what
        the merge would land on."""
        repo = self.path(provider, full_name)
        base_ref = f"refs/heads/{pr.base_ref}"
        local = f"refs/gitops/pull/{pr.number}"
        with self.locked(repo):
            self._ensure(repo)
            remote = self.ls_remote(repo, access, [base_ref, pr.head_fetch_ref, pr.merge_ref])
            if base_ref not in remote:
                raise CheckoutError(f"base branch {pr.base_ref!r} does not exist on {full_name}")
            base_sha = remote[base_ref]
            merge_sha = remote.get(pr.merge_ref)
            wanted = [(f"{local}/base", base_sha), (f"{local}/head", pr.head_sha)]
            if merge_sha is not None:
                wanted.append((f"{local}/merge", merge_sha))
            # By SHA, as ls-remote answered: a ref moving meanwhile cannot hand us another
            # commit, and git skips the ref listing. (A head that moved on since the event is
            # still fetched: forges serve any reachable commit.)
            missing = [f"+{sha}:{dst}" for dst, sha in wanted if not self._has_commit(repo, sha)]
            self._fetch(repo, access, missing)
            for dst, sha in wanted:
                self._git(repo, "update-ref", dst, sha)
            if merge_sha is not None and self._parents(repo, merge_sha) == [base_sha, pr.head_sha]:
                return repo, MergeResult(base_sha, pr.head_sha, merge_sha, "forge")
            return repo, self._merge(repo, base_sha, pr.head_sha, f"{local}/local-merge")

    def _parents(self, repo: Path, sha: str) -> list[str]:
        out = self._git(repo, "rev-list", "--parents", "-n", "1", sha).stdout.decode().split()
        return out[1:]

    def _merge(self, repo: Path, base: str, head: str, ref: str | None) -> MergeResult:
        proc = self._git(
            repo, "merge-tree", "--write-tree", "--name-only", "-z", base, head, ok=(0, 1)
        )
        fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        tree = fields[0]
        if proc.returncode == 1:
            # <tree> NUL <conflicted file> NUL ... NUL NUL <informational messages>
            files = []
            for name in fields[1:]:
                if not name:
                    break
                files.append(name)
            return MergeResult(base, head, None, None, tuple(sorted(set(files))))
        # Deterministic: the same base and head give the same merge SHA in every worker.
        times = self._git(repo, "show", "-s", "--format=%ct", base, head).stdout.split()
        stamp = max(int(t) for t in times)
        env = {
            **MERGE_IDENTITY,
            "GIT_AUTHOR_DATE": f"@{stamp} +0000",
            "GIT_COMMITTER_DATE": f"@{stamp} +0000",
        }
        sha = (
            self._git(
                repo,
                "commit-tree",
                tree,
                "-p",
                base,
                "-p",
                head,
                "-m",
                f"Merge {head} into {base} (gitops-bot preview)",
                env=env,
            )
            .stdout.decode()
            .strip()
        )
        if ref is not None:
            self._git(repo, "update-ref", ref, sha)
        return MergeResult(base, head, sha, "local")


def local_merge(
    repo: Path, base: str, head: str, *, git_timeout: float = GIT_TIMEOUT
) -> MergeResult:
    """Merge commit ``head`` into commit ``base`` (full SHAs) in any repository (``gitops-bot
    preview --merge`` in a person's clone), exactly as the cache merges a pull request whose
    merge ref is stale: the same inputs give the same merge SHA. Writes git objects, no ref."""
    return RepoCache(repo.parent, git_timeout=git_timeout)._merge(repo, base, head, None)
