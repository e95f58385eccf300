"""The emulator's controllers and kubelet: ReplicaSets and Pods as a real cluster makes them,
rollouts, images that cannot be pulled or that crash, StatefulSets and DaemonSets.

Objects are applied over HTTP as a client would and read back from the store (what any client
would GET); the server's controller runs with its 0.2 s delay.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from tests.kube_emulator import EmulatorServer
from tests.kube_emulator.controller import pull_error, template_hash
from tests.kube_emulator.fixture import Kubectl

T = TypeVar("T")
Obj = dict[str, Any]


def until(probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


class Api:
    """Applies objects over HTTPS with the admin token; reads the store for assertions."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.context = ssl.create_default_context(cafile=server.ca_file)

    def apply(self, obj: Obj) -> Obj:
        group, _, version = obj["apiVersion"].rpartition("/")
        plural = obj["kind"].lower() + "s"
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        ns = obj["metadata"].get("namespace")
        path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        return self.request(
            "PATCH",
            f"{path}/{obj['metadata']['name']}?fieldManager=test&force=true",
            obj,
            "application/apply-patch+yaml",
        )

    def request(self, method: str, path: str, body: Obj | None = None, ctype: str = "") -> Obj:
        req = urllib.request.Request(
            self.server.https_url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.server.tokens['admin']}",
                "Content-Type": ctype or "application/json",
            },
        )
        with urllib.request.urlopen(req, context=self.context) as resp:
            result: Obj = json.loads(resp.read())
            return result

    def get(self, key: tuple[str, str], name: str, ns: str = "default") -> Obj | None:
        return self.server.store.get(key, ns, name)

    def list(self, key: tuple[str, str], ns: str = "default") -> list[Obj]:
        return sorted(self.server.store.list(key, ns), key=lambda o: o["metadata"]["name"])

    def pods(self, ns: str = "default") -> list[Obj]:
        return self.list(("", "pods"), ns)

    def replicasets(self, ns: str = "default") -> list[Obj]:
        return self.list(("apps", "replicasets"), ns)


@pytest.fixture
def api(kube_emulator: EmulatorServer) -> Api:
    return Api(kube_emulator)


