"""The cluster's controllers and its kubelet, reduced to what deploy tools watch.

Each ``tick`` of the controller thread does, for every object, what the real component would do
next, bottom-up (kubelet, then ReplicaSets, then Deployments) so that a change of status reaches
the top in one tick:

- Kubelet: runs every Pod on the cluster's one node. Containers start ``delay`` seconds after
  the Pod was first seen; then they are Running and Ready. An image tagged ``broken`` cannot be
  pulled: the container waits with ``ErrImagePull``, then ``ImagePullBackOff`` one ``delay``
  later, and the Pod stays Pending. An image tagged ``crash`` starts and exits with code 1 over
  and over: ``CrashLoopBackOff``, the Pod Running but not Ready, restarts after 1, 3, 7, 15...
  times ``delay`` (the real back-off of 10 s, 20 s, 40 s... compressed; the messages name the real
  one). Reasons and messages are worded as the kubelet (with containerd) writes them. Pods whose
  restartPolicy is not Always run to completion (Succeeded; a ``crash`` image: Failed).
- ReplicaSet controller: Pods ``<replicaset>-<5 characters>`` from the template (the template's
  labels, an owner reference with ``controller: true``) up to ``spec.replicas``; the surplus is
  deleted, not-ready and newest first; status counts them.
- Deployment controller: one ReplicaSet per pod template, named ``<deployment>-<hash>``, with the
  ``pod-template-hash`` label on it, in its selector and on its Pods, and the revision
  annotations. Rollouts follow the strategy: RollingUpdate scales the new ReplicaSet up and old
  ones down within maxSurge/maxUnavailable (the real controller's arithmetic), Recreate scales old
  ones to zero and waits for their Pods to go first. A template seen before takes its old
  ReplicaSet back (a rollback); old ReplicaSets beyond revisionHistoryLimit are deleted. Status
  and conditions as the real controller writes them: Available (minimum availability) and
  Progressing (NewReplicaSetCreated, ReplicaSetUpdated, NewReplicaSetAvailable,
  ProgressDeadlineExceeded once no progress was made for progressDeadlineSeconds,
  DeploymentPaused/DeploymentResumed).
- StatefulSet controller: Pods ``<statefulset>-<ordinal>``, one at a time in order
  (OrderedReady) or all at once (Parallel), PersistentVolumeClaims ``<claim>-<statefulset>-
  <ordinal>`` from volumeClaimTemplates (left Pending: there is no provisioner),
  ControllerRevisions, a rolling update from the highest ordinal down to the partition (OnDelete
  waits for deletions), status with current and update revisions.
- DaemonSet controller: one Pod on the node, replaced when the template changes.
- Jobs run no Pods here: they complete ``delay`` seconds after each spec change (a ``broken``
  image fails them at their ``activeDeadlineSeconds``).
- Namespace controller: finishes terminating namespaces.

Deletions are immediate (no graceful termination). A tick does nothing while nothing changed and
no timer (a Pod starting, a back-off, a progress deadline) is due.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .api import NODE_IP, NODE_NAME, clone
from .errors import ApiError

if TYPE_CHECKING:
    from .api import Emulator
    from .resources import ResourceType

Obj = dict[str, Any]
CONTROLLER_MANAGER = "kube-controller-manager"
KUBELET = "kubelet"
POD_TEMPLATE_HASH = "pod-template-hash"
REVISION_HASH = "controller-revision-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
PODS = ("", "pods")
REPLICASETS = ("apps", "replicasets")
REVISIONS = ("apps", "controllerrevisions")
# rand.SafeEncodeString's alphabet: no vowels, no characters easily confused.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_MAX_BACKOFF = 300.0


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def image_outcome(image: str) -> str:
    """``broken`` (cannot be pulled), ``crash`` (exits with 1) or ``ok``, from the image's tag."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0]
    tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
    return tag if tag in ("broken", "crash") else "ok"


def is_broken(template: Any) -> bool:
    """Whether a pod template has a container that never becomes ready."""
    spec = (template or {}).get("spec") or {}
    return any(
        image_outcome(str((c or {}).get("image") or "")) != "ok"
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
    )


def template_hash(template: Any, collisions: int = 0) -> str:
    """What the controllers name a pod template by: FNV-32a of it, in decimal, each digit mapped
    into the safe alphabet (as ``rand.SafeEncodeString(fmt.Sprint(hash))`` does)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collisions:
        data += str(collisions).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(d) % len(_SAFE)] for d in str(h))


def _reference(image: str) -> str:
    """The image as containerd names it (``nginx:1.25`` is ``docker.io/library/nginx:1.25``)."""
    first, _, rest = image.partition("/")
    if not rest:
        image = f"docker.io/library/{image}"
    elif "." not in first and ":" not in first and first != "localhost":
        image = f"docker.io/{image}"
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def pull_error(image: str) -> str:
    """The kubelet's ErrImagePull message for an image that does not exist."""
    ref = _reference(image)
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
        f'failed to resolve reference "{ref}": {ref}: not found'
    )


