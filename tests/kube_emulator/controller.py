"""A tiny controller loop: progresses workload status the way a healthy cluster would.

After ``delay`` seconds from a spec change it reports Deployments, StatefulSets, DaemonSets and
ReplicaSets ready and Jobs complete. A container image tagged ``broken`` never becomes ready:
the Deployment stays unavailable and, once ``spec.progressDeadlineSeconds`` has passed since the
rollout began, gets ``Progressing=False, reason ProgressDeadlineExceeded``. No Pods or ReplicaSets
are created. It also finishes terminating Namespaces.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Emulator

Obj = dict[str, Any]
WORKLOADS = (
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "replicasets"),
    ("batch", "jobs"),
)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def is_broken(template: Any) -> bool:
    spec = (template or {}).get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = str((c or {}).get("image") or "")
        if image.rsplit("/", 1)[-1].endswith(":broken"):
            return True
    return False


def template_hash(template: Any) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


def _cond(ctype: str, status: str, reason: str, message: str, since: float, now: float) -> Obj:
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": _iso(now),
        "lastTransitionTime": _iso(since),
        "reason": reason,
        "message": message,
    }


class Controller:
    """Background thread acting on workloads; timing is tracked per (uid, generation)."""

    def __init__(self, emulator: Emulator, *, delay: float) -> None:
        self.emulator = emulator
        self.delay = delay
        self._seen: dict[tuple[str, int], float] = {}
        self._rs: dict[str, str] = {}
        # uid -> resourceVersion already found in its steady state (skipped until it changes).
        self._done: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="kube-emulator-controller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        self._seen.clear()
        self._rs.clear()
        self._done.clear()

    def _run(self) -> None:
        interval = max(0.02, min(0.2, self.delay / 2 if self.delay > 0 else 0.05))
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # keep the loop alive; a bad object must not stop the controller
                import traceback

                traceback.print_exc()

    def tick(self) -> None:
        em = self.emulator
        now = time.time()
        store = em.store
        for key in WORKLOADS:
            for obj in store.list(key, None):
                meta = obj["metadata"]
                uid = meta.get("uid", "")
                if self._done.get(uid) == meta.get("resourceVersion"):
                    continue
                gen = meta.get("generation", 1)
                status = obj.get("status") or {}
                since = self._seen.setdefault((uid, gen), now)
                if now - since < self.delay:
                    continue
                rt = em.registry.lookup(key[0], "v1", key[1])
                if rt is None:
                    continue
                fn = getattr(self, f"_{key[1]}")
                new_status, annotations = fn(obj, status, since, now)
                if new_status != status or annotations:
                    em.write_status(rt, obj, new_status, annotations=annotations)
                elif not self._waiting(obj):
                    self._done[uid] = meta.get("resourceVersion", "")
        for ns in store.list(("", "namespaces"), None):
            if ns["metadata"].get("deletionTimestamp"):
                em.finish_namespace(ns)

    @staticmethod
    def _waiting(obj: Obj) -> bool:
        """A broken rollout still heading for its deadline must be looked at again."""
        spec = obj.get("spec") or {}
        if not is_broken(spec.get("template")):
            return False
        if obj.get("kind") == "Deployment":
            return not any(
                c.get("reason") == "ProgressDeadlineExceeded"
                for c in (obj.get("status") or {}).get("conditions") or ()
            )
        if obj.get("kind") == "Job":
            return spec.get("activeDeadlineSeconds") is not None
        return False

    # ------------------------------------------------------------------ kinds
    def _deployments(
        self, obj: Obj, status: Obj, since: float, now: float
    ) -> tuple[Obj, dict[str, str] | None]:
        spec = obj.get("spec") or {}
        meta = obj["metadata"]
        replicas = spec.get("replicas", 1)
        rs_name = f"{meta['name']}-{template_hash(spec.get('template'))[:10]}"
        ann = meta.get("annotations") or {}
        annotations = None
        rev = ann.get("deployment.kubernetes.io/revision")
        prev_rs = self._rs.get(meta.get("uid", ""))
        if rev is None:
            annotations = {"deployment.kubernetes.io/revision": "1"}
        elif prev_rs is not None and prev_rs != rs_name and rev.isdigit():
            annotations = {"deployment.kubernetes.io/revision": str(int(rev) + 1)}
        self._rs[meta.get("uid", "")] = rs_name
        old_conds = {c["type"]: c for c in status.get("conditions") or ()}
        out: Obj = {"observedGeneration": meta.get("generation", 1)}
        if spec.get("paused"):
            out.update({k: v for k, v in status.items() if k not in ("observedGeneration",)})
            return out, annotations
        broken = is_broken(spec.get("template"))
        if replicas == 0 or not broken:
            if replicas:
                out.update(
                    {
                        "replicas": replicas,
                        "updatedReplicas": replicas,
                        "readyReplicas": replicas,
                        "availableReplicas": replicas,
                    }
                )
            avail_since = (
                old_conds.get("Available", {}).get("lastTransitionTime")
                if old_conds.get("Available", {}).get("status") == "True"
                else None
            )
            out["conditions"] = [
                self._keep(
                    old_conds,
                    _cond(
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        now,
                        now,
                    ),
                    avail_since,
                ),
                self._keep(
                    old_conds,
                    _cond(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                        now,
                        now,
                    ),
                    None,
                ),
            ]
        else:
            deadline = spec.get("progressDeadlineSeconds", 600)
            out.update(
                {"replicas": replicas, "updatedReplicas": replicas, "unavailableReplicas": replicas}
            )
            avail = _cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                since,
                since,
            )
            if now - since >= deadline:
                prog = _cond(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    since + deadline,
                    since + deadline,
                )
            else:
                prog = _cond(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                    since,
                    since,
                )
            out["conditions"] = [
                self._keep(old_conds, avail, None),
                self._keep(old_conds, prog, None),
            ]
        return out, annotations

    @staticmethod
    def _keep(old: dict[str, Obj], cond: Obj, since: str | None) -> Obj:
        """Keep timestamps of an unchanged condition, so a steady state writes nothing."""
        prev = old.get(cond["type"])
        if prev and all(prev.get(k) == cond[k] for k in ("status", "reason", "message")):
            return prev
        if since:
            cond["lastTransitionTime"] = since
        return cond

    def _statefulsets(
        self, obj: Obj, status: Obj, since: float, now: float
    ) -> tuple[Obj, dict[str, str] | None]:
        spec = obj.get("spec") or {}
        meta = obj["metadata"]
        replicas = spec.get("replicas", 1)
        rev = f"{meta['name']}-{template_hash(spec.get('template'))[:10]}"
        out: Obj = {"observedGeneration": meta.get("generation", 1), "replicas": replicas}
        if not is_broken(spec.get("template")):
            out.update(
                {
                    "readyReplicas": replicas,
                    "currentReplicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                }
            )
            out["currentRevision"] = rev
        else:
            out.update({"currentReplicas": replicas, "updatedReplicas": replicas})
            out["currentRevision"] = status.get("currentRevision", rev)
        out["updateRevision"] = rev
        out["collisionCount"] = 0
        return {k: v for k, v in out.items() if v != 0 or k in ("replicas", "collisionCount")}, None

    def _daemonsets(
        self, obj: Obj, status: Obj, since: float, now: float
    ) -> tuple[Obj, dict[str, str] | None]:
        spec = obj.get("spec") or {}
        out: Obj = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "currentNumberScheduled": 1,
            "desiredNumberScheduled": 1,
            "numberMisscheduled": 0,
            "updatedNumberScheduled": 1,
        }
        if is_broken(spec.get("template")):
            out.update({"numberReady": 0, "numberUnavailable": 1})
        else:
            out.update({"numberReady": 1, "numberAvailable": 1})
        return out, None

    def _replicasets(
        self, obj: Obj, status: Obj, since: float, now: float
    ) -> tuple[Obj, dict[str, str] | None]:
        spec = obj.get("spec") or {}
        replicas = spec.get("replicas", 1)
        out: Obj = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": replicas,
        }
        if replicas:
            out["fullyLabeledReplicas"] = replicas
            if not is_broken(spec.get("template")):
                out.update({"readyReplicas": replicas, "availableReplicas": replicas})
        return out, None

    def _jobs(
        self, obj: Obj, status: Obj, since: float, now: float
    ) -> tuple[Obj, dict[str, str] | None]:
        spec = obj.get("spec") or {}
        if status.get("completionTime") or any(
            c.get("type") == "Failed" for c in status.get("conditions") or ()
        ):
            return status, None
        start = status.get("startTime") or _iso(since)
        out: Obj = {"startTime": start, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}
        if spec.get("suspend"):
            return status, None
        if is_broken(spec.get("template")):
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None and now - since >= deadline:
                out["failed"] = 1
                out["conditions"] = [
                    _cond(
                        "FailureTarget",
                        "True",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        now,
                        now,
                    ),
                    _cond(
                        "Failed",
                        "True",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        now,
                        now,
                    ),
                ]
                for c in out["conditions"]:
                    c["lastProbeTime"] = c.pop("lastUpdateTime")
            else:
                out["active"] = spec.get("parallelism", 1)
            return out, None
        out["succeeded"] = spec.get("completions") or 1
        out["completionTime"] = _iso(now)
        out["conditions"] = [
            _cond(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
                now,
            ),
            _cond(
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
                now,
            ),
        ]
        for c in out["conditions"]:
            c["lastProbeTime"] = c.pop("lastUpdateTime")
        return out, None
