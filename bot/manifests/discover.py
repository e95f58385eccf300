"""Finding the apps of a repository that has no ``.gitops.yaml``.

The rule, applied in this order (documented in docs/gitops-yaml.md):

1. Every directory holding a ``kustomization.yaml`` (or ``.yml``/``Kustomization``) that no
   other kustomization includes, and every directory holding a ``Chart.yaml`` that is not inside
   another chart or an included kustomization directory, is an app.
2. Otherwise, for each of ``deploy/``, ``manifests/`` and ``k8s/`` at the root: if it holds
   YAML/JSON files directly, it is one app; else each of its subdirectories holding YAML/JSON
   (at any depth) is an app.

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

PLAIN_ROOTS = ("deploy", "manifests", "k8s")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _walk(root: Path) -> list[tuple[str, list[str], list[str]]]:
    out = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(current, root).replace(os.sep, "/")
        out.append((rel, dirs, [f for f in files if not f.startswith(".")]))
    return out


def _has_manifests(root: Path, rel: str) -> bool:
    for _current, dirs, files in os.walk(root / rel):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.endswith(MANIFEST_SUFFIXES) and not f.startswith(".") for f in files):
            return True
    return False


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
    for rel in kustomize_dirs:
        refs = references(root, rel)
        included |= refs.dirs - {rel}
    roots = [rel for rel in kustomize_dirs if rel not in included]
    chart_dirs = [rel for rel, _d, files in tree if "Chart.yaml" in files]
    for rel in chart_dirs:
        covered = [
            other
            for other in [*chart_dirs, *included]
            if other != rel and (other == "." or rel.startswith(other + "/"))
        ]
        if not covered and rel not in included:
            roots.append(rel)
    if roots:
        return _names(sorted(set(roots)))

    paths: list[str] = []
    for top in PLAIN_ROOTS:
        if not (root / top).is_dir():
            continue
        entries = sorted(os.listdir(root / top))
        direct = [
            e
            for e in entries
            if not e.startswith(".")
            and e.endswith(MANIFEST_SUFFIXES)
            and (root / top / e).is_file()
        ]
        if direct:
            paths.append(top)
            continue
        for entry in entries:
            rel = f"{top}/{entry}"
            if not entry.startswith(".") and (root / rel).is_dir() and _has_manifests(root, rel):
                paths.append(rel)
    return _names(paths)
