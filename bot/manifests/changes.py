"""Which apps a change touches, so a PR in a monorepo previews only what it affects.

An app is affected when

* it exists at only one of the two commits (added or removed in ``.gitops.yaml`` or discovery),
* its entry in ``.gitops.yaml`` changed (any setting: path, target, namespace, render options...),
  -- so a change to ``.gitops.yaml`` affects exactly the apps whose entries changed, or
* a changed file is one of its inputs at either commit: anything under its path, and for
  Kustomize every base, component, patch and generator file its kustomizations reference
  (recursively, even outside the app directory); for Helm the values files and local
  ``file://`` chart dependencies.

Inputs are found by reading kustomization/Chart files, not by rendering, so detection is cheap.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from pathlib import Path

from bot.manifests.config import AppSpec, RepoConfig
from bot.manifests.kustomize import references
from bot.manifests.render import RenderedApp, _chart_dependencies, detect_renderer


def app_inputs(root: Path, spec: AppSpec) -> RenderedApp:
    """The files and directories ``spec`` reads in the checkout at ``root`` (no objects)."""
    result = RenderedApp(spec=spec)
    result.dirs.add(spec.path)
    if not (root / spec.path).is_dir():
        return result
    result.renderer = detect_renderer(root, spec)
    if result.renderer == "kustomize":
        refs = references(root, spec.path)
        result.files |= refs.files
        result.dirs |= refs.dirs
    elif result.renderer == "helm":
        _chart_dependencies(root, spec, result)
        for values in spec.render.helm_values:
            result.files.add(posixpath.normpath(posixpath.join(spec.path, values)))
    return result


def affected_apps(
    *,
    config_old: RepoConfig | None,
    config_new: RepoConfig,
    changed_files: Iterable[str],
    base_root: Path | None = None,
    head_root: Path | None = None,
    rendered: Iterable[RenderedApp] = (),
) -> list[str]:
    """Names of the apps the change affects: those of ``config_new`` in order, then removed ones.

    Inputs come from ``rendered`` (renders of either commit) where given, and otherwise from
    reading the checkouts at ``base_root``/``head_root``. With ``config_old`` None (the base has
    no readable configuration) every app of ``config_new`` counts as affected."""
    changed = set(changed_files)
    if config_old is None:
        return list(config_new.names)
    old = {a.name: a for a in config_old.apps}
    new = {a.name: a for a in config_new.apps}
    known: dict[str, list[RenderedApp]] = {}
    for item in rendered:
        known.setdefault(item.spec.name, []).append(item)

    def touched(spec: AppSpec, root: Path | None) -> bool:
        sources = [r for r in known.get(spec.name, []) if r.spec == spec]
        if not sources and root is not None:
            sources = [app_inputs(root, spec)]
        if not sources:
            # nothing to read: fall back to the app directory itself
            sources = [RenderedApp(spec=spec, dirs={spec.path})]
        return any(r.reads(path) for r in sources for path in changed)

    out: list[str] = []
    for name in [*new, *(n for n in old if n not in new)]:
        before, after = old.get(name), new.get(name)
        if (
            before is None
            or after is None
            or before != after
            or touched(after, head_root)
            or touched(before, base_root)
        ):
            out.append(name)
    return out
