"""Health of applied workloads: the judgement of ``kubectl rollout status``, plus Jobs.

:func:`judge` is pure: one live object in, a verdict out. Deployments, StatefulSets and
DaemonSets are judged by ``observedGeneration`` against ``generation`` first (a status written
before the controller saw the new spec says nothing about it), then as kubectl's rollout status
viewers judge them; a Deployment whose Progressing condition has reason
``ProgressDeadlineExceeded`` is degraded. Jobs are healthy when Complete, degraded when Failed.
Other kinds are not judged (UNKNOWN: counted as fine).

The pods of a rollout are judged here too, purely: which pods are the rollout's new ones
(:func:`new_pods`) and which of them are stuck (:func:`pod_problem`): a container waiting with
a reason that does not go away by waiting (an image that cannot be pulled, a container that
keeps crashing, a missing ConfigMap or Secret). :mod:`bot.cluster.rollout` reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.model import Health, Obj

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})


@dataclass(frozen=True)
class Verdict:
    """``health`` PROGRESSING means "not done yet" while waiting, "timed out" at the end."""

    health: Health
    reason: str = ""
    message: str = ""

    @property
    def final(self) -> bool:
        return self.health is not Health.PROGRESSING


def needs_wait(kind: str, api_version: str) -> bool:
    """Whether the health wait looks at this kind."""
    group = api_version.rpartition("/")[0]
    return kind in WORKLOAD_KINDS and group in ("apps", "batch")


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def _observed(obj: Obj, status: dict[str, Any]) -> bool:
    generation = _int((obj.get("metadata") or {}).get("generation"))
    return generation <= _int(status.get("observedGeneration"), -1)


ON_DELETE = Verdict(Health.UNKNOWN, "OnDelete", "rollout status needs the RollingUpdate strategy")
"""StatefulSets and DaemonSets updated OnDelete have no rollout to wait for (as kubectl)."""
WAITING_SPEC = Verdict(Health.PROGRESSING, "Waiting", "waiting for the spec update to be observed")


def _deployment(obj: Obj, spec: dict[str, Any], status: dict[str, Any]) -> Verdict:
    if not _observed(obj, status):
        return WAITING_SPEC
    progressing = _condition(status, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Verdict(
            Health.DEGRADED,
            "ProgressDeadlineExceeded",
            str(progressing.get("message") or "the rollout exceeded its progress deadline"),
        )
    want = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    replicas = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    if updated < want:
        return Verdict(
            Health.PROGRESSING,
            "RollingOut",
            f"{updated} out of {want} new replicas have been updated",
        )
    if replicas > updated:
        return Verdict(
            Health.PROGRESSING,
            "RollingOut",
            f"{replicas - updated} old replicas are pending termination",
        )
    if available < updated:
        return Verdict(
            Health.PROGRESSING,
            "RollingOut",
            f"{available} of {updated} updated replicas are available",
        )
    return Verdict(Health.HEALTHY, "RolledOut", f"{available} of {want} replicas available")


def _statefulset(obj: Obj, spec: dict[str, Any], status: dict[str, Any]) -> Verdict:
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return ON_DELETE
    if _int(status.get("observedGeneration")) == 0 or not _observed(obj, status):
        return WAITING_SPEC
    want = _int(spec.get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    if ready < want:
        return Verdict(Health.PROGRESSING, "RollingOut", f"{ready} of {want} pods are ready")
    rolling = strategy.get("rollingUpdate")
    if isinstance(rolling, dict):
        # as kubectl: with rollingUpdate set (the server defaults it), the rollout is judged by
        # the updated count against the partition, not by the revisions
        partition = _int(rolling.get("partition"))
        updated = _int(status.get("updatedReplicas"))
        if updated < want - partition:
            return Verdict(
                Health.PROGRESSING,
                "RollingOut",
                f"{updated} out of {want - partition} new pods have been updated",
            )
        return Verdict(Health.HEALTHY, "RolledOut", f"{updated} new pods have been updated")
    if status.get("updateRevision") != status.get("currentRevision"):
        updated = _int(status.get("updatedReplicas"))
        return Verdict(
            Health.PROGRESSING,
            "RollingOut",
            f"{updated} pods at revision {status.get('updateRevision')}",
        )
    return Verdict(Health.HEALTHY, "RolledOut", f"{ready} of {want} pods ready")


def _daemonset(obj: Obj, spec: dict[str, Any], status: dict[str, Any]) -> Verdict:
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return ON_DELETE
    if not _observed(obj, status):
        return WAITING_SPEC
    desired = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    available = _int(status.get("numberAvailable"))
    if updated < desired:
        return Verdict(
            Health.PROGRESSING,
            "RollingOut",
            f"{updated} out of {desired} new pods have been updated",
        )
    if available < desired:
        return Verdict(
            Health.PROGRESSING, "RollingOut", f"{available} of {desired} updated pods are available"
        )
    return Verdict(Health.HEALTHY, "RolledOut", f"{available} of {desired} pods available")


def _job(obj: Obj, spec: dict[str, Any], status: dict[str, Any]) -> Verdict:
    for kind, health in (("Failed", Health.DEGRADED), ("Complete", Health.HEALTHY)):
        cond = _condition(status, kind)
        if cond and cond.get("status") == "True":
            return Verdict(health, str(cond.get("reason") or kind), str(cond.get("message") or ""))
    succeeded = _int(status.get("succeeded"))
    return Verdict(Health.PROGRESSING, "Running", f"{succeeded} pods succeeded")


_JUDGES = {
    "Deployment": _deployment,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "Job": _job,
}


def judge(obj: Obj) -> Verdict:
    """The health of one live object right now."""
    judge_kind = _JUDGES.get(str(obj.get("kind")))
    if judge_kind is None:
        return Verdict(Health.UNKNOWN)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    return judge_kind(obj, spec or {}, status or {})


def timed_out(last: Verdict, timeout: float) -> Verdict:
    """The verdict for an object still progressing when the wait ended."""
    detail = f": {last.message}" if last.message else ""
    return Verdict(Health.PROGRESSING, "Timeout", f"still rolling out after {timeout:g}s{detail}")


# -- the pods of a rollout ---------------------------------------------------------------------

POD_WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
"""The kinds whose new pods the health wait looks at (Jobs end on their own Failed condition)."""

STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreStartHookError",
        "PostStartHookError",
    }
)
"""Reasons a container waits with that waiting alone does not fix (the kubelet's words)."""

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HASH_LABEL = "controller-revision-hash"  # on the pods of StatefulSets and DaemonSets
HASH_LABEL = "controller.kubernetes.io/hash"  # on ControllerRevisions


@dataclass(frozen=True)
class PodProblem:
    """Why one pod is stuck: a container of it, waiting, and the kubelet's reason and message."""

    container: str
    reason: str
    message: str


def pod_problem(pod: Obj) -> PodProblem | None:
    """The first container of ``pod`` (init containers first) waiting with a stuck reason."""
    status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in (status or {}).get(key) or ():
            if not isinstance(container, dict):
                continue
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in STUCK_REASONS:
                return PodProblem(
                    container=str(container.get("name") or ""),
                    reason=reason,
                    message=str(waiting.get("message") or ""),
                )
    return None


def pod_ready(pod: Obj) -> bool:
    status = pod.get("status") if isinstance(pod.get("status"), dict) else {}
    cond = _condition(status or {}, "Ready")
    return bool(cond and cond.get("status") == "True")


def label_selector(selector: Any) -> str | None:
    """A LabelSelector as the ``labelSelector`` query parameter (None when it selects
    nothing that can be written: no selector, or an operator this does not know)."""
    if not isinstance(selector, dict):
        return None
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        if not isinstance(expr, dict):
            return None
        key, operator = str(expr.get("key") or ""), expr.get("operator")
        values = ",".join(sorted(str(v) for v in expr.get("values") or ()))
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            return None
    return ",".join(parts) or None


def _uid(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def _controlled_by(obj: Obj, owner_uid: str) -> bool:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller") and ref.get("uid") == owner_uid:
            return True
    return False


def _annotation(obj: Obj, key: str) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key) or "")


