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
The same inputs tell which changed files no app reads (:attr:`Selection.unowned_files`): a
change there deploys nothing, and every preview says so.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.manifests.config import CONFIG_FILE, AppSpec, RepoConfig
from bot.manifests.kustomize import references
from bot.manifests.render import RenderedApp, _chart_dependencies, detect_renderer
from bot.model import ObjectError


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


@dataclass
class Selection:
    """The apps a preview covers and what the change touches outside them."""

    names: list[str] = field(default_factory=list)
    """Apps to preview: those of the head configuration in order, then those only at base."""
    errors: list[ObjectError] = field(default_factory=list)
    """Apps asked for by name that exist at neither commit (each error lists the known ones)."""
    unowned_files: list[str] = field(default_factory=list)
    """Changed files that no app reads at either commit (sorted; ``.gitops.yaml`` excluded:
    its changes affect the apps whose entries changed)."""


def select_apps(
    *,
    config_old: RepoConfig | None,
    config_new: RepoConfig,
    changed_files: Iterable[str],
    base_root: Path | None = None,
    head_root: Path | None = None,
    apps: Sequence[str] | None = None,
) -> Selection:
    """Which apps a preview of this change covers: those named in ``apps`` (even unaffected
    ones), else the affected ones (:func:`affected_apps`); and which changed files no app
    reads. A name known at neither commit is an error listing the known apps."""
    changed = sorted(set(changed_files))
    inputs = _Inputs(base_root=base_root, head_root=head_root)
    selection = Selection(unowned_files=_unowned(changed, config_old, config_new, inputs))
    if apps:
        known = [*config_new.names, *(n for n in (config_old.names if config_old else []))]
        known = list(dict.fromkeys(known))
        for name in dict.fromkeys(apps):
            if name in known:
                selection.names.append(name)
            else:
                selection.errors.append(
                    ObjectError(
                        MSG_UNKNOWN_APP.format(name=name, known=", ".join(sorted(known)) or "none"),
                        reason="UnknownApp",
                    )
                )
    else:
        selection.names = _affected(config_old, config_new, changed, inputs)
    return selection


MSG_UNKNOWN_APP = "unknown app {name!r}: not in the configuration at base or head (known: {known})"


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
    inputs = _Inputs(base_root=base_root, head_root=head_root, rendered=rendered)
    return _affected(config_old, config_new, set(changed_files), inputs)


class _Inputs:
    """What each app reads, at base or at head, read once per app and side."""

    def __init__(
        self,
        *,
        base_root: Path | None,
        head_root: Path | None,
        rendered: Iterable[RenderedApp] = (),
    ) -> None:
        self.roots = {"base": base_root, "head": head_root}
        self.known: dict[str, list[RenderedApp]] = {}
        for item in rendered:
            self.known.setdefault(item.spec.name, []).append(item)
        self.read: dict[tuple[str, str], list[RenderedApp]] = {}

    def of(self, spec: AppSpec, side: str) -> list[RenderedApp]:
        key = (spec.name, side)
        if key not in self.read:
            root = self.roots[side]
            sources = [r for r in self.known.get(spec.name, []) if r.spec == spec]
            if not sources and root is not None:
                sources = [app_inputs(root, spec)]
            if not sources:
                # nothing to read: fall back to the app directory itself
                sources = [RenderedApp(spec=spec, dirs={spec.path})]
            self.read[key] = sources
        return self.read[key]

    def reads(self, spec: AppSpec, side: str, path: str) -> bool:
        return any(source.reads(path) for source in self.of(spec, side))


def _affected(
    config_old: RepoConfig | None,
    config_new: RepoConfig,
    changed: Iterable[str],
    inputs: _Inputs,
) -> list[str]:
    if config_old is None:
        return list(config_new.names)
    paths = list(changed)
    old = {a.name: a for a in config_old.apps}
    new = {a.name: a for a in config_new.apps}
    out: list[str] = []
    for name in [*new, *(n for n in old if n not in new)]:
        before, after = old.get(name), new.get(name)
        if (
            before is None
            or after is None
            or before != after
            or any(inputs.reads(after, "head", path) for path in paths)
            or any(inputs.reads(before, "base", path) for path in paths)
        ):
            out.append(name)
    return out


def _unowned(
    changed: list[str],
    config_old: RepoConfig | None,
    config_new: RepoConfig,
    inputs: _Inputs,
) -> list[str]:
    sides = [(config_new, "head")] + ([(config_old, "base")] if config_old is not None else [])
    return [
        path
        for path in changed
        if path != CONFIG_FILE
        and not any(
            inputs.reads(spec, side, path) for config, side in sides for spec in config.apps
        )
    ]
