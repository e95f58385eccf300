"""Finding the apps of a repository that has no ``.gitops.yaml``.

The rule (documented in docs/gitops-yaml.md):

1. Every directory holding a ``kustomization.yaml`` (or ``.yml``/``Kustomization``) that no
   other kustomization includes, and every directory holding a ``Chart.yaml`` that is not inside
   another chart or an included kustomization directory, is an app.
2. Plain manifests: for each top-level directory, if it holds manifest files directly, it is
   one app; else each of its subdirectories holding manifest files (at any depth) is an app.
   A manifest file here is a ``.yaml``/``.yml``/``.json`` file that looks like a Kubernetes
   object (a top-level ``apiVersion`` and ``kind``) and that no app of step 1 reads: files
   inside a chart or a kustomization directory, and files a kustomization refers to, belong to
   that app and make no plain app.

Directories and files starting with '.' are ignored. An app's name is its directory's name,
or its path with '/' replaced by '-' when two directories share a name, lower-cased with every
run of other characters than a-z, 0-9 and '-' made one '-' (names are DNS labels); names that
still collide get a short hash of their path. Discovered apps use
target ``default``, no default namespace and prune on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

from bot.manifests.config import AppSpec
from bot.manifests.kustomize import KUSTOMIZATION_FILES, references

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _walk(root: Path) -> list[tuple[str, list[str], list[str]]]:
    out = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(current, root).replace(os.sep, "/")
        out.append((rel, dirs, [f for f in files if not f.startswith(".")]))
    return out


def _names(paths: list[str]) -> list[AppSpec]:
    base = [p.rsplit("/", 1)[-1] if p != "." else "root" for p in paths]
    apps = []
    for path, name in zip(paths, base, strict=True):
        if base.count(name) > 1:
            name = path.replace("/", "-")
        # app names are DNS labels (they name the ApplySet parent and are typed in /sync)
        name = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-") or "app"
        apps.append(AppSpec(name=name, path=path))
    seen = [app.name for app in apps]
    return [
        dataclasses.replace(app, name=_unique(app, seen)) if seen.count(app.name) > 1 else app
        for app in apps
    ]


def _unique(app: AppSpec, names: list[str]) -> str:
    """Directories that differ only in case or punctuation get a short hash of their path."""
    digest = hashlib.sha256(app.path.encode()).hexdigest()[:6]
    return f"{app.name[:56].strip('-')}-{digest}"


def discover_apps(root: Path) -> list[AppSpec]:
    """The apps of the checkout at ``root`` by the rule in this module's docstring."""
    tree = _walk(root)
    kustomize_dirs = [
        rel for rel, _d, files in tree if any(f in files for f in KUSTOMIZATION_FILES)
    ]
    included: set[str] = set()
    claimed_files: set[str] = set()
    for rel in kustomize_dirs:
        refs = references(root, rel)
        included |= refs.dirs - {rel}
        claimed_files |= refs.files
    roots = [rel for rel in kustomize_dirs if rel not in included]
    chart_dirs = [rel for rel, _d, files in tree if "Chart.yaml" in files]
    for rel in chart_dirs:
        covered = [
            other for other in [*chart_dirs, *included] if other != rel and _under(rel, other)
        ]
        if not covered and rel not in included:
            roots.append(rel)
    plain = _Plain(
        root, claimed_dirs={*kustomize_dirs, *included, *chart_dirs}, files=claimed_files
    )
    return _names(sorted({*roots, *plain.apps()}))


def _under(path: str, folder: str) -> bool:
    """Whether repo-relative ``path`` is ``folder`` or inside it ('.' holds everything)."""
    return folder == "." or path == folder or path.startswith(folder + "/")


# A YAML document or JSON object with apiVersion and kind at its top level.
_YAML_OBJECT = (re.compile(r"(?m)^apiVersion[ \t]*:"), re.compile(r"(?m)^kind[ \t]*:"))
_JSON_OBJECT = (re.compile(r'"apiVersion"\s*:'), re.compile(r'"kind"\s*:'))
SNIFF_BYTES = 256 * 1024


class _Plain:
    """Step 2 of the rule: directories of plain manifests nobody else claims."""

    def __init__(self, root: Path, *, claimed_dirs: set[str], files: set[str]) -> None:
        self.root, self.claimed_dirs, self.claimed_files = root, claimed_dirs, files

    def apps(self) -> list[str]:
        found: list[str] = []
        for top in _subdirs(self.root, "."):
            if self._claimed(top):
                continue
            if self._holds(top, recursive=False):
                found.append(top)
                continue
            found.extend(
                sub
                for sub in _subdirs(self.root, top)
                if not self._claimed(sub) and self._holds(sub, recursive=True)
            )
        return found

    def _claimed(self, rel_dir: str) -> bool:
        return any(_under(rel_dir, folder) for folder in self.claimed_dirs)

    def _holds(self, rel_dir: str, *, recursive: bool) -> bool:
        """Whether ``rel_dir`` holds a manifest file no step-1 app reads."""
        pending = [rel_dir]
        while pending:
            current = pending.pop()
            for entry in sorted(os.scandir(self.root / current), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                rel = f"{current}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not self._claimed(rel):
                        pending.append(rel)
                elif (
                    entry.name.endswith(MANIFEST_SUFFIXES)
                    and rel not in self.claimed_files
                    and _looks_like_object(Path(entry.path))
                ):
                    return True
        return False


def _subdirs(root: Path, rel_dir: str) -> list[str]:
    prefix = "" if rel_dir == "." else f"{rel_dir}/"
    return [
        f"{prefix}{entry.name}"
        for entry in sorted(os.scandir(root / rel_dir), key=lambda e: e.name)
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
    ]


def _looks_like_object(path: Path) -> bool:
    """A cheap look at the start of a file: does it hold a Kubernetes object? (Rendering reads
    it properly; discovery only has to tell manifests from CI files, values and the like.)"""
    try:
        with path.open("rb") as handle:
            text = handle.read(SNIFF_BYTES).decode("utf-8", "replace")
    except OSError:
        return False
    patterns = _JSON_OBJECT if path.name.endswith(".json") else _YAML_OBJECT
    return all(pattern.search(text) for pattern in patterns)
