"""What a Kustomize app reads, found by reading its kustomization files (no kustomize run).

Used twice: before rendering, to refuse remote bases (unless the app allows them) and
references that leave the checkout; and for changed-app detection, to know every file and
directory an app depends on -- bases, components, patches, generator files -- even outside the
app's own directory.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import RenderError
from bot.manifests.loader import PathGuard, load_documents, read_text

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

MSG_REMOTE = (
    "remote kustomize base {entry!r} in {file}: remote bases are off; vendor it into the "
    "repository, or set render.kustomize.allowRemoteBases: true for this app in .gitops.yaml"
)
MSG_OUTSIDE = "{file} refers to {entry!r}, which is outside the repository; refusing to render"
MSG_MISSING = "{file} refers to {entry!r}, which does not exist"

# `host.tld/org/repo//path?ref=x`, `https://...`, `git@host:org/repo`, `git::...`
_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|git@|git::)", re.I)
# `github.com/org/repo//dir`: a first path segment that looks like a host name
_HOST_PATH = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+(:[0-9]+)?/", re.I)


def find_kustomization(root: Path, rel_dir: str) -> str | None:
    """The repo-relative path of the kustomization file in ``rel_dir``, if there is one."""
    for name in KUSTOMIZATION_FILES:
        rel = name if rel_dir in ("", ".") else f"{rel_dir}/{name}"
        if (root / rel).is_file():
            return rel
    return None


def is_remote(entry: str, *, exists_locally: bool = False) -> bool:
    """Whether a kustomization entry is a URL kustomize would fetch.

    A host-like first segment (``github.com/...``) is remote unless such a local path exists:
    kustomize itself tries the local path first."""
    if _URL.match(entry):
        return True
    if exists_locally:
        return False
    return bool(_HOST_PATH.match(entry)) or "?ref=" in entry


@dataclass
class References:
    """Everything a kustomization reads, repo-relative."""

    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    remote: list[tuple[str, str]] = field(default_factory=list)  # (kustomization file, url)
    errors: list[RenderError] = field(default_factory=list)


def _entries(data: dict[str, Any]) -> list[tuple[str, bool]]:
    """(path, may_be_dir) for every path-valued field of one kustomization."""
    out: list[tuple[str, bool]] = []

    def strings(value: Any, may_be_dir: bool) -> None:
        if isinstance(value, str):
            # inline patches/plugin configs are YAML text, not paths
            if ("\n" not in value and ":" not in value.split("/", 1)[0][1:]) or is_remote(value):
                out.append((value, may_be_dir))
        elif isinstance(value, list):
            for item in value:
                strings(item, may_be_dir)

    for key in ("resources", "bases", "components", "generators", "transformers", "validators"):
        strings(data.get(key), True)
    for key in ("crds", "patchesStrategicMerge", "configurations"):
        strings(data.get(key), False)
    for key in ("patches", "patchesJson6902", "replacements"):
        for item in data.get(key) or []:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                out.append((item["path"], False))
            elif key == "patches" or key == "replacements":
                strings(item, False)
    openapi = data.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        out.append((openapi["path"], False))
    for key in ("configMapGenerator", "secretGenerator"):
        for gen in data.get(key) or []:
            if not isinstance(gen, dict):
                continue
            for spec in gen.get("files") or []:
                if isinstance(spec, str):
                    out.append((spec.split("=", 1)[-1], False))
            envs = list(gen.get("envs") or [])
            if isinstance(gen.get("env"), str):
                envs.append(gen["env"])
            out.extend((e, False) for e in envs if isinstance(e, str))
    helm_globals = data.get("helmGlobals")
    if isinstance(helm_globals, dict) and isinstance(helm_globals.get("chartHome"), str):
        out.append((helm_globals["chartHome"], True))
    return out


def references(
    root: Path, rel_dir: str, *, refs: References | None = None, guard: PathGuard | None = None
) -> References:
    """Walk the kustomization in ``rel_dir`` and everything it includes, recursively."""
    refs = refs if refs is not None else References()
    guard = guard if guard is not None else PathGuard(root)
    rel_dir = posixpath.normpath(rel_dir)
    if rel_dir in refs.dirs:
        return refs
    refs.dirs.add(rel_dir)
    file = find_kustomization(root, rel_dir)
    if file is None:
        return refs
    refs.files.add(file)
    try:
        docs = load_documents(read_text(root, file), name=file)
    except RenderError as exc:
        refs.errors.append(exc)
        return refs
    data = docs[0].data if docs else None
    if not isinstance(data, dict):
        return refs
    base = "" if rel_dir == "." else rel_dir
    for entry, may_be_dir in _entries(data):
        joined = (
            posixpath.normpath(posixpath.join(base, entry)) if base else posixpath.normpath(entry)
        )
        local = not joined.startswith("../") and os.path.lexists(root / joined)
        if is_remote(entry, exists_locally=local):
            refs.remote.append((file, entry))
            continue
        if entry.startswith("/") or joined == ".." or joined.startswith("../"):
            refs.errors.append(RenderError(MSG_OUTSIDE.format(file=file, entry=entry), file=file))
            continue
        path = root / joined
        if not guard.inside(path):
            refs.errors.append(RenderError(MSG_OUTSIDE.format(file=file, entry=entry), file=file))
            continue
        if may_be_dir and path.is_dir():
            references(root, joined, refs=refs, guard=guard)
        else:
            # a missing file is kustomize's error to report; it is still an input (it may appear)
            refs.files.add(joined)
    return refs
