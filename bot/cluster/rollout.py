"""The health wait: poll the applied workloads until each is healthy or degraded, naming the
pods that keep a rollout from finishing.

A rollout that cannot succeed (an image that cannot be pulled, a container that keeps
crashing, a missing Secret) shows first on its pods: the workload's own status only says
"0 of 1 updated replicas are available" until its progress deadline, 600 s by default. So on
each poll, for every Deployment, StatefulSet and DaemonSet still rolling out, the wait lists
(in bulk: one batch of LISTs, each with the workload's selector) its pods and, for Deployments
their ReplicaSets, for DaemonSets their ControllerRevisions, and keeps the rollout's new pods
(:func:`bot.cluster.health.new_pods`). A new pod is *stuck* from the first poll that sees one
of its containers waiting with a reason waiting does not fix (:data:`~bot.cluster.health.
STUCK_REASONS`) until the pod is Ready (a crash-looping container runs between its back-offs:
it stays stuck meanwhile).

Stuck pods are named, with the kubelet's reason and message, in the progress step (after
:data:`DETAIL`: ``waiting for health — Deployment web/web: pod web-5d4f-x2z9k
ImagePullBackOff: Back-off pulling image ...``) and in the workload's final
:class:`~bot.model.ObjectHealth`. When every new pod of a rollout has been stuck for the app's
``stuckPodTimeout`` seconds, the wait ends for that workload as DEGRADED, with the pod's reason
as its reason, instead of at ``healthTimeout``.

A workload whose pods cannot be listed (RBAC without ``list`` on pods) is still judged by its
status; its pods are simply not named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.cluster import health as health_mod
from bot.cluster.client import Cluster, Resource
from bot.cluster.errors import ApiError, KubeError
from bot.cluster.health import POD_WORKLOADS, PodProblem, Verdict
from bot.cluster.plan import LIST_THRESHOLD
from bot.model import Health, Obj, ObjectHealth, ObjectRef

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called as objects finish (for the CLI's progress line). A
step may carry a detail after :data:`DETAIL` (the stuck pods while waiting for health)."""

WAITING = "waiting for health"
DETAIL = " — "
"""Between a step and its detail in a progress step (``bot.cli.apply`` reads it)."""
MAX_DETAIL_MESSAGE = 160  # characters of a kubelet message in a progress line (full in the report)
MAX_DETAIL_WORKLOADS = 3

STUCK_SUMMARY = "{ref}: {stuck} of {new} new pods stuck, pod {pod} {reason}: {message}"
STUCK_FAILED = (
    "every new pod ({new}) stuck for {seconds:g}s (stuckPodTimeout): pod {pod}, container "
    "{container}: {reason}: {message}"
)
STUCK_ALSO = "{message}; pod {pod}, container {container}: {reason}: {message_pod}"