def deployment(name: str = "api", image: str = "nginx:1.25", replicas: int = 2, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


def condition(obj: Obj | None, ctype: str) -> Obj:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or ():
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def rolled_out(api: Api, name: str = "api") -> Obj | None:
    """The Deployment once its rollout is done, judged as ``kubectl rollout status`` does."""
    dep = api.get(("apps", "deployments"), name)
    if dep is None:
        return None
    status, want = dep["status"], dep["spec"]["replicas"]
    observed = status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
    counts = [status.get(k, 0) for k in ("updatedReplicas", "replicas", "availableReplicas")]
    return dep if observed and counts == [want] * 3 else None


def test_a_deployment_makes_a_replicaset_and_pods_as_a_real_cluster(api: Api) -> None:
    api.apply(deployment())
    dep = until(lambda: rolled_out(api))
    [rs] = api.replicasets()
    template = dep["spec"]["template"]
    digest = template_hash(template)
    assert rs["metadata"]["name"] == f"api-{digest}"
    assert len(digest) <= 10 and set(digest) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs["metadata"]["labels"] == {"app": "api", "pod-template-hash": digest}
    assert rs["metadata"]["annotations"] == {
        "deployment.kubernetes.io/desired-replicas": "2",
        "deployment.kubernetes.io/max-replicas": "3",
        "deployment.kubernetes.io/revision": "1",
    }
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "api",
            "uid": dep["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "api", "pod-template-hash": digest}}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == digest
    assert rs["status"] == {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "observedGeneration": 1,
    }
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    status = dep["status"]
    assert {k: status[k] for k in ("replicas", "updatedReplicas", "readyReplicas")} == {
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
    }
    assert "unavailableReplicas" not in status
    assert condition(dep, "Available")["reason"] == "MinimumReplicasAvailable"
    assert condition(dep, "Progressing")["message"] == (
        f'ReplicaSet "api-{digest}" has successfully progressed.'
    )

    pods = api.pods()
    assert len(pods) == 2
    for pod in pods:
        meta = pod["metadata"]
        assert meta["name"].startswith(f"api-{digest}-") and len(meta["name"]) == len(
            f"api-{digest}-xxxxx"
        )
        assert meta["labels"] == {"app": "api", "pod-template-hash": digest}
        assert meta["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert meta["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        assert meta["ownerReferences"][0]["controller"] is True
        assert pod["spec"]["nodeName"] == "kube-emulator"
        assert pod["spec"]["serviceAccountName"] == "default"
        status = pod["status"]
        assert status["phase"] == "Running" and status["podIP"].startswith("10.244.")
        assert status["qosClass"] == "BestEffort"
        [container] = status["containerStatuses"]
        assert container["ready"] is True and container["started"] is True
        assert container["imageID"].startswith("docker.io/library/nginx@sha256:")
        assert container["containerID"].startswith("containerd://")
        assert "running" in container["state"]
        assert [c["type"] for c in status["conditions"]] == [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        assert {c["status"] for c in status["conditions"]} == {"True"}
    managers = {e["manager"] for e in pods[0]["metadata"]["managedFields"]}
    assert managers == {"kube-controller-manager", "kubelet"}

    # scaling down deletes Pods; deleting the Deployment deletes its ReplicaSet and Pods
    api.apply(deployment(replicas=1))
    until(lambda: len(api.pods()) == 1 and rolled_out(api))
    api.request("DELETE", "/apis/apps/v1/namespaces/default/deployments/api")
    assert api.replicasets() == [] and api.pods() == []


def test_a_new_template_rolls_out_a_new_replicaset_and_scales_the_old_one_down(api: Api) -> None:
    api.apply(deployment(replicas=4))
    until(lambda: rolled_out(api))
    [first] = api.replicasets()
    api.apply(deployment(image="nginx:1.26", replicas=4))
    seen_total: list[int] = []

    def done() -> Obj | None:
        seen_total.append(len(api.pods()))
        return rolled_out(api)

    dep = until(done)
    old, new = sorted(
        api.replicasets(),
        key=lambda rs: rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
    )
    assert old["metadata"]["uid"] == first["metadata"]["uid"]
    assert old["spec"]["replicas"] == 0 and "readyReplicas" not in old["status"]
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in api.pods()} == {
        new["metadata"]["labels"]["pod-template-hash"]
    }
    assert max(seen_total) <= 5  # maxSurge 25% of 4: one Pod above the desired count

    # going back to the first template takes the first ReplicaSet back, as revision 3
    api.apply(deployment(replicas=4))
    dep = until(lambda: rolled_out(api))
    back = api.get(("apps", "replicasets"), first["metadata"]["name"])
    assert back is not None and back["spec"]["replicas"] == 4
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_recreate_removes_old_pods_before_making_new_ones(
    api: Api, kube_emulator: EmulatorServer
) -> None:
    api.apply(deployment(strategy={"type": "Recreate"}))
    until(lambda: rolled_out(api))
    old_hash = api.replicasets()[0]["metadata"]["labels"]["pod-template-hash"]
    since = kube_emulator.store.resource_version
    api.apply(deployment(image="nginx:1.26", strategy={"type": "Recreate"}))
    until(lambda: rolled_out(api))
    events = [e for e in kube_emulator.store.events_after(since) if e.key == ("", "pods")]
    last_old_gone = max(
        i for i, e in enumerate(events)
        if e.type == "DELETED" and e.obj["metadata"]["labels"]["pod-template-hash"] == old_hash
    )  # fmt: skip
    first_new = min(i for i, e in enumerate(events) if e.type == "ADDED")
    assert last_old_gone < first_new


def test_old_replicasets_beyond_the_history_limit_are_deleted(api: Api) -> None:
    for version in ("1.24", "1.25", "1.26", "1.27"):
        api.apply(deployment(image=f"nginx:{version}", replicas=1, revisionHistoryLimit=1))
        until(lambda: rolled_out(api))
    revisions = sorted(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        for rs in until(lambda: len(api.replicasets()) == 2 and api.replicasets())
    )
    assert revisions == ["3", "4"]


def test_an_image_that_cannot_be_pulled_waits_in_image_pull_back_off(api: Api) -> None:
    image = "registry.example/shop:broken"
    api.apply(deployment(image=image, replicas=1, progressDeadlineSeconds=2))

    def waiting(reason: str) -> Obj | None:
        pods = api.pods()
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        state = statuses[0]["state"].get("waiting") if statuses else None
        return pods[0] if state and state.get("reason") == reason else None

    pod = until(lambda: waiting("ErrImagePull"))
    error = pull_error(image)
    assert error == (
        "rpc error: code = NotFound desc = failed to pull and unpack image "
        '"registry.example/shop:broken": failed to resolve reference '
        '"registry.example/shop:broken": registry.example/shop:broken: not found'
    )
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == error
    pod = until(lambda: waiting("ImagePullBackOff"))
    status = pod["status"]
    [container] = status["containerStatuses"]
    assert container["state"] == {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": f'Back-off pulling image "{image}": ErrImagePull: {error}',
        }
    }
    assert (container["ready"], container["started"], container["imageID"]) == (False, False, "")
    assert status["phase"] == "Pending"
    ready = condition(pod, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ContainersNotReady",
        "containers with unready status: [app]",
    )
    assert condition(pod, "PodScheduled")["status"] == "True"

    dep = api.get(("apps", "deployments"), "api")
    assert condition(dep, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert condition(dep, "Progressing")["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated")
    dep = until(
        lambda: (
            condition(api.get(("apps", "deployments"), "api"), "Progressing").get("reason")
            == "ProgressDeadlineExceeded"
            and api.get(("apps", "deployments"), "api")
        )
    )
    progressing = condition(dep, "Progressing")
    rs_name = api.replicasets()[0]["metadata"]["name"]
    assert progressing["status"] == "False"
    assert progressing["message"] == f'ReplicaSet "{rs_name}" has timed out progressing.'
    assert dep["status"]["unavailableReplicas"] == 1


def test_a_broken_update_leaves_the_old_pods_serving(api: Api) -> None:
    api.apply(deployment(replicas=2))
    until(lambda: rolled_out(api))
    api.apply(deployment(image="nginx:broken", replicas=2, progressDeadlineSeconds=1))
    dep = until(
        lambda: (
            condition(api.get(("apps", "deployments"), "api"), "Progressing").get("reason")
            == "ProgressDeadlineExceeded"
            and api.get(("apps", "deployments"), "api")
        )
    )
    # maxUnavailable 25% of 2 is 0: the old Pods stay, one new Pod is tried (maxSurge 1)
    assert condition(dep, "Available")["status"] == "True"
    status = dep["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (3, 1, 2)
    phases = sorted(p["status"]["phase"] for p in api.pods())
    assert phases == ["Pending", "Running", "Running"]


def test_a_crashing_container_loops_in_crash_loop_back_off(api: Api) -> None:
    api.apply(deployment(image="nginx:crash", replicas=1))

    def restarted() -> Obj | None:
        pods = api.pods()
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return pods[0] if statuses and statuses[0]["restartCount"] >= 2 else None

    pod = until(restarted)
    [container] = pod["status"]["containerStatuses"]
    meta = pod["metadata"]
    waiting = container["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    # the real back-off: 10 s doubling at each restart, at most 5 minutes
    seconds = min(10 * 2 ** container["restartCount"], 300)
    backoff = f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"
    assert waiting["message"] == (
        f"back-off {backoff} restarting failed container=app "
        f"pod={meta['name']}_default({meta['uid']})"
    )
    terminated = container["lastState"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
    assert container["ready"] is False and container["started"] is False
    assert pod["status"]["phase"] == "Running"
    assert condition(pod, "Ready")["status"] == "False"
    dep = api.get(("apps", "deployments"), "api")
    assert dep is not None and "availableReplicas" not in dep["status"]


def test_statefulset_pods_in_order_with_claims_revisions_and_rolling_update(api: Api) -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [
                        {
                            "name": "db",
                            "image": "postgres:16",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    since = api.server.store.resource_version
    api.apply(sts)

    def ready() -> Obj | None:
        obj = api.get(("apps", "statefulsets"), "db")
        status = (obj or {}).get("status") or {}
        done = status.get("readyReplicas") == 2 and status.get("updatedReplicas") == 2
        return obj if done and status["currentRevision"] == status["updateRevision"] else None

    obj = until(ready)
    revision = obj["status"]["updateRevision"]
    assert revision == f"db-{template_hash(obj['spec']['template'])}"
    pods = api.pods()
    assert [p["metadata"]["name"] for p in pods] == ["db-0", "db-1"]
    # in order (OrderedReady): db-1 was created only once db-0 was ready
    events = [e for e in api.server.store.events_after(since) if e.key == ("", "pods")]
    db1_added = next(
        i for i, e in enumerate(events) if e.type == "ADDED" and e.obj["metadata"]["name"] == "db-1"
    )
    db0_ready = next(
        i for i, e in enumerate(events)
        if e.obj["metadata"]["name"] == "db-0" and condition(e.obj, "Ready").get("status") == "True"
    )  # fmt: skip
    assert db0_ready < db1_added
    for i, pod in enumerate(pods):
        labels = pod["metadata"]["labels"]
        assert labels["controller-revision-hash"] == revision
        assert labels["statefulset.kubernetes.io/pod-name"] == f"db-{i}"
        assert labels["apps.kubernetes.io/pod-index"] == str(i)
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"db-{i}", "db")
        assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-db-{i}"}} in pod[
            "spec"
        ]["volumes"]
    claims = [c["metadata"]["name"] for c in api.list(("", "persistentvolumeclaims"))]
    assert claims == ["data-db-0", "data-db-1"]
    [rev] = api.list(("apps", "controllerrevisions"))
    assert rev["metadata"]["name"] == revision and rev["revision"] == 1

    sts["spec"]["template"]["spec"]["containers"][0]["image"] = "postgres:17"
    api.apply(sts)
    obj = until(lambda: (o := ready()) and o["status"]["updateRevision"] != revision and o)
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in api.pods()} == {
        obj["status"]["updateRevision"]
    }
    assert len(api.list(("apps", "controllerrevisions"))) == 2


def test_daemonset_runs_one_pod_and_replaces_it_on_a_new_template(api: Api) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]},
            },
        },
    }
    api.apply(ds)

    def ready() -> Obj | None:
        obj = api.get(("apps", "daemonsets"), "agent")
        status = (obj or {}).get("status") or {}
        fresh = obj and status.get("observedGeneration") == obj["metadata"]["generation"]
        return (
            obj
            if fresh
            and status.get("numberReady") == 1
            and status.get("updatedNumberScheduled") == 1
            else None
        )

    until(ready)
    [pod] = api.pods()
    assert pod["spec"]["nodeName"] == "kube-emulator"
    assert pod["metadata"]["labels"]["pod-template-generation"] == "1"
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    api.apply(ds)
    obj = until(lambda: (o := ready()) and o["metadata"]["generation"] == 2 and o)
    [new_pod] = api.pods()
    assert new_pod["metadata"]["uid"] != pod["metadata"]["uid"]
    assert obj["status"]["desiredNumberScheduled"] == 1


