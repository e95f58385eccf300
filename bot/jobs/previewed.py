"""What the PR showed, kept for the deploy to check itself against (issue 15.4).

The preview job keeps each pull request's last posted preview in Redis (:mod:`bot.state`,
``<pr>:preview``, bounded TTL): the merge result it previewed, that commit's *tree*, and every
object it showed changing, per app. The deploy of the merge compares what it changed, object
by object, with that record.

Why the tree: merging on the forge makes a new commit (a merge commit, a squash, a rebase), so
the pushed SHA never equals the previewed merge result's; but when nothing else landed on the
base meanwhile, its tree does. A different tree is said in the report (another merge landed, or
the PR changed after its last preview), and the objects are compared all the same.

The comparison is pure: :func:`compare` gives "as previewed", or the objects the deploy changed
that the preview did not show and those the preview showed that did not change (or changed
otherwise: created where an update was shown, ...).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.model import AppResult, Change, ObjectRef, RunResult

SYMBOL = {"created": "+", "updated": "~", "deleted": "-"}


def commit_tree(repo: Path, sha: str) -> str | None:
    """The tree of commit ``sha`` in the git repository ``repo`` (None when git cannot say)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{sha}^{{tree}}"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.decode().strip()
    return out if proc.returncode == 0 and out else None


@dataclass(frozen=True, order=True)
class ObjectLine:
    """One object of one app, as the report lists it."""

    app: str
    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, app: str, ref: ObjectRef) -> ObjectLine:
        group, kind, namespace, name = ref.key
        return cls(app, group, kind, namespace, name)

    @property
    def label(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {where}{self.name}"

    def to_json(self) -> list[str]:
        return [self.app, self.group, self.kind, self.namespace, self.name]

    @classmethod
    def from_json(cls, data: Iterable[Any]) -> ObjectLine:
        app, group, kind, namespace, name = (str(x) for x in data)
        return cls(app, group, kind, namespace, name)


def changed_objects(apps: Iterable[AppResult]) -> dict[ObjectLine, str]:
    """Every object the apps create, update or delete → ``created``/``updated``/``deleted``."""
    out: dict[ObjectLine, str] = {}
    for app in apps:
        for change in app.changes:
            if change.change is not Change.UNCHANGED:
                out[ObjectLine.of(app.name, change.ref)] = change.change.value
    return out


@dataclass(frozen=True)
class PreviewRecord:
    """A PR's last posted preview: what the deploy of its merge is checked against."""

    number: int
    head_sha: str
    base_sha: str
    merge_sha: str
    tree: str | None
    #: ``live`` (dry-run against the clusters) or ``offline`` (fork, unreachable target)
    mode: str
    apps: tuple[str, ...]
    objects: Mapping[ObjectLine, str]
    #: apps whose preview was offline (their objects were compared with the base, not the
    #: cluster)
    offline_apps: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)

    @classmethod
    def of(
        cls,
        *,
        number: int,
        head_sha: str,
        merge_sha: str,
        tree: str | None,
        result: RunResult,
        offline_apps: Iterable[str] = (),
    ) -> PreviewRecord:
        return cls(
            number=number,
            head_sha=head_sha,
            base_sha=result.base or "",
            merge_sha=merge_sha,
            tree=tree,
            mode=result.mode.value,
            apps=tuple(a.name for a in result.apps),
            objects=changed_objects(result.apps),
            offline_apps=tuple(offline_apps),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "head": self.head_sha,
            "base": self.base_sha,
            "merge": self.merge_sha,
            "tree": self.tree,
            "mode": self.mode,
            "apps": list(self.apps),
            "objects": [[*line.to_json(), change] for line, change in sorted(self.objects.items())],
            "offlineApps": list(self.offline_apps),
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreviewRecord:
        objects = {ObjectLine.from_json(row[:5]): str(row[5]) for row in data.get("objects") or ()}
        return cls(
            number=int(data["number"]),
            head_sha=str(data.get("head") or ""),
            base_sha=str(data.get("base") or ""),
            merge_sha=str(data.get("merge") or ""),
            tree=data.get("tree"),
            mode=str(data.get("mode") or "live"),
            apps=tuple(str(a) for a in data.get("apps") or ()),
            objects=objects,
            offline_apps=tuple(str(a) for a in data.get("offlineApps") or ()),
            at=float(data.get("at") or 0),
        )


@dataclass(frozen=True)
class Check:
    """The deploy compared with its preview. ``unexpected``: changed by the deploy, not shown
    by the preview; ``missing``: shown by the preview, not changed by the deploy; ``otherwise``:
    both, but differently (``(line, previewed, deployed)``)."""

    record: PreviewRecord
    #: the pushed commit's tree is the previewed merge result's (None: unknown)
    same_tree: bool | None
    unexpected: list[tuple[ObjectLine, str]]
    missing: list[tuple[ObjectLine, str]]
    otherwise: list[tuple[ObjectLine, str, str]]

    @property
    def as_previewed(self) -> bool:
        return not (self.unexpected or self.missing or self.otherwise)

    @property
    def differences(self) -> int:
        return len(self.unexpected) + len(self.missing) + len(self.otherwise)


def compare(
    record: PreviewRecord,
    deployed: Mapping[ObjectLine, str],
    *,
    tree: str | None,
    elsewhere: Iterable[str] = (),
) -> Check:
    """Compare what the deploy changed (``deployed``, from :func:`changed_objects`) with the
    preview ``record``. ``tree`` is the pushed commit's tree. Apps in ``elsewhere`` were not
    deployed by this push for a reason the report gives (superseded by a newer push, paused):
    their previewed objects are not counted as missing."""
    skipped = set(elsewhere)
    shown = {line: change for line, change in record.objects.items() if line.app not in skipped}
    unexpected = sorted((line, change) for line, change in deployed.items() if line not in shown)
    missing = sorted((line, change) for line, change in shown.items() if line not in deployed)
    otherwise = sorted(
        (line, shown[line], change)
        for line, change in deployed.items()
        if line in shown and shown[line] != change
    )
    return Check(
        record=record,
        same_tree=record.tree == tree if record.tree and tree else None,
        unexpected=unexpected,
        missing=missing,
        otherwise=otherwise,
    )