def _go_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _cond(ctype: str, status: str, reason: str, message: str, old: dict[str, Obj], now: str) -> Obj:
    """A condition keeping its lastTransitionTime while its status stays (kubelet's shape)."""
    prev = old.get(ctype) or {}
    out: Obj = {"type": ctype, "status": status, "lastProbeTime": None}
    out["lastTransitionTime"] = (
        prev.get("lastTransitionTime") if prev.get("status") == status else None
    ) or now
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _conditions(status: Obj) -> dict[str, Obj]:
    return {c.get("type"): c for c in status.get("conditions") or () if isinstance(c, dict)}


def _controller_uid(obj: Obj) -> str:
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def _owner_reference(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(template: Any) -> dict[str, str]:
    return dict(((template or {}).get("metadata") or {}).get("labels") or {})


def _without_hash(template: Any) -> Any:
    """A ReplicaSet's template as its Deployment wrote it (without the pod-template-hash label)."""
    out = clone(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return out


def _replicas(obj: Obj | None) -> int:
    return 0 if obj is None else _int((obj.get("spec") or {}).get("replicas"), 1)


def _status_int(obj: Obj | None, key: str) -> int:
    return 0 if obj is None else _int((obj.get("status") or {}).get(key))


def _revision(rs: Obj) -> int:
    text = str((rs["metadata"].get("annotations") or {}).get(REVISION) or "0")
    return int(text) if text.isdigit() else 0


def _has_run(container_status: Obj) -> bool:
    """Whether a container started at least once (running, exited, or crash-looping)."""
    state = container_status["state"]
    return "waiting" not in state or state["waiting"].get("reason") == "CrashLoopBackOff"


def _pod_ready(pod: Obj) -> bool:
    return _conditions(pod.get("status") or {}).get("Ready", {}).get("status") == "True"


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent of ``total`` (intstr.GetScaledValueFromIntOrPercent)."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            share = int(value[:-1]) * total / 100
        except ValueError:
            return 0
        return math.ceil(share) if round_up else math.floor(share)
    return _int(value)


def _fenceposts(spec: Obj) -> tuple[int, int]:
    """maxSurge and maxUnavailable of a RollingUpdate (deploymentutil.ResolveFenceposts)."""
    replicas = _int(spec.get("replicas"), 1)
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    ru = strategy.get("rollingUpdate") or {}
    surge = _scaled(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def _deployment_condition(
    ctype: str, value: tuple[str, str, str, bool] | None, old: dict[str, Obj], stamp: str
) -> Obj:
    """A Deployment condition: kept as it was when nothing changed (``value`` None, or the same
    status, reason and message without progress); lastTransitionTime kept while the status is."""
    prev = old.get(ctype) or {}
    if value is None:
        return prev
    state, reason, message, touch = value
    if not touch and [prev.get("status"), prev.get("reason"), prev.get("message")] == [
        state,
        reason,
        message,
    ]:
        return prev
    since = prev.get("lastTransitionTime") if prev.get("status") == state else None
    return {
        "type": ctype,
        "status": state,
        "lastUpdateTime": stamp,
        "lastTransitionTime": since or stamp,
        "reason": reason,
        "message": message,
    }


def _drop_zeros(status: Obj, keys: tuple[str, ...]) -> Obj:
    """Leave out the fields Go's ``omitempty`` leaves out when they are zero."""
    return {k: v for k, v in status.items() if not (k in keys and v == 0)}


class Controller:
    """Background thread acting on workloads and Pods (see the module docstring)."""

    def __init__(self, emulator: Emulator, *, delay: float) -> None:
        self.emulator = emulator
        self.delay = delay
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.reset()

    def reset(self) -> None:
        # Pod uid -> when the kubelet first saw it (monotonic enough: time.time()).
        self._born: dict[str, float] = {}
        # Deployment uid -> when it last made progress (what its deadline counts from).
        self._progress: dict[str, float] = {}
        # (uid, generation) of Jobs -> when that spec was first seen.
        self._seen: dict[tuple[str, int], float] = {}
        self._pod_ips = 0
        self._last_rv = -1
        self._due = 0.0

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

    def _run(self) -> None:
        interval = max(0.02, min(0.2, self.delay / 2 if self.delay > 0 else 0.05))
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:  # keep the loop alive; a bad object must not stop the controller
                traceback.print_exc()

    def _wake_at(self, when: float) -> None:
        """Ask for a tick at ``when`` even if nothing changes before."""
        self._due = min(self._due, when)

    @property
    def _unit(self) -> float:
        """The compressed back-off step (a real kubelet's is 10 s)."""
        return max(self.delay, 0.1)

    # ------------------------------------------------------------------ the loop
    def tick(self) -> None:
        store = self.emulator.store
        now = time.time()
        rv = store.resource_version
        if rv == self._last_rv and now < self._due:
            return
        self._last_rv, self._due = rv, math.inf
        passes: list[tuple[tuple[str, str], Callable[[Obj, float], None]]] = [
            (PODS, self._kubelet),
            (REPLICASETS, self._replicaset),
            (("apps", "deployments"), self._deployment),
            (("apps", "statefulsets"), self._statefulset),
            (("apps", "daemonsets"), self._daemonset),
            (("batch", "jobs"), self._job),
        ]
        for key, sync in passes:
            for obj in store.list(key, None):
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                with store.lock:
                    current = store.get(
                        key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
                    )
                    if current is not None and current["metadata"].get("uid") == obj[
                        "metadata"
                    ].get("uid"):
                        sync(current, now)
        # forget what the kubelet and the deployment controller knew of objects now gone
        pods = {p["metadata"]["uid"] for p in store.list(PODS, None)}
        self._born = {uid: t for uid, t in self._born.items() if uid in pods}
        deployments = {d["metadata"]["uid"] for d in store.list(("apps", "deployments"), None)}
        self._progress = {uid: t for uid, t in self._progress.items() if uid in deployments}
        jobs = {j["metadata"]["uid"] for j in store.list(("batch", "jobs"), None)}
        self._seen = {key: t for key, t in self._seen.items() if key[0] in jobs}
        for ns in store.list(("", "namespaces"), None):
            if ns["metadata"].get("deletionTimestamp"):
                self.emulator.finish_namespace(ns)
                self._wake_at(now + self._unit)

    # ------------------------------------------------------------------ helpers
    def _rt(self, key: tuple[str, str]) -> ResourceType:
        rt = self.emulator.registry.lookup(key[0], "v1", key[1])
        assert rt is not None, key
        return rt

    def _owned(self, key: tuple[str, str], owner: Obj) -> list[Obj]:
        """The objects of ``key`` that ``owner`` controls, oldest first."""
        uid = owner["metadata"]["uid"]
        store = self.emulator.store
        found = []
        for dep_key, ns, name in store.dependents(uid):
            if dep_key != key:
                continue
            obj = store.get(dep_key, ns, name)
            if obj is not None and _controller_uid(obj) == uid:
                found.append(obj)
        found.sort(
            key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"])
        )
        return found

    def _create(self, key: tuple[str, str], body: Obj) -> Obj:
        obj = self.emulator.create_as(CONTROLLER_MANAGER, self._rt(key), body)
        if key == PODS:
            self._born[obj["metadata"]["uid"]] = time.time()
        return obj

    def _update(self, key: tuple[str, str], obj: Obj, change: Callable[[Obj], None]) -> None:
        self.emulator.update_as(CONTROLLER_MANAGER, self._rt(key), obj, change)

    def _scale(self, rs: Obj, replicas: int) -> None:
        if _replicas(rs) != replicas:
            self._update(REPLICASETS, rs, lambda o: o["spec"].__setitem__("replicas", replicas))

    def _delete(self, key: tuple[str, str], obj: Obj) -> None:
        self.emulator.delete_as_controller(self._rt(key), obj)

    def _status(
        self,
        key: tuple[str, str],
        obj: Obj,
        status: Obj,
        *,
        annotations: dict[str, str] | None = None,
        manager: str = CONTROLLER_MANAGER,
    ) -> None:
        if status != obj.get("status") or annotations:
            self.emulator.write_status(
                self._rt(key), obj, status, annotations=annotations, manager=manager
            )

    def _new_pod(self, owner: Obj, template: Any, *, name: str = "", labels: Obj, spec: Obj) -> Obj:
        """A Pod of ``owner`` from its template, scheduled on the node."""
        tmeta = (template or {}).get("metadata") or {}
        meta: Obj = {
            "namespace": owner["metadata"]["namespace"],
            "labels": {**_labels(template), **labels},
            "ownerReferences": [_owner_reference(owner)],
        }
        if name:
            meta["name"] = name
        else:
            meta["generateName"] = f"{owner['metadata']['name']}-"
        if tmeta.get("annotations"):
            meta["annotations"] = clone(tmeta["annotations"])
        pod_spec = clone((template or {}).get("spec") or {})
        pod_spec.update(spec)
        pod_spec["nodeName"] = NODE_NAME
        return self._create(PODS, {"metadata": meta, "spec": pod_spec})

    def _failed_create(self, key: tuple[str, str], obj: Obj, err: ApiError, status: Obj) -> None:
        """What the controllers record when the API refuses a Pod: ReplicaFailure/FailedCreate."""
        prev = _conditions(obj.get("status") or {}).get("ReplicaFailure") or {}
        condition = {
            "type": "ReplicaFailure",
            "status": "True",
            "lastTransitionTime": _iso(time.time()),
            "reason": "FailedCreate",
            "message": err.message,
        }
        if prev.get("message") == err.message:
            condition = prev
        status["conditions"] = [condition]
        self._status(key, obj, status)

    # ------------------------------------------------------------------ kubelet
    def _kubelet(self, pod: Obj, now: float) -> None:
        meta = pod["metadata"]
        if (pod.get("spec") or {}).get("nodeName", NODE_NAME) != NODE_NAME:
            return
        born = self._born.setdefault(meta["uid"], now)
        status = self._pod_status(pod, born, now)
        self._status(PODS, pod, status, manager=KUBELET)

    def _container(self, c: Obj, pod: Obj, start: float, now: float, *, runs_once: bool) -> Obj:
        """A container's status at ``now`` when it was (or will be) started at ``start``."""
        name, image = str(c.get("name", "")), str(c.get("image", ""))
        outcome = image_outcome(image)
        out: Obj = {"name": name, "image": image, "imageID": "", "ready": False, "restartCount": 0}
        out["started"] = False
        if now < start:
            out["state"] = {"waiting": {"reason": "ContainerCreating"}}
            self._wake_at(start)
            return out
        meta = pod["metadata"]
        if outcome == "broken":
            error = pull_error(image)
            if now < start + self.delay:
                waiting = {"reason": "ErrImagePull", "message": error}
                self._wake_at(start + self.delay)
            else:
                waiting = {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}": ErrImagePull: {error}',
                }
            out["state"] = {"waiting": waiting}
            return out
        ref = _reference(image).rsplit(":", 1)[0]
        out["imageID"] = f"{ref}@sha256:{_digest(image)}"
        if outcome == "crash" and not runs_once:
            # run k (k = 0, 1, ...) starts at start + unit * (2^k - 1): the back-off doubles
            unit = self._unit
            restarts = int(math.log2((now - start) / unit + 1))
            last = start + unit * (2**restarts - 1)
            self._wake_at(start + unit * (2 ** (restarts + 1) - 1))
            cid = f"containerd://{_digest(meta['uid'], name, str(restarts))}"
            backoff = min(10.0 * 2**restarts, _MAX_BACKOFF)
            pod_ref = f"{meta['name']}_{meta.get('namespace', '')}({meta['uid']})"
            out["restartCount"] = restarts
            out["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": _iso(last),
                    "finishedAt": _iso(last),
                    "containerID": cid,
                }
            }
            out["containerID"] = cid
            out["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {_go_duration(backoff)} restarting failed "
                    f"container={name} pod={pod_ref}",
                }
            }
            return out
        cid = f"containerd://{_digest(meta['uid'], name, '0')}"
        out["containerID"] = cid
        if runs_once:  # an init container, or a Pod that runs to completion
            code = 1 if outcome == "crash" else 0
            out["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Error" if code else "Completed",
                    "startedAt": _iso(start),
                    "finishedAt": _iso(start),
                    "containerID": cid,
                }
            }
            out["ready"] = False
            return out
        out.update(ready=True, started=True, state={"running": {"startedAt": _iso(start)}})
        return out

    def _pod_status(self, pod: Obj, born: float, now: float) -> Obj:
        spec = pod.get("spec") or {}
        old = pod.get("status") or {}
        old_conds = _conditions(old)
        stamp = _iso(now)
        start = born + self.delay
        once = spec.get("restartPolicy", "Always") != "Always"
        inits = [c for c in spec.get("initContainers") or () if isinstance(c, dict)]
        # init containers run once, unless they crash: then they crash-loop like any other
        init_statuses = [
            self._container(
                c,
                pod,
                start,
                now,
                runs_once=once or image_outcome(str(c.get("image") or "")) != "crash",
            )
            for c in inits
        ]
        pending_inits = [
            s["name"]
            for s in init_statuses
            if (s["state"].get("terminated") or {}).get("exitCode") != 0
        ]
        initialized = not pending_inits
        containers = [c for c in spec.get("containers") or () if isinstance(c, dict)]
        if initialized:
            statuses = [self._container(c, pod, start, now, runs_once=once) for c in containers]
        else:
            statuses = [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": "PodInitializing"}},
                }
                for c in containers
            ]
        unready = [s["name"] for s in statuses if not s["ready"]]
        terminated = [s["state"].get("terminated") for s in statuses]
        if initialized and statuses and all(terminated):
            phase = "Failed" if any(t.get("exitCode") for t in terminated if t) else "Succeeded"
        elif initialized and statuses and all(_has_run(s) for s in statuses):
            phase = "Running"
        else:
            phase = "Pending"
        done = phase in ("Succeeded", "Failed")
        if done:
            ready = ("False", "PodCompleted", "")
        elif unready:
            ready = (
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{' '.join(unready)}]",
            )
        else:
            ready = ("True", "", "")
        if initialized:
            init = ("True", "", "")
        else:
            names = " ".join(pending_inits)
            init = (
                "False",
                "ContainersNotInitialized",
                f"containers with incomplete status: [{names}]",
            )
        wanted = {
            "PodReadyToStartContainers": ("True" if now >= start else "False", "", ""),
            "Initialized": init,
            "Ready": ready,
            "ContainersReady": ready,
            "PodScheduled": ("True", "", ""),
        }
        conditions = [_cond(t, *value, old_conds, stamp) for t, value in wanted.items()]
        status: Obj = {"phase": phase, "conditions": conditions, "hostIP": NODE_IP}
        status["hostIPs"] = [{"ip": NODE_IP}]
        if now >= start:
            ip = old.get("podIP") or self._next_pod_ip()
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        status["startTime"] = _iso(born)
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        status["containerStatuses"] = statuses
        status["qosClass"] = old.get("qosClass", "BestEffort")
        return status

    def _next_pod_ip(self) -> str:
        self._pod_ips += 1
        n = self._pod_ips
        return f"10.244.{n // 250}.{n % 250 + 2}"

    # ------------------------------------------------------------------ ReplicaSets
    def _replicaset(self, rs: Obj, now: float) -> None:
        spec = rs.get("spec") or {}
        want = _replicas(rs)
        pods = [p for p in self._owned(PODS, rs) if not p["metadata"].get("deletionTimestamp")]
        status: Obj = {"replicas": 0, "observedGeneration": rs["metadata"].get("generation", 1)}
        try:
            for _ in range(want - len(pods)):
                pods.append(self._new_pod(rs, spec.get("template"), labels={}, spec={}))
        except ApiError as err:
            self._failed_create(REPLICASETS, rs, err, status)
            return
        if len(pods) > want:
            # the controller's victims first: not ready, then the newest
            ranked = sorted(
                pods, key=lambda p: (_pod_ready(p), -self._born.get(p["metadata"]["uid"], 0.0))
            )
            for pod in ranked[: len(pods) - want]:
                self._delete(PODS, pod)
                pods.remove(pod)
        ready = sum(1 for p in pods if _pod_ready(p))
        status.update(
            replicas=len(pods),
            fullyLabeledReplicas=len(pods),
            readyReplicas=ready,
            availableReplicas=ready,
        )
        status = _drop_zeros(status, ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"))
        self._status(REPLICASETS, rs, status)

    # ------------------------------------------------------------------ Deployments
    def _deployment(self, dep: Obj, now: float) -> None:
        spec = dep.get("spec") or {}
        meta = dep["metadata"]
        template = spec.get("template") or {}
        replicas = _int(spec.get("replicas"), 1)
        surge, unavailable = _fenceposts(spec)
        rss = self._owned(REPLICASETS, dep)
        new = next(
            (rs for rs in rss if _without_hash((rs.get("spec") or {}).get("template")) == template),
            None,
        )
        olds = [rs for rs in rss if rs is not new]
        top = max((_revision(rs) for rs in olds), default=0)
        created = False
        if not spec.get("paused"):
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                new, created = self._recreate(dep, new, olds, replicas, top)
            else:
                new, created = self._roll(dep, new, olds, replicas, surge, unavailable, top)
            self._clean_history(dep, olds)
        rss = self._owned(REPLICASETS, dep)
        new = next(
            (
                rs
                for rs in rss
                if new is not None and rs["metadata"]["uid"] == new["metadata"]["uid"]
            ),
            None,
        )
        annotations = None
        if new is not None:
            revision = (new["metadata"].get("annotations") or {}).get(REVISION, "1")
            if (meta.get("annotations") or {}).get(REVISION) != revision:
                annotations = {REVISION: revision}
        status = self._deployment_status(dep, new, rss, replicas, unavailable, created, now)
        self._status(("apps", "deployments"), dep, status, annotations=annotations)

    def _create_replicaset(self, dep: Obj, replicas: int, surge: int, revision: int) -> Obj:
        spec = dep.get("spec") or {}
        template = clone(spec.get("template") or {})
        digest = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = digest
        selector = clone(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = digest
        rs_spec: Obj = {"replicas": replicas, "selector": selector, "template": template}
        if spec.get("minReadySeconds"):
            rs_spec["minReadySeconds"] = spec["minReadySeconds"]
        desired = _int(spec.get("replicas"), 1)
        body = {
            "metadata": {
                "name": f"{dep['metadata']['name']}-{digest}",
                "namespace": dep["metadata"]["namespace"],
                "labels": _labels(template),
                "annotations": {
                    DESIRED_REPLICAS: str(desired),
                    MAX_REPLICAS: str(desired + surge),
                    REVISION: str(revision),
                },
                "ownerReferences": [_owner_reference(dep)],
            },
            "spec": rs_spec,
        }
        return self._create(REPLICASETS, body)

    def _adopt(self, rs: Obj, top: int, dep: Obj) -> None:
        """A ReplicaSet whose template comes back (a rollback) becomes the newest revision."""
        revision = _revision(rs)
        desired = str(_int((dep.get("spec") or {}).get("replicas"), 1))

        def change(o: Obj) -> None:
            ann = o["metadata"].setdefault("annotations", {})
            if revision <= top:
                ann[REVISION] = str(top + 1)
            ann[DESIRED_REPLICAS] = desired

        self._update(REPLICASETS, rs, change)

    def _roll(
        self,
        dep: Obj,
        new: Obj | None,
        olds: list[Obj],
        replicas: int,
        surge: int,
        unavailable: int,
        top: int,
    ) -> tuple[Obj | None, bool]:
        """One step of a RollingUpdate (reconcileNewReplicaSet, then reconcileOldReplicaSets)."""
        sizes = {rs["metadata"]["uid"]: _replicas(rs) for rs in olds}
        current = _replicas(new)
        target = current
        if current < replicas:
            room = replicas + surge - (sum(sizes.values()) + current)
            target = current + max(0, min(room, replicas - current))
        elif current > replicas:
            target = replicas
        created = False
        if new is None:
            new = self._create_replicaset(dep, target, surge, top + 1)
            created = True
        else:
            self._adopt(new, top, dep)
            self._scale(new, target)
        min_available = replicas - unavailable
        new_unavailable = target - _status_int(new, "availableReplicas")
        budget = sum(sizes.values()) + target - min_available - new_unavailable
        if budget <= 0:
            return new, created
        # unhealthy old replicas go first, then old available ones while enough stay available
        for rs in olds:
            uid = rs["metadata"]["uid"]
            sick = sizes[uid] - _status_int(rs, "availableReplicas")
            if budget > 0 and sizes[uid] and sick > 0:
                down = min(budget, sick)
                sizes[uid] -= down
                budget -= down
        available = sum(_status_int(rs, "availableReplicas") for rs in olds)
        available += _status_int(new, "availableReplicas")
        spare = available - min_available
        for rs in olds:
            uid = rs["metadata"]["uid"]
            if spare > 0 and sizes[uid]:
                down = min(sizes[uid], spare)
                sizes[uid] -= down
                spare -= down
        for rs in olds:
            self._scale(rs, sizes[rs["metadata"]["uid"]])
        return new, created

    def _recreate(
        self, dep: Obj, new: Obj | None, olds: list[Obj], replicas: int, top: int
    ) -> tuple[Obj | None, bool]:
        """Recreate: old ReplicaSets to zero, and the new one only once their Pods are gone."""
        for rs in olds:
            self._scale(rs, 0)
        if any(self._owned(PODS, rs) for rs in olds):
            return new, False
        if new is None:
            return self._create_replicaset(dep, replicas, 0, top + 1), True
        self._adopt(new, top, dep)
        self._scale(new, replicas)
        return new, False

    def _clean_history(self, dep: Obj, olds: list[Obj]) -> None:
        limit = _int((dep.get("spec") or {}).get("revisionHistoryLimit"), 10)
        idle = [rs for rs in olds if _replicas(rs) == 0 and _status_int(rs, "replicas") == 0]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            self._delete(REPLICASETS, rs)

    def _deployment_status(
        self,
        dep: Obj,
        new: Obj | None,
        rss: list[Obj],
        replicas: int,
        unavailable: int,
        created: bool,
        now: float,
    ) -> Obj:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        old = dep.get("status") or {}
        uid = meta["uid"]
        counts = {
            key: sum(_status_int(rs, key) for rs in rss)
            for key in ("replicas", "readyReplicas", "availableReplicas")
        }
        updated = _status_int(new, "replicas")
        available = counts["availableReplicas"]
        status: Obj = {
            "observedGeneration": meta.get("generation", 1),
            **counts,
            "updatedReplicas": updated,
            "unavailableReplicas": max(0, sum(_replicas(rs) for rs in rss) - available),
        }
        # DeploymentProgressing: more updated, ready or available replicas, or fewer old ones
        progressed = (
            updated > _int(old.get("updatedReplicas"))
            or counts["replicas"] - updated
            < _int(old.get("replicas")) - _int(old.get("updatedReplicas"))
            or counts["readyReplicas"] > _int(old.get("readyReplicas"))
            or available > _int(old.get("availableReplicas"))
        )
        if created or progressed or uid not in self._progress:
            self._progress[uid] = now
        old_conds = _conditions(old)
        previous = (old_conds.get("Progressing") or {}).get("reason")
        # what the messages name: the new ReplicaSet, or the Deployment while it has none
        subject = (
            f'ReplicaSet "{new["metadata"]["name"]}"'
            if new is not None
            else f'Deployment "{meta["name"]}"'
        )
        complete = new is not None and [updated, counts["replicas"], available] == [replicas] * 3
        deadline = _int(spec.get("progressDeadlineSeconds"), 600)
        # (status, reason, message, whether lastUpdateTime moves) of the Progressing condition
        progressing: tuple[str, str, str, bool] | None
        if spec.get("paused"):
            progressing = ("Unknown", "DeploymentPaused", "Deployment is paused", False)
        elif previous == "DeploymentPaused":
            self._progress[uid] = now
            progressing = ("True", "DeploymentResumed", "Deployment is resumed", True)
        elif complete:
            message = f"{subject} has successfully progressed."
            progressing = ("True", "NewReplicaSetAvailable", message, False)
        elif created and new is not None:
            message = f'Created new replica set "{new["metadata"]["name"]}"'
            progressing = ("True", "NewReplicaSetCreated", message, True)
        elif progressed or previous is None:
            progressing = ("True", "ReplicaSetUpdated", f"{subject} is progressing.", True)
        elif previous == "ProgressDeadlineExceeded" or (
            # a finished rollout's condition says nothing of a deadline (DeploymentTimedOut)
            previous != "NewReplicaSetAvailable" and now - self._progress[uid] >= deadline
        ):
            message = f"{subject} has timed out progressing."
            progressing = ("False", "ProgressDeadlineExceeded", message, False)
        else:
            self._wake_at(self._progress[uid] + deadline)
            progressing = None  # no news: the condition stays as it is
        if available >= replicas - unavailable:
            available_cond = (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                False,
            )
        else:
            available_cond = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                False,
            )
        stamp = _iso(now)
        status["conditions"] = [
            _deployment_condition("Available", available_cond, old_conds, stamp),
            _deployment_condition("Progressing", progressing, old_conds, stamp),
        ]
        zeros = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        return _drop_zeros(status, (*zeros, "unavailableReplicas"))

    # ------------------------------------------------------------------ StatefulSets
    def _revision(self, owner: Obj, digest: str, name: str) -> None:
        """The ControllerRevision of the owner's current template (created once)."""
        revisions = self._owned(REVISIONS, owner)
        if any(r["metadata"]["name"] == name for r in revisions):
            return
        template = clone((owner.get("spec") or {}).get("template") or {})
        template["$patch"] = "replace"
        body = {
            "metadata": {
                "name": name,
                "namespace": owner["metadata"]["namespace"],
                "labels": {**_labels(template), "controller.kubernetes.io/hash": digest},
                "ownerReferences": [_owner_reference(owner)],
            },
            "data": {"spec": {"template": template}},
            "revision": max((_int(r.get("revision")) for r in revisions), default=0) + 1,
        }
        self._create(REVISIONS, body)

    def _statefulset(self, sts: Obj, now: float) -> None:
        spec = sts.get("spec") or {}
        meta = sts["metadata"]
        name = meta["name"]
        template = spec.get("template") or {}
        replicas = _int(spec.get("replicas"), 1)
        update = f"{name}-{template_hash(template)}"
        self._revision(sts, update.rsplit("-", 1)[1], update)
        old = sts.get("status") or {}
        current = old.get("currentRevision") or update
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = _int((strategy.get("rollingUpdate") or {}).get("partition")) if rolling else 0
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        pods = {}
        for pod in self._owned(PODS, sts):
            ordinal = pod["metadata"]["name"].rsplit("-", 1)[-1]
            if ordinal.isdigit():
                pods[int(ordinal)] = pod
        status: Obj = {"observedGeneration": meta.get("generation", 1), "replicas": 0}
        try:
            for i in range(replicas):
                if i in pods:
                    continue
                if ordered and not all(j in pods and _pod_ready(pods[j]) for j in range(i)):
                    break
                revision = update if i >= partition or not rolling else current
                pods[i] = self._stateful_pod(sts, i, revision)
                if ordered:
                    break
        except ApiError as err:
            self._failed_create(("apps", "statefulsets"), sts, err, status)
            return
        extra = sorted((i for i in pods if i >= replicas), reverse=True)
        steady = all(_pod_ready(p) for p in pods.values())
        for i in extra[: 1 if ordered else len(extra)]:
            if steady or not ordered:
                self._delete(PODS, pods.pop(i))
        if rolling and not extra and len(pods) == replicas and steady:
            for i in range(replicas - 1, partition - 1, -1):
                if pods[i]["metadata"].get("labels", {}).get(REVISION_HASH) != update:
                    self._delete(PODS, pods.pop(i))
                    break
        revisions = [p["metadata"].get("labels", {}).get(REVISION_HASH) for p in pods.values()]
        ready = sum(1 for p in pods.values() if _pod_ready(p))
        updated = revisions.count(update)
        if updated == replicas and ready == replicas:
            current = update
        status.update(
            replicas=len(pods),
            readyReplicas=ready,
            currentReplicas=revisions.count(current),
            updatedReplicas=updated,
            availableReplicas=ready,
            currentRevision=current,
            updateRevision=update,
            collisionCount=0,
        )
        status = _drop_zeros(status, ("readyReplicas", "currentReplicas", "updatedReplicas"))
        self._status(("apps", "statefulsets"), sts, status)

    def _stateful_pod(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        spec = sts.get("spec") or {}
        meta = sts["metadata"]
        pod_name = f"{meta['name']}-{ordinal}"
        extra: Obj = {"hostname": pod_name}
        if spec.get("serviceName"):
            extra["subdomain"] = spec["serviceName"]
        volumes = list(((spec.get("template") or {}).get("spec") or {}).get("volumes") or [])
        for claim in spec.get("volumeClaimTemplates") or ():
            claim_name = (claim.get("metadata") or {}).get("name", "")
            pvc_name = f"{claim_name}-{pod_name}"
            if (
                self.emulator.store.get(("", "persistentvolumeclaims"), meta["namespace"], pvc_name)
                is None
            ):
                labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
                self._create(
                    ("", "persistentvolumeclaims"),
                    {
                        "metadata": {
                            "name": pvc_name,
                            "namespace": meta["namespace"],
                            "labels": dict(labels),
                        },
                        "spec": clone(claim.get("spec") or {}),
                    },
                )
            volumes = [v for v in volumes if v.get("name") != claim_name]
            volumes.append({"name": claim_name, "persistentVolumeClaim": {"claimName": pvc_name}})
        if volumes:
            extra["volumes"] = volumes
        labels = {
            REVISION_HASH: revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal),
        }
        return self._new_pod(sts, spec.get("template"), name=pod_name, labels=labels, spec=extra)

    # ------------------------------------------------------------------ DaemonSets
    def _daemonset(self, ds: Obj, now: float) -> None:
        spec = ds.get("spec") or {}
        meta = ds["metadata"]
        template = spec.get("template") or {}
        digest = template_hash(template)
        self._revision(ds, digest, f"{meta['name']}-{digest}")
        pods = self._owned(PODS, ds)
        status: Obj = {"observedGeneration": meta.get("generation", 1)}
        stale = [p for p in pods if p["metadata"].get("labels", {}).get(REVISION_HASH) != digest]
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        if rolling and stale:
            self._delete(PODS, stale[0])
            pods.remove(stale[0])
        if not pods:
            affinity = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {
                                        "key": "metadata.name",
                                        "operator": "In",
                                        "values": [NODE_NAME],
                                    }
                                ]
                            }
                        ]
                    }
                }
            }
            labels = {
                REVISION_HASH: digest,
                "pod-template-generation": str(meta.get("generation", 1)),
            }
            try:
                pods.append(self._new_pod(ds, template, labels=labels, spec={"affinity": affinity}))
            except ApiError as err:
                self._failed_create(("apps", "daemonsets"), ds, err, status)
                return
        ready = sum(1 for p in pods if _pod_ready(p))
        updated = sum(
            1 for p in pods if p["metadata"].get("labels", {}).get(REVISION_HASH) == digest
        )
        status.update(
            currentNumberScheduled=len(pods),
            desiredNumberScheduled=1,
            numberMisscheduled=0,
            numberReady=ready,
            updatedNumberScheduled=updated,
            numberAvailable=ready,
            numberUnavailable=1 - ready,
        )
        status = _drop_zeros(
            status, ("updatedNumberScheduled", "numberAvailable", "numberUnavailable")
        )
        self._status(("apps", "daemonsets"), ds, status)

    # ------------------------------------------------------------------ Jobs
    def _job(self, job: Obj, now: float) -> None:
        spec = job.get("spec") or {}
        meta = job["metadata"]
        status = job.get("status") or {}
        since = self._seen.setdefault((meta["uid"], meta.get("generation", 1)), now)
        if now - since < self.delay:
            self._wake_at(since + self.delay)
            return
        if spec.get("suspend") or status.get("completionTime"):
            return
        if any(c.get("type") == "Failed" for c in status.get("conditions") or ()):
            return
        out: Obj = {
            "startTime": status.get("startTime") or _iso(since),
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }
        if is_broken(spec.get("template")):
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None and now - since >= deadline:
                message = "Job was active longer than specified deadline"
                out["failed"] = 1
                out["conditions"] = [
                    self._job_condition("FailureTarget", "DeadlineExceeded", message, now),
                    self._job_condition("Failed", "DeadlineExceeded", message, now),
                ]
            else:
                if deadline is not None:
                    self._wake_at(since + deadline)
                out["active"] = spec.get("parallelism", 1)
        else:
            message = "Reached expected number of succeeded pods"
            out["succeeded"] = spec.get("completions") or 1
            out["completionTime"] = _iso(now)
            out["conditions"] = [
                self._job_condition("SuccessCriteriaMet", "CompletionsReached", message, now),
                self._job_condition("Complete", "CompletionsReached", message, now),
            ]
        if out.get("active") and status.get("active") == out["active"]:
            return  # still running: nothing new to write
        self._status(("batch", "jobs"), job, out)

    @staticmethod
    def _job_condition(ctype: str, reason: str, message: str, now: float) -> Obj:
        return {
            "type": ctype,
            "status": "True",
            "lastProbeTime": _iso(now),
            "lastTransitionTime": _iso(now),
            "reason": reason,
            "message": message,
        }
