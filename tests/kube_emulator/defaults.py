"""Defaulting tables of the built-in kinds: what the real apiserver fills in on every write.

Each ``_default_<Kind>`` function mutates the object in place, adding only what is missing, the
way the generated ``SetDefaults_*`` functions of k8s.io/api do. A tool that diffs desired YAML
against live objects sees this noise on a real cluster, so it must see it here too.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, Protocol

from .resources import ResourceType

Obj = dict[str, Any]


class Allocator(Protocol):
    """What defaulting needs from the cluster (Service IPs and node ports)."""

    def allocate_cluster_ip(self) -> str: ...

    def allocate_node_port(self) -> int: ...


def _set(d: Obj, key: str, value: Any) -> None:
    if d.get(key) is None:
        d[key] = value


def _probe(p: Obj | None) -> None:
    if not isinstance(p, dict):
        return
    _set(p, "timeoutSeconds", 1)
    _set(p, "periodSeconds", 10)
    _set(p, "successThreshold", 1)
    _set(p, "failureThreshold", 3)
    hg = p.get("httpGet")
    if isinstance(hg, dict):
        _set(hg, "path", "/")
        _set(hg, "scheme", "HTTP")


def _image_pull_policy(image: str) -> str:
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _container(c: Obj) -> None:
    if not isinstance(c, dict):
        return
    _set(c, "terminationMessagePath", "/dev/termination-log")
    _set(c, "terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str):
        _set(c, "imagePullPolicy", _image_pull_policy(c["image"]))
    _set(c, "resources", {})
    for port in c.get("ports") or ():
        if isinstance(port, dict):
            _set(port, "protocol", "TCP")
    for env in c.get("env") or ():
        vf = env.get("valueFrom") if isinstance(env, dict) else None
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            _set(vf["fieldRef"], "apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))


def _volume(v: Obj) -> None:
    if not isinstance(v, dict):
        return
    for src in ("secret", "configMap"):
        if isinstance(v.get(src), dict):
            _set(v[src], "defaultMode", 420)
    if len(v) == 1 and "name" in v:
        v["emptyDir"] = {}  # SetDefaults_Volume: no source at all means emptyDir
    if isinstance(v.get("projected"), dict):
        _set(v["projected"], "defaultMode", 420)
        for src in v["projected"].get("sources") or ():
            if isinstance(src, dict) and isinstance(src.get("serviceAccountToken"), dict):
                _set(src["serviceAccountToken"], "expirationSeconds", 3600)
    if isinstance(v.get("downwardAPI"), dict):
        _set(v["downwardAPI"], "defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        _set(v["hostPath"], "type", "")


def pod_spec(spec: Obj) -> None:
    if not isinstance(spec, dict):
        return
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "securityContext", {})
    _set(spec, "schedulerName", "default-scheduler")
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or ():
            _container(c)
    for v in spec.get("volumes") or ():
        _volume(v)


def _template(spec: Obj) -> None:
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        pod_spec(tmpl.setdefault("spec", {}))


def _default_Deployment(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "replicas", 1)
    strategy = spec.setdefault("strategy", {})
    _set(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        _set(ru, "maxUnavailable", "25%")
        _set(ru, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def _default_ReplicaSet(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "replicas", 1)
    _template(spec)


def _default_StatefulSet(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "replicas", 1)
    _set(spec, "podManagementPolicy", "OrderedReady")
    us = spec.setdefault("updateStrategy", {})
    if not us.get("type"):
        # rollingUpdate is only added when the type itself was defaulted (SetDefaults_StatefulSet)
        us["type"] = "RollingUpdate"
        _set(us, "rollingUpdate", {})
    if us["type"] == "RollingUpdate" and isinstance(us.get("rollingUpdate"), dict):
        _set(us["rollingUpdate"], "partition", 0)
    _set(spec, "revisionHistoryLimit", 10)
    pr = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    _set(pr, "whenDeleted", "Retain")
    _set(pr, "whenScaled", "Retain")
    for vct in spec.get("volumeClaimTemplates") or ():
        if isinstance(vct, dict):
            _set(vct, "apiVersion", "v1")
            _set(vct, "kind", "PersistentVolumeClaim")
            vs = vct.setdefault("spec", {})
            _set(vs, "volumeMode", "Filesystem")
            vct.setdefault("status", {"phase": "Pending"})
    _template(spec)


def _default_DaemonSet(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    us = spec.setdefault("updateStrategy", {})
    _set(us, "type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = us.setdefault("rollingUpdate", {})
        _set(ru, "maxUnavailable", 1)
        _set(ru, "maxSurge", 0)
    _set(spec, "revisionHistoryLimit", 10)
    _template(spec)


def _default_Job(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _set(spec, "parallelism", 1)
    _set(spec, "backoffLimit", 6)
    _set(spec, "completionMode", "NonIndexed")
    _set(spec, "suspend", False)
    _set(spec, "podReplacementPolicy", "TerminatingOrFailed")
    # SetDefaults_Job: a Job without labels takes its template's (as written, before the
    # generated controller-uid labels are added below).
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if tmpl_labels and not obj["metadata"].get("labels"):
        obj["metadata"]["labels"] = dict(tmpl_labels)
    if not spec.get("manualSelector"):
        # The real server generates the selector from the Job's uid and labels the template.
        uid = obj["metadata"].get("uid") or (old or {}).get("metadata", {}).get("uid", "")
        name = obj["metadata"].get("name", "")
        if old is not None and (old.get("spec") or {}).get("selector"):
            spec.setdefault("selector", old["spec"]["selector"])
        else:
            spec.setdefault(
                "selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            )
        tmpl = spec.setdefault("template", {})
        labels = tmpl.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("controller-uid", uid)
        labels.setdefault("job-name", name)
    _template(spec)


def _default_CronJob(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "concurrencyPolicy", "Allow")
    _set(spec, "suspend", False)
    _set(spec, "successfulJobsHistoryLimit", 3)
    _set(spec, "failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict):
        _template(jt.setdefault("spec", {}))


def _default_Pod(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    # SetDefaults_Pod (bare Pods only, not templates): requests default to the limits.
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") if isinstance(c, dict) else None
        if isinstance(res, dict) and isinstance(res.get("limits"), dict):
            req = res.setdefault("requests", {})
            for k, v in res["limits"].items():
                req.setdefault(k, v)
    _set(spec, "enableServiceLinks", True)
    _set(spec, "preemptionPolicy", "PreemptLowerPriority")
    _set(spec, "priority", 0)
    _set(spec, "serviceAccountName", "default")
    _set(spec, "serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    if not tolerations:
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def qos_class(spec: Obj) -> str:
    """The Pod's QoS class, as the apiserver sets it on create (cpu and memory only):
    Guaranteed when every container has equal cpu and memory requests and limits, BestEffort
    when none has any, Burstable otherwise."""
    containers = [
        c
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        if isinstance(c, dict)
    ]
    any_set, guaranteed = False, bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or requests.get(name, limits.get(name)) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_Service(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "type", "ClusterIP")
    _set(spec, "sessionAffinity", "None")
    svc_type = spec["type"]
    if svc_type != "ExternalName":
        old_spec = (old or {}).get("spec") or {}
        if spec.get("clusterIP") in (None, ""):
            if old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
            else:
                spec["clusterIP"] = alloc.allocate_cluster_ip()
        if not spec.get("clusterIPs"):
            spec["clusterIPs"] = old_spec.get("clusterIPs") or [spec["clusterIP"]]
        _set(spec, "ipFamilies", old_spec.get("ipFamilies") or ["IPv4"])
        _set(spec, "ipFamilyPolicy", "SingleStack")
        _set(spec, "internalTrafficPolicy", "Cluster")
    old_ports = {
        (p.get("port"), p.get("protocol", "TCP")): p
        for p in ((old or {}).get("spec") or {}).get("ports") or ()
    }
    for port in spec.get("ports") or ():
        if not isinstance(port, dict):
            continue
        _set(port, "protocol", "TCP")
        if port.get("targetPort") is None and svc_type != "ExternalName":
            port["targetPort"] = port.get("port")
        if svc_type in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            prev = old_ports.get((port.get("port"), port["protocol"]))
            port["nodePort"] = (prev or {}).get("nodePort") or alloc.allocate_node_port()
    if svc_type in ("NodePort", "LoadBalancer") or (
        svc_type == "ClusterIP" and spec.get("externalIPs")
    ):
        _set(spec, "externalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        _set(spec, "allocateLoadBalancerNodePorts", True)
    if spec.get("sessionAffinity") == "None":
        spec.pop("sessionAffinityConfig", None)
    if spec.get("sessionAffinity") == "ClientIP":
        sac = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        _set(sac, "timeoutSeconds", 10800)
    obj.setdefault("status", {"loadBalancer": {}})


def _default_Secret(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


def _default_Namespace(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    name = obj["metadata"].get("name", "")
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    _set(spec, "finalizers", ["kubernetes"])
    status = obj.get("status") or (old or {}).get("status") or {}
    if not status.get("phase"):
        status = {"phase": "Active"}
    obj["status"] = status


def _default_PersistentVolumeClaim(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "volumeMode", "Filesystem")
    if old is None:
        obj["status"] = {"phase": "Pending"}


def _default_NetworkPolicy(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        types = ["Ingress"]
        if spec.get("egress"):
            types.append("Egress")
        spec["policyTypes"] = types
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or ():
            for port in (rule or {}).get("ports") or ():
                if isinstance(port, dict):
                    _set(port, "protocol", "TCP")


def _default_HorizontalPodAutoscaler(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _set(spec, "minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        up = behavior.setdefault("scaleUp", {})
        _set(up, "stabilizationWindowSeconds", 0)
        _set(up, "selectPolicy", "Max")
        _set(
            up,
            "policies",
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        )
        down = behavior.setdefault("scaleDown", {})
        _set(down, "selectPolicy", "Max")
        _set(down, "policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def _subjects(obj: Obj) -> None:
    for s in obj.get("subjects") or ():
        if isinstance(s, dict):
            if s.get("kind") in ("User", "Group"):
                _set(s, "apiGroup", "rbac.authorization.k8s.io")
            elif s.get("kind") == "ServiceAccount":
                _set(s, "apiGroup", "")


def _default_RoleBinding(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    _subjects(obj)


def _default_ClusterRoleBinding(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    _subjects(obj)


def _default_Ingress(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    obj.setdefault("status", {"loadBalancer": {}})


def _default_CustomResourceDefinition(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        _set(names, "singular", str(names["kind"]).lower())
        _set(names, "listKind", f"{names['kind']}List")
    _set(spec, "conversion", {"strategy": "None"})


def _default_StorageClass(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    _set(obj, "reclaimPolicy", "Delete")
    _set(obj, "volumeBindingMode", "Immediate")


def _default_PriorityClass(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    _set(obj, "preemptionPolicy", "PreemptLowerPriority")


DEFAULTERS: dict[str, Callable[[Obj, Obj | None, Allocator], None]] = {
    name[len("_default_") :]: fn
    for name, fn in list(globals().items())
    if name.startswith("_default_") and callable(fn)
}


def apply_defaults(rt: ResourceType, obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    """Fill in the server-side defaults of a built-in kind (custom resources use their CRD schema)."""
    if rt.crd:
        return
    fn = DEFAULTERS.get(rt.kind)
    if fn is not None:
        fn(obj, old, alloc)