def _noop(step: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class StuckPod:
    """A new pod of a rollout, stuck since ``since`` (the wait's clock) for ``problem``."""

    namespace: str
    name: str
    problem: PodProblem
    since: float


@dataclass(frozen=True)
class RolloutPods:
    """A rollout's new pods as last seen: how many, and which of them are stuck."""

    new: int
    stuck: tuple[StuckPod, ...]

    def all_stuck_for(self, now: float) -> float:
        """How long every new pod has been stuck (0 unless each is)."""
        if not self.new or len(self.stuck) < self.new:
            return 0.0
        return now - max(pod.since for pod in self.stuck)


class PodWatch:
    """Finds the new pods of rollouts and remembers since when each has been stuck."""

    def __init__(self, cluster: Cluster, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster = cluster
        self.clock = clock
        self._since: dict[str, float] = {}  # pod uid -> first seen stuck
        self._problems: dict[str, PodProblem] = {}  # pod uid -> last stuck reason seen
        self._resources: dict[str, Resource | None] = {}

    def _resource(self, api_version: str, kind: str) -> Resource | None:
        if kind not in self._resources:
            try:
                self._resources[kind] = self.cluster.resource(api_version, kind)
            except KubeError:
                self._resources[kind] = None
        return self._resources[kind]

    def look(self, workloads: Sequence[tuple[ObjectRef, Obj]]) -> dict[ObjectRef, RolloutPods]:
        """The new pods of each workload rolling out (one batch of LISTs for all of them)."""
        pods = self._resource("v1", "Pod")
        extra = {
            "Deployment": self._resource("apps/v1", "ReplicaSet"),
            "DaemonSet": self._resource("apps/v1", "ControllerRevision"),
        }
        if pods is None:
            return {}
        queries: list[tuple[Resource, str | None, str | None]] = []
        plans: list[tuple[ObjectRef, Obj, int, int | None]] = []
        for ref, obj in workloads:
            selector = health_mod.label_selector((obj.get("spec") or {}).get("selector"))
            if selector is None or ref.kind not in POD_WORKLOADS:
                continue
            pod_query = len(queries)
            queries.append((pods, ref.namespace, selector))
            revisions = extra.get(ref.kind)
            revision_query = None
            if revisions is not None:
                revision_query = len(queries)
                queries.append((revisions, ref.namespace, selector))
            elif ref.kind in extra:
                continue  # the kind is not served: its new pods cannot be told apart
            plans.append((ref, obj, pod_query, revision_query))
        answers = self.cluster.list_many(queries)
        now = self.clock()
        found: dict[ObjectRef, RolloutPods] = {}
        for ref, obj, pod_query, revision_query in plans:
            listed = answers[pod_query]
            owned = answers[revision_query] if revision_query is not None else []
            if isinstance(listed, ApiError) or isinstance(owned, ApiError):
                continue  # not allowed to list them: judged by the workload's status alone
            new = health_mod.new_pods(obj, owned, listed)
            found[ref] = RolloutPods(new=len(new), stuck=tuple(self._stuck(new, now)))
        return found

    def _stuck(self, pods: list[Obj], now: float) -> list[StuckPod]:
        out = []
        for pod in pods:
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid") or meta.get("name") or "")
            if health_mod.pod_ready(pod):
                self._since.pop(uid, None)
                continue
            problem = health_mod.pod_problem(pod)
            if problem is not None:
                self._problems[uid] = problem
                self._since.setdefault(uid, now)
            if uid in self._since:
                out.append(
                    StuckPod(
                        namespace=str(meta.get("namespace") or ""),
                        name=str(meta.get("name") or ""),
                        problem=self._problems[uid],
                        since=self._since[uid],
                    )
                )
        return sorted(out, key=lambda p: (p.since, p.name))


def _look(
    cluster: Cluster, waiting: dict[ObjectRef, Resource], pending: list[ObjectRef]
) -> list[tuple[ObjectRef, Verdict, Obj | None]]:
    """The current verdict and live object of each pending object: one LIST per resource and
    namespace with many pending objects, one GET each otherwise. A failed read keeps the
    object waiting."""
    groups: dict[tuple[Resource, str | None], list[ObjectRef]] = {}
    for ref in pending:
        groups.setdefault((waiting[ref], ref.namespace), []).append(ref)

    def seen(ref: ObjectRef, obj: Obj | ApiError | None) -> tuple[ObjectRef, Verdict, Obj | None]:
        if isinstance(obj, ApiError):
            return ref, Verdict(Health.PROGRESSING, obj.reason or "Error", obj.message), None
        if obj is None:
            return ref, Verdict(Health.DEGRADED, "NotFound", "the object is gone"), None
        return ref, health_mod.judge(obj), obj

    lists = [key for key, refs in groups.items() if len(refs) >= LIST_THRESHOLD]
    singles = [ref for key, refs in groups.items() if len(refs) < LIST_THRESHOLD for ref in refs]
    looked: list[tuple[ObjectRef, Verdict, Obj | None]] = []
    for key, listed in zip(lists, cluster.list_many([(*k, None) for k in lists]), strict=True):
        if isinstance(listed, ApiError):
            looked += [seen(ref, listed) for ref in groups[key]]
            continue
        by_name = {str((o.get("metadata") or {}).get("name")): o for o in listed}
        looked += [seen(ref, by_name.get(ref.name)) for ref in groups[key]]
    found = cluster.get_many([(waiting[ref], ref.namespace, ref.name) for ref in singles])
    looked += [seen(ref, obj) for ref, obj in zip(singles, found, strict=True)]
    return looked


def _clip(text: str, limit: int = MAX_DETAIL_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stuck_detail(rollouts: dict[ObjectRef, RolloutPods]) -> str:
    """The progress detail naming the stuck pods of each rollout ('' when none is)."""
    parts = []
    for ref in sorted(r for r, pods in rollouts.items() if pods.stuck):
        pods = rollouts[ref]
        first = pods.stuck[0]
        parts.append(
            STUCK_SUMMARY.format(
                ref=ref,
                stuck=len(pods.stuck),
                new=pods.new,
                pod=first.name,
                reason=first.problem.reason,
                message=_clip(first.problem.message),
            )
        )
    if len(parts) > MAX_DETAIL_WORKLOADS:
        parts = [*parts[:MAX_DETAIL_WORKLOADS], f"and {len(parts) - MAX_DETAIL_WORKLOADS} more"]
    return "; ".join(parts)


def _stuck_verdict(pods: RolloutPods, stuck_timeout: float) -> Verdict:
    first = pods.stuck[0]
    return Verdict(
        Health.DEGRADED,
        first.problem.reason,
        STUCK_FAILED.format(
            new=pods.new,
            seconds=stuck_timeout,
            pod=f"{first.namespace}/{first.name}",
            container=first.problem.container,
            reason=first.problem.reason,
            message=first.problem.message,
        ),
    )


def _with_pods(verdict: Verdict, pods: RolloutPods | None) -> Verdict:
    """A verdict that is not about the pods (a timeout, a deadline) naming a stuck pod too."""
    if pods is None or not pods.stuck or verdict.health is Health.HEALTHY:
        return verdict
    first = pods.stuck[0]
    message = STUCK_ALSO.format(
        message=verdict.message,
        pod=f"{first.namespace}/{first.name}",
        container=first.problem.container,
        reason=first.problem.reason,
        message_pod=first.problem.message,
    )
    return Verdict(verdict.health, verdict.reason, message)


def wait_healthy(
    cluster: Cluster,
    objects: Sequence[tuple[Resource, ObjectRef]],
    *,
    timeout: float,
    progress: Progress | None = None,
    stuck_timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[ObjectHealth]:
    """Poll the workloads among ``objects`` until each is healthy or degraded, or ``timeout``
    seconds pass (then the rest end PROGRESSING with reason Timeout). Stuck pods are named as
    they are seen; a rollout whose every new pod has been stuck for ``stuck_timeout`` seconds
    ends DEGRADED (None: never early)."""
    report = progress or _noop
    waiting = {ref: res for res, ref in objects if health_mod.needs_wait(ref.kind, ref.api_version)}
    verdicts: dict[ObjectRef, Verdict] = {}
    final: dict[ObjectRef, Verdict] = {}
    rollouts: dict[ObjectRef, RolloutPods] = {}
    stuck: set[ObjectRef] = set()  # ended early: every new pod stuck
    total = len(waiting)
    if not total:
        return []
    watch = PodWatch(cluster, clock=clock)
    report(WAITING, 0, total)
    deadline = clock() + max(timeout, 0.0)
    delay = 0.1
    while True:
        pending = [ref for ref in waiting if ref not in final]
        rolling: list[tuple[ObjectRef, Obj]] = []
        for ref, verdict, obj in _look(cluster, waiting, pending):
            verdicts[ref] = verdict
            if verdict.final:
                final[ref] = verdict
            elif obj is not None and verdict is not health_mod.WAITING_SPEC:
                rolling.append((ref, obj))
        if rolling:
            for ref, pods in watch.look(rolling).items():
                rollouts[ref] = pods
                if stuck_timeout is not None and pods.all_stuck_for(clock()) >= stuck_timeout:
                    final[ref] = _stuck_verdict(pods, stuck_timeout)
                    stuck.add(ref)
        detail = stuck_detail({r: p for r, p in rollouts.items() if r not in final})
        report(WAITING + DETAIL + detail if detail else WAITING, len(final), total)
        if len(final) == total or clock() >= deadline:
            break
        time.sleep(min(delay, max(deadline - clock(), 0.0)))
        delay = min(delay * 1.5, 2.0)
    out = []
    for ref in sorted(waiting):
        verdict = final.get(ref) or health_mod.timed_out(verdicts[ref], timeout)
        if ref not in stuck:
            verdict = _with_pods(verdict, rollouts.get(ref))
        out.append(
            ObjectHealth(
                ref=ref, health=verdict.health, reason=verdict.reason, message=verdict.message
            )
        )
    return out