def _label(obj: Obj, key: str) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(key) or "")


def new_pods(workload: Obj, revisions: Sequence[Obj], pods: Sequence[Obj]) -> list[Obj]:
    """The pods of the workload's current revision among ``pods`` (listed with its selector).

    ``revisions`` are the ReplicaSets of a Deployment, the ControllerRevisions of a DaemonSet
    (listed with its selector), nothing for a StatefulSet. A Deployment's new pods are those of
    the ReplicaSet it controls with its own revision (the one with the current
    ``pod-template-hash``); a StatefulSet's carry ``controller-revision-hash`` equal to its
    ``status.updateRevision``; a DaemonSet's that of its newest ControllerRevision."""
    kind = workload.get("kind")
    uid = _uid(workload)
    owned_pods = [p for p in pods if isinstance(p, dict)]
    if kind == "Deployment":
        revision = _annotation(workload, REVISION_ANNOTATION)
        current = [
            rs
            for rs in revisions
            if revision
            and _controlled_by(rs, uid)
            and _annotation(rs, REVISION_ANNOTATION) == revision
        ]
        if not current:
            return []
        rs_uid = _uid(current[0])
        return [p for p in owned_pods if _controlled_by(p, rs_uid)]
    if kind == "StatefulSet":
        status = workload.get("status") if isinstance(workload.get("status"), dict) else {}
        update = str((status or {}).get("updateRevision") or "")
        return [
            p
            for p in owned_pods
            if update and _controlled_by(p, uid) and _label(p, REVISION_HASH_LABEL) == update
        ]
    if kind == "DaemonSet":
        mine = [r for r in revisions if _controlled_by(r, uid)]
        if not mine:
            return []
        newest = max(mine, key=lambda r: _int(r.get("revision")))
        digest = (
            _label(newest, HASH_LABEL)
            or str((newest.get("metadata") or {}).get("name") or "").rpartition("-")[2]
        )
        return [
            p
            for p in owned_pods
            if _controlled_by(p, uid) and _label(p, REVISION_HASH_LABEL) == digest
        ]
    return []