def test_pods_that_run_once_succeed_or_fail(api: Api) -> None:
    for name, image in (("once", "busybox"), ("fails", "busybox:crash")):
        api.request(
            "POST",
            "/api/v1/namespaces/default/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": image}],
                },
            },
        )
    until(lambda: (p := api.get(("", "pods"), "once")) and p["status"]["phase"] == "Succeeded")
    failed = until(
        lambda: (p := api.get(("", "pods"), "fails")) and p["status"]["phase"] == "Failed" and p
    )
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
    assert condition(failed, "Ready")["reason"] == "PodCompleted"


def test_kubectl_shows_pods_and_rollouts_as_on_a_real_cluster(kubectl: Kubectl) -> None:
    app = json.dumps(deployment(replicas=2))
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=app)
    kubectl.ok("rollout", "status", "deployment/api", "--timeout=30s")
    table = kubectl.ok("get", "pods", "-l", "app=api").splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [row.split()[1:4] for row in table[1:]] == [["1/1", "Running", "0"]] * 2
    broken = deployment(replicas=2, image="nginx:broken")
    broken["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=json.dumps(broken))
    until(lambda: "ImagePullBackOff" in kubectl.ok("get", "pods", "-l", "app=api"))
    history = kubectl.ok("rollout", "history", "deployment/api")
    assert "1         <none>" in history and "2         <none>" in history
    kubectl.ok("rollout", "undo", "deployment/api")
    kubectl.ok("rollout", "status", "deployment/api", "--timeout=30s")
    rows = kubectl.ok("get", "rs", "-l", "app=api").splitlines()[1:]
    assert sorted(row.split()[1:4] for row in rows) == [["0", "0", "0"], ["2", "2", "2"]]
    crash = deployment(name="bad", image="nginx:crash", replicas=1)
    crash["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "init", "image": "busybox:crash"}
    ]
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=json.dumps(crash))
    until(lambda: "Init:CrashLoopBackOff" in kubectl.ok("get", "pods", "-l", "app=bad"))
