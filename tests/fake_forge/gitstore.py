"""Real bare git repositories behind the fake forges, and git's smart HTTP through the real
``git http-backend`` CGI program.

Tests write commits with :func:`commit` (plumbing on a private index: fast, no work tree), and
the fake computes pull request refs as GitHub does: ``refs/pull/N/head`` and, with
``git merge-tree``, the test merge ``refs/pull/N/merge`` (absent when the merge conflicts).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

AUTHOR = {
    "GIT_AUTHOR_NAME": "Fake Forge",
    "GIT_AUTHOR_EMAIL": "fake@forge.invalid",
    "GIT_COMMITTER_NAME": "Fake Forge",
    "GIT_COMMITTER_EMAIL": "fake@forge.invalid",
}


def git_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C", **AUTHOR)
    env.update(extra)
    return env


def git(
    repo: Path,
    *args: str,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=input,
        capture_output=True,
        env=dict(env) if env is not None else git_env(),
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def init_bare(path: Path, default_branch: str) -> None:
    path.mkdir(parents=True)
    git(path, "init", "--bare", "--quiet", f"--initial-branch={default_branch}")
    # GitHub serves any reachable commit by SHA (old heads of force-pushed PRs included).
    git(path, "config", "uploadpack.allowAnySHA1InWant", "true")
    git(path, "config", "http.receivepack", "false")


def rev(repo: Path, ref: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip()
    return out or None


def heads(repo: Path) -> dict[str, str]:
    """Branch name → SHA, in one call."""
    out = git(repo, "for-each-ref", "--format=%(refname:lstrip=2) %(objectname)", "refs/heads")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def commit(
    repo: Path,
    branch: str,
    files: Mapping[str, str | bytes | None],
    *,
    message: str = "change",
    parents: list[str] | None = None,
    replace: bool = False,
) -> str:
    """Commit ``files`` (path → content; ``None`` deletes) on top of ``branch`` (or of
    ``parents``) and move the branch there. ``replace`` starts from an empty tree. Written with
    ``git fast-import`` (one pack), so a commit of 10,000 files takes a fraction of a second."""
    if parents is None:
        head = rev(repo, f"refs/heads/{branch}")
        parents = [head] if head else []
    msg = message.encode()
    stream = [
        f"commit refs/heads/{branch}\n".encode(),
        f"committer {AUTHOR['GIT_COMMITTER_NAME']} <{AUTHOR['GIT_COMMITTER_EMAIL']}> "
        f"{int(time.time())} +0000\n".encode(),
        f"data {len(msg)}\n".encode() + msg + b"\n",
    ]
    if parents:
        stream.append(f"from {parents[0]}\n".encode())
        stream += [f"merge {p}\n".encode() for p in parents[1:]]
    if replace:
        stream.append(b"deleteall\n")
    for name, content in files.items():
        assert "\n" not in name and not name.startswith('"'), name
        if content is None:
            stream.append(f"D {name}\n".encode())
            continue
        data = content.encode() if isinstance(content, str) else content
        stream.append(f"M 100644 inline {name}\ndata {len(data)}\n".encode() + data + b"\n")
    git(repo, "fast-import", "--quiet", "--force", input=b"".join(stream))
    sha = rev(repo, f"refs/heads/{branch}")
    assert sha is not None
    return sha


def test_merge(repo: Path, base: str, head: str) -> str | None:
    """The merge commit GitHub would write to ``refs/pull/N/merge``, or None on conflict."""
    proc = subprocess.run(
        ["git", "-C", str(repo), "merge-tree", "--write-tree", base, head],
        capture_output=True,
        env=git_env(),
        timeout=120,
        check=False,
    )
    if proc.returncode == 1:
        return None
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace"))
    tree = proc.stdout.decode().split("\n", 1)[0].strip()
    return git(
        repo, "commit-tree", tree, "-p", base, "-p", head, "-m", f"Merge {head} into {base}"
    ).strip()


def http_backend(
    root: Path,
    *,
    method: str,
    path_info: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    remote_user: str,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run ``git http-backend`` (the CGI program git ships) for one request."""
    env = git_env(
        GIT_PROJECT_ROOT=str(root),
        GIT_HTTP_EXPORT_ALL="1",
        PATH_INFO=path_info,
        REQUEST_METHOD=method,
        QUERY_STRING=query,
        CONTENT_TYPE=headers.get("content-type", ""),
        CONTENT_LENGTH=str(len(body)),
        REMOTE_USER=remote_user,
        REMOTE_ADDR="127.0.0.1",
        SERVER_PROTOCOL="HTTP/1.1",
    )
    if headers.get("content-encoding"):
        env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
    if headers.get("git-protocol"):
        env["GIT_PROTOCOL"] = headers["git-protocol"]
    proc = subprocess.run(
        ["git", "http-backend"],
        input=body,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    head, _, payload = proc.stdout.partition(b"\r\n\r\n")
    if not _:
        head, _, payload = proc.stdout.partition(b"\n\n")
    status = 200
    out_headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            out_headers.append((name.strip(), value.strip()))
    if proc.returncode != 0 and status == 200:
        status = 500
    return status, out_headers, payload
