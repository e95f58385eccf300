"""The one result model every engine produces and every report consumes.

The offline diff (two commits), the live preview (server-side dry-run), the deploy (apply +
prune + health) and drift detection all end in a :class:`RunResult`: per app, the objects that
are created / updated / deleted / unchanged, each with its (already masked) diff and where in
Git it came from, plus the errors collected per object. A report renderer consumes it without
knowing which engine made it. Two analyses of :mod:`bot.impact` add to it: each change's
:class:`Origin` in a live preview (the PR's own change, drift, or both) and the workloads whose
pods a change replaces (:class:`Restart`).

Everything here is plain data: no I/O, safe to serialise to JSON (``to_json``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object as parsed from YAML/JSON (apiVersion, kind, metadata, ...)."""


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one Kubernetes object. ``namespace`` is None for cluster-scoped objects."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @property
    def group(self) -> str:
        """API group ('' for the core group), e.g. 'apps' for 'apps/v1'."""
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity independent of API version: (group, kind, namespace or '', name)."""
        return (self.group, self.kind, self.namespace or "", self.name)

    @classmethod
    def of(cls, obj: Obj) -> ObjectRef:
        """The reference of a parsed object (missing fields become '')."""
        meta = obj.get("metadata") or {}
        return cls(
            api_version=str(obj.get("apiVersion") or ""),
            kind=str(obj.get("kind") or ""),
            namespace=meta.get("namespace") or None,
            name=str(meta.get("name") or ""),
        )

    def to_json(self) -> dict[str, str | None]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True)
class Source:
    """Where an object was declared: a file relative to the repository root, the index of the
    YAML document in that file (0-based), and the 1-based line the document starts on when
    known (rendered Kustomize/Helm output has no line in the repository)."""

    file: str
    document: int = 0
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "document": self.document, "line": self.line}


@dataclass
class Manifest:
    """One rendered, validated object that Git declares for an app, with its provenance."""

    app: str
    obj: Obj
    source: Source

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.obj)


class Change(enum.Enum):
    """What happens (or happened) to one object."""

    CREATE = "created"
    UPDATE = "updated"
    DELETE = "deleted"
    UNCHANGED = "unchanged"


class Origin(enum.Enum):
    """Whose doing a live preview's change is: the pull request's, the cluster's, or both.

    Set by :func:`bot.impact.classify_origins` from three states of each object: the base
    rendered, the merge result rendered, and the cluster (its dry-run answers)."""

    PR = "pr"  # the PR changes the object; the cluster matches what the base declares
    DRIFT = "drift"  # the cluster differs from the base; the PR does not touch the object
    BOTH = "both"  # the PR changes it, and the cluster already differs from the base too


class Health(enum.Enum):
    """Where an applied object ended after the health wait."""

    HEALTHY = "healthy"
    PROGRESSING = "progressing"  # still rolling out when the wait timed out
    DEGRADED = "degraded"  # the controller reported failure (e.g. ProgressDeadlineExceeded)
    UNKNOWN = "unknown"  # kinds we do not judge, or status unreadable


@dataclass
class ObjectChange:
    """One object's change. ``diff`` is a unified YAML diff, already normalized and with every
    Secret value masked; it is empty for UNCHANGED and may be empty for DELETE.

    In a live preview classified by :func:`bot.impact.classify_origins`, ``origin`` says whose
    change it is, and two more diffs (masked the same way) separate the two: ``pr_diff`` is the
    PR's own change (base → merge result) when the origin is PR or BOTH; ``drift_diff`` is how
    the cluster already differs from the base (cluster → base), which merging overwrites, when
    the origin is DRIFT or BOTH. ``diff`` stays what the run does to the cluster. An object the
    PR changes but the cluster already holds as the merge result declares is UNCHANGED with
    origin PR: merging changes nothing there."""

    ref: ObjectRef
    change: Change
    diff: str = ""
    source: Source | None = None
    origin: Origin | None = None
    pr_diff: str = ""
    drift_diff: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.ref.to_json()
        data["change"] = self.change.value
        data["diff"] = self.diff
        data["source"] = self.source.to_json() if self.source else None
        data["origin"] = self.origin.value if self.origin else None
        data["prDiff"] = self.pr_diff
        data["driftDiff"] = self.drift_diff
        return data


@dataclass
class ObjectError:
    """An error collected against one object (or the app as a whole when ``ref`` is None).

    ``transient`` tells the job whether retrying later may help (outage) or whether a person
    must change something first (invalid manifest, forbidden, conflict)."""

    message: str
    ref: ObjectRef | None = None
    file: str | None = None
    line: int | None = None
    reason: str | None = None  # e.g. the API's Status.reason: Invalid, Forbidden, Conflict
    transient: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "object": self.ref.to_json() if self.ref else None,
            "reason": self.reason,
            "transient": self.transient,
        }


@dataclass
class ObjectHealth:
    """The health of one applied object after the wait."""

    ref: ObjectRef
    health: Health
    reason: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.ref.to_json()
        data.update(health=self.health.value, reason=self.reason, message=self.message)
        return data


@dataclass(frozen=True)
class Restart:
    """A workload (Deployment, StatefulSet, DaemonSet) whose pods the change affects.

    ``restart`` is True when its pod template changes, so its pods are replaced; False when
    something it depends on changes but no pod is replaced (a ConfigMap or Secret changed in
    place, an ``OnDelete`` update strategy, a paused Deployment): the reasons say which.
    ``reasons`` name objects and fields, never a value (see :func:`bot.impact.workload_restarts`)."""

    ref: ObjectRef
    reasons: tuple[str, ...] = ()
    restart: bool = True

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.ref.to_json()
        data.update(restart=self.restart, reasons=list(self.reasons))
        return data


@dataclass
class AppResult:
    """Everything one run found for one app on one target."""

    name: str
    target: str
    changes: list[ObjectChange] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)
    health: list[ObjectHealth] = field(default_factory=list)
    notes: list[str] = field(
        default_factory=list
    )  # e.g. "skipped values.yaml: not a Kubernetes object"
    commit: str | None = None  # the commit the desired state was rendered from
    pruned: bool = False  # deploy only: whether the prune step ran
    restarts: list[Restart] = field(default_factory=list)  # workloads whose pods it affects

    def _of(self, kind: Change) -> list[ObjectChange]:
        return [c for c in self.changes if c.change is kind]

    @property
    def created(self) -> list[ObjectChange]:
        return self._of(Change.CREATE)

    @property
    def updated(self) -> list[ObjectChange]:
        return self._of(Change.UPDATE)

    @property
    def deleted(self) -> list[ObjectChange]:
        return self._of(Change.DELETE)

    @property
    def unchanged(self) -> list[ObjectChange]:
        return self._of(Change.UNCHANGED)

    @property
    def has_changes(self) -> bool:
        return any(c.change is not Change.UNCHANGED for c in self.changes)

    @property
    def classified(self) -> bool:
        """Whether the changes carry an :class:`Origin` (a live preview split into the PR's own
        changes and drift)."""
        return any(c.origin is not None for c in self.changes)

    @property
    def ok(self) -> bool:
        """No errors and nothing unhealthy."""
        return not self.errors and all(
            h.health in (Health.HEALTHY, Health.UNKNOWN) for h in self.health
        )

    def to_json(self) -> dict[str, Any]:
        """The stable JSON shape documented in the README (``--format json``)."""
        return {
            "name": self.name,
            "target": self.target,
            "commit": self.commit,
            "created": [c.to_json() for c in self.created],
            "updated": [c.to_json() for c in self.updated],
            "deleted": [c.to_json() for c in self.deleted],
            "unchanged": [c.to_json() for c in self.unchanged],
            "errors": [e.to_json() for e in self.errors],
            "health": [h.to_json() for h in self.health],
            "notes": list(self.notes),
            "restarts": [r.to_json() for r in self.restarts],
        }


class Mode(enum.Enum):
    """Which engine produced a :class:`RunResult`."""

    OFFLINE = "offline"  # desired state at head vs desired state at base (no cluster)
    LIVE = "live"  # desired state at head vs the cluster (server-side dry-run)
    DEPLOY = "deploy"  # applied, pruned, health-checked
    DRIFT = "drift"  # the cluster vs the last deployed commit


@dataclass
class RunResult:
    """The result of one preview, deploy or drift run over some apps."""

    mode: Mode
    apps: list[AppResult] = field(default_factory=list)
    base: str | None = None
    head: str | None = None
    errors: list[ObjectError] = field(
        default_factory=list
    )  # not tied to one app (bad .gitops.yaml)
    dry_run: bool = False  # DEPLOY only: a server-side dry run, nothing was changed
    unowned_files: list[str] = field(
        default_factory=list
    )  # changed files (repository paths) that belong to no app: nothing previews them

    @property
    def has_changes(self) -> bool:
        return any(a.has_changes for a in self.apps)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(a.errors for a in self.apps)

    @property
    def ok(self) -> bool:
        return not self.errors and all(a.ok for a in self.apps)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "base": self.base,
            "head": self.head,
            "apps": [a.to_json() for a in self.apps],
            "errors": [e.to_json() for e in self.errors],
            "dryRun": self.dry_run,
            "unownedFiles": list(self.unowned_files),
        }
