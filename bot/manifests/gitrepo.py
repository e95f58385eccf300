"""Reading commits of a local Git repository: resolve a ref, list changed files, check out a tree.

A checkout is a fresh temporary directory filled with ``git checkout-index`` from a private
index file: the repository's own index, work tree and refs are never touched, ``export-ignore``
attributes do not hide files (unlike ``git archive``), and symlinks stay symlinks so the
renderer can refuse the ones escaping the checkout. Treat the tree as read-only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bot.errors import PermanentError

GIT_TIMEOUT = 120.0


class GitError(PermanentError):
    """A git command failed (unknown ref, not a repository); the message has git's stderr."""


def _git_env(**extra: str) -> dict[str, str]:
    # Variables such as GIT_DIR/GIT_INDEX_FILE from the caller's environment would redirect us.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1", LC_ALL="C")
    env.update(extra)
    return env


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            env=env or _git_env(),
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {GIT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {args[0]} failed in {repo}: {stderr}")
    return proc.stdout.decode("utf-8", "surrogateescape")


def resolve_commit(repo: Path, ref: str) -> str:
    """The full SHA of the commit ``ref`` names (branch, tag, SHA, ``HEAD~1``...)."""
    if ref.startswith("-"):
        raise GitError(f"not a valid ref: {ref!r}")
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except GitError:
        raise GitError(f"{ref!r} is not a commit of the repository at {repo}") from None


def changed_files(repo: Path, base: str, head: str) -> list[str]:
    """Repo-relative paths that differ between the trees of ``base`` and ``head``, sorted.

    A rename lists both the old and the new path (renames are not collapsed), so an app losing
    a file and an app gaining it are both affected."""
    base_sha, head_sha = resolve_commit(repo, base), resolve_commit(repo, head)
    out = _git(repo, "diff", "--no-renames", "--name-only", "-z", base_sha, head_sha, "--")
    return sorted({p for p in out.split("\0") if p})


def _fill(repo: Path, sha: str, tmp: Path) -> Path:
    tree = tmp / "tree"
    tree.mkdir()
    env = _git_env(GIT_INDEX_FILE=str(tmp / "index"))
    _git(repo, "read-tree", sha, env=env)
    # parallel checkout (git >= 2.32; older versions ignore the setting): many small files
    _git(
        repo,
        "-c",
        "checkout.workers=0",
        f"--work-tree={tree}",
        "checkout-index",
        "--all",
        "--force",
        env=env,
    )
    return tree


@contextmanager
def checkout(repo: Path, ref: str) -> Iterator[Path]:
    """A temporary directory holding the tree of commit ``ref``; removed on exit."""
    with checkouts(repo, ref) as (tree,):
        yield tree


@contextmanager
def checkouts(repo: Path, *refs: str) -> Iterator[list[Path]]:
    """Temporary trees of several commits, written concurrently (git spends its time in
    I/O), in the order of ``refs``; all removed on exit."""
    shas = [resolve_commit(repo, ref) for ref in refs]
    temps = [Path(tempfile.mkdtemp(prefix="gitops-checkout-")) for _ in shas]
    try:
        if len(shas) == 1:
            yield [_fill(repo, shas[0], temps[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(shas)) as pool:
                trees = list(pool.map(_fill, [repo] * len(shas), shas, temps))
            yield trees
    finally:
        for tmp in temps:
            shutil.rmtree(tmp, ignore_errors=True)
