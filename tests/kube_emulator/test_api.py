"""Unit-level tests of the kube emulator: selectors, defaulting, validation, auth, watch, CRDs, verbs.

Most go through ``Emulator.handle`` in-process (no sockets); watch and keep-alive go over HTTP.
Expected messages are the real apiserver's wording.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest

from tests.kube_emulator import EmulatorServer
from tests.kube_emulator.api import Emulator
from tests.kube_emulator.selectors import SelectorError, field_matcher, label_matcher

APPLY = "application/apply-patch+yaml"


class Client:
    """Calls Emulator.handle as a given user and decodes JSON."""

    def __init__(self, emulator: Emulator, user: str = "admin") -> None:
        self.emulator = emulator
        self.token = emulator.tokens.get(user, user)

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {self.token}", "content-type": ctype, "accept": accept}
        raw = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        resp = self.emulator.handle(method, path, headers, raw)
        assert resp.stream is None
        return resp.code, json.loads(resp.body) if resp.body and resp.content_type.startswith(
            "application/json"
        ) else resp.body

    def apply(
        self, path: str, obj: dict[str, Any], query: str = "fieldManager=test"
    ) -> tuple[int, Any]:
        return self("PATCH", f"{path}?{query}", obj, ctype=APPLY)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(controller_delay=0.0)


@pytest.fixture
def c(emulator: Emulator) -> Client:
    return Client(emulator)


def dep(name: str = "api", *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    labels = labels or {"app": name}
    body = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
        },
    }
    body.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


DEP_PATH = "/apis/apps/v1/namespaces/default/deployments"


# ---------------------------------------------------------------------------- selectors
@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("tier in (a, b)", {"tier": "b"}, True),
        ("tier in (a,b)", {"tier": "c"}, False),
        ("tier notin (a,b)", {}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("app=web,tier in (x),!legacy", {"app": "web", "tier": "x"}, True),
        ("app=web,tier in (x),!legacy", {"app": "web", "tier": "x", "legacy": "1"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    match = label_matcher(selector)
    assert match is not None
    assert match({"metadata": {"labels": labels}}) is expected


def test_selector_errors() -> None:
    with pytest.raises(SelectorError):
        label_matcher("app in x")
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.foo"):
        field_matcher("spec.foo=1", "ConfigMap")
    fm = field_matcher("metadata.name=a,metadata.namespace!=kube-system", "ConfigMap")
    assert fm is not None
    assert fm({"metadata": {"name": "a", "namespace": "default"}})
    assert not fm({"metadata": {"name": "a", "namespace": "kube-system"}})


def test_list_with_selectors_and_pagination(c: Client) -> None:
    for i in range(5):
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"cm{i}",
                "labels": {"n": str(i), "even": str(i % 2 == 0).lower()},
            },
        }
        assert c("POST", "/api/v1/namespaces/default/configmaps", cm)[0] == 201
    code, out = c("GET", "/api/v1/namespaces/default/configmaps?labelSelector=even%3Dtrue")
    assert [o["metadata"]["name"] for o in out["items"]] == ["cm0", "cm2", "cm4"]
    code, out = c("GET", "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm3")
    assert [o["metadata"]["name"] for o in out["items"]] == ["cm3"]
    code, out = c(
        "GET", "/api/v1/namespaces/default/configmaps?labelSelector=n%20in%20(1,2,3)&limit=2"
    )
    assert [o["metadata"]["name"] for o in out["items"]] == ["cm1", "cm2"]
    code, rest = c(
        "GET",
        f"/api/v1/namespaces/default/configmaps?labelSelector=n%20in%20(1,2,3)&limit=2&continue={out['metadata']['continue']}",
    )
    assert [o["metadata"]["name"] for o in rest["items"]] == ["cm3"]
    assert "continue" not in rest["metadata"]
    code, bad = c("GET", "/api/v1/configmaps?fieldSelector=data.x%3D1")
    assert (code, bad["reason"]) == (400, "BadRequest")


# ---------------------------------------------------------------------------- initial state, errors
def test_new_cluster_state(c: Client) -> None:
    code, out = c("GET", "/api/v1/namespaces")
    assert [n["metadata"]["name"] for n in out["items"]] == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
    ]
    code, _ = c("GET", "/api/v1/namespaces/kube-public/serviceaccounts/default")
    assert code == 200
    code, svc = c("GET", "/api/v1/namespaces/default/services/kubernetes")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"


def test_status_errors_are_shaped_like_the_real_ones(c: Client) -> None:
    assert c("GET", f"{DEP_PATH}/nope") == (
        404,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'deployments.apps "nope" not found',
            "reason": "NotFound",
            "details": {"name": "nope", "group": "apps", "kind": "deployments"},
            "code": 404,
        },
    )
    code, err = c(
        "POST",
        "/apis/apps/v1/namespaces/missing/deployments",
        dict(dep(), metadata={"name": "api"}),
    )
    assert (code, err["message"], err["details"]) == (
        404,
        'namespaces "missing" not found',
        {"name": "missing", "kind": "namespaces"},
    )
    assert c("POST", DEP_PATH, dep())[0] == 201
    code, err = c("POST", DEP_PATH, dep())
    assert (code, err["reason"], err["message"]) == (
        409,
        "AlreadyExists",
        'deployments.apps "api" already exists',
    )
    code, err = c("GET", "/apis/apps/v1/namespaces/default/frobs")
    assert (code, err["message"]) == (404, "the server could not find the requested resource")
    code, err = c("GET", "/apis/nothing.example.com/v1/frobs")
    assert code == 404


def test_metadata_uid_resource_version_generation(c: Client) -> None:
    code, created = c("POST", DEP_PATH, dep())
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    rv1 = int(meta["resourceVersion"])
    code, cm = c(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
    )
    assert int(cm["metadata"]["resourceVersion"]) > rv1
    assert "generation" not in cm["metadata"]
    # a label change is not a spec change
    labelled = dict(created, metadata=dict(created["metadata"], labels={"a": "b"}))
    code, out = c("PUT", f"{DEP_PATH}/api", labelled)
    assert out["metadata"]["generation"] == 1
    changed = dict(out, spec=dict(out["spec"], replicas=3))
    code, out = c("PUT", f"{DEP_PATH}/api", changed)
    assert out["metadata"]["generation"] == 2
    code, err = c("PUT", f"{DEP_PATH}/api", changed)  # stale resourceVersion
    assert (code, err["reason"]) == (409, "Conflict")
    assert (
        err["message"]
        == 'Operation cannot be fulfilled on deployments.apps "api": the object has been modified; please apply your changes to the latest version and try again'
    )


def test_noop_apply_changes_nothing(c: Client) -> None:
    code, first = c.apply(f"{DEP_PATH}/api", dep())
    assert code == 201
    code, second = c.apply(f"{DEP_PATH}/api", dep())
    assert code == 200
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


# ---------------------------------------------------------------------------- defaulting
def test_defaults_of_workloads_and_services(c: Client) -> None:
    code, d = c.apply(f"{DEP_PATH}/api", dep())
    assert d["spec"]["replicas"] == 1 and d["spec"]["progressDeadlineSeconds"] == 600
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "pg:latest"}]},
            },
        },
    }
    code, s = c("POST", "/apis/apps/v1/namespaces/default/statefulsets", sts)
    assert s["spec"]["podManagementPolicy"] == "OrderedReady"
    assert s["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": 0},
    }
    assert s["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "j", "image": "busybox:1"}],
                }
            }
        },
    }
    code, j = c("POST", "/apis/batch/v1/namespaces/default/jobs", job)
    assert code == 201, j
    assert (j["spec"]["backoffLimit"], j["spec"]["completions"], j["spec"]["parallelism"]) == (
        6,
        1,
        1,
    )
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert j["spec"]["template"]["metadata"]["labels"]["job-name"] == "j"
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]},
    }
    code, sv = c("POST", "/api/v1/namespaces/default/services", svc)
    port = sv["spec"]["ports"][0]
    assert port["targetPort"] == "http" and port["protocol"] == "TCP" and port["nodePort"] >= 30000
    assert sv["spec"]["externalTrafficPolicy"] == "Cluster"
    moved = dict(svc, spec=dict(svc["spec"], clusterIP="10.0.0.9"))
    code, err = c.apply("/api/v1/namespaces/default/services/np", moved)
    # the creator (an Update manager) owns the allocated clusterIP, as on a real cluster
    assert (code, err["reason"]) == (409, "Conflict")
    code, err = c.apply(
        "/api/v1/namespaces/default/services/np", moved, "fieldManager=test&force=true"
    )
    assert code == 422
    assert (
        "spec.clusterIPs[0]: Invalid value" in err["message"]
        and "may not change once set" in err["message"]
    )


# ---------------------------------------------------------------------------- validation
def test_validation_errors_with_causes(c: Client) -> None:
    bad = dep(labels={"app": "other"})
    bad["spec"]["template"]["spec"]["containers"] = [{"name": "c"}]
    code, err = c("POST", DEP_PATH, bad)
    assert (code, err["reason"]) == (422, "Invalid")
    assert err["message"].startswith('Deployment.apps "api" is invalid: [')
    causes = {(x["field"], x["reason"]) for x in err["details"]["causes"]}
    assert ("spec.template.metadata.labels", "FieldValueInvalid") in causes
    assert ("spec.template.spec.containers[0].image", "FieldValueRequired") in causes
    assert err["details"]["kind"] == "Deployment" and err["details"]["group"] == "apps"
    code, err = c(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}},
    )
    assert code == 422
    assert err["message"].startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
    )


def test_immutable_fields(c: Client) -> None:
    c.apply(f"{DEP_PATH}/api", dep())
    moved = dep()
    moved["spec"]["selector"] = {"matchLabels": {"app": "api", "v": "2"}}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "api", "v": "2"}
    code, err = c.apply(f"{DEP_PATH}/api", moved)
    assert code == 422
    assert (
        "spec.selector: Invalid value: v1.LabelSelector{" in err["message"]
        and "field is immutable" in err["message"]
    )
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "j", "image": "busybox:1"}],
                }
            }
        },
    }
    c.apply("/apis/batch/v1/namespaces/default/jobs/j", job)
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    code, err = c.apply("/apis/batch/v1/namespaces/default/jobs/j", job)
    assert code == 422 and "spec.template: Invalid value" in err["message"]
    code, err = c("PUT", f"{DEP_PATH}/api", dep("other"))
    assert (code, err["message"]) == (
        400,
        "the name of the object (other) does not match the name on the URL (api)",
    )


# ---------------------------------------------------------------------------- apply, patch, dry-run
def test_apply_requires_field_manager_and_dry_run_stores_nothing(
    c: Client, emulator: Emulator
) -> None:
    code, err = c("PATCH", f"{DEP_PATH}/api", dep(), ctype=APPLY)
    assert (code, err["message"]) == (
        422,
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
    )
    code, out = c.apply(
        f"{DEP_PATH}/api", dep(), "fieldManager=t&dryRun=All&fieldValidation=Strict"
    )
    assert code == 201 and out["spec"]["replicas"] == 1
    assert emulator.store.get(("apps", "deployments"), "default", "api") is None
    c.apply(f"{DEP_PATH}/api", dep())
    for method, body, ctype in (
        ("PATCH", {"spec": {"replicas": 7}}, "application/merge-patch+json"),
        (
            "PATCH",
            [{"op": "replace", "path": "/spec/replicas", "value": 7}],
            "application/json-patch+json",
        ),
        ("PATCH", {"spec": {"replicas": 7}}, "application/strategic-merge-patch+json"),
    ):
        code, out = c(method, f"{DEP_PATH}/api?dryRun=All", body, ctype=ctype)
        assert code == 200 and out["spec"]["replicas"] == 7
    code, out = c("DELETE", f"{DEP_PATH}/api?dryRun=All")
    assert code == 200
    stored = emulator.store.get(("apps", "deployments"), "default", "api")
    assert stored is not None and stored["spec"]["replicas"] == 1
    code, out = c("POST", f"{DEP_PATH}?dryRun=All", dep("fresh"))
    assert code == 201 and "resourceVersion" not in out["metadata"]
    assert emulator.store.get(("apps", "deployments"), "default", "fresh") is None


def test_strategic_merge_patch_merges_containers_by_name(c: Client) -> None:
    c.apply(f"{DEP_PATH}/api", dep())
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy:1"}]}}}
    }
    code, out = c(
        "PATCH",
        f"{DEP_PATH}/api?fieldManager=kubectl-patch",
        patch,
        ctype="application/strategic-merge-patch+json",
    )
    assert code == 200
    assert [x["name"] for x in out["spec"]["template"]["spec"]["containers"]] == [
        "sidecar",
        "c",
    ] or [x["name"] for x in out["spec"]["template"]["spec"]["containers"]] == ["c", "sidecar"]
    managers = {e["manager"]: e["operation"] for e in out["metadata"]["managedFields"]}
    assert managers == {"test": "Apply", "kubectl-patch": "Update"}


def test_status_subresource_and_scale(c: Client) -> None:
    c.apply(f"{DEP_PATH}/api", dep())
    code, out = c(
        "PATCH",
        f"{DEP_PATH}/api/status",
        {"status": {"replicas": 9}, "spec": {"replicas": 4}},
        ctype="application/merge-patch+json",
    )
    assert code == 200 and out["status"]["replicas"] == 9 and out["spec"]["replicas"] == 1
    code, out = c(
        "PATCH",
        f"{DEP_PATH}/api",
        {"status": {"replicas": 1}, "spec": {"replicas": 4}},
        ctype="application/merge-patch+json",
    )
    assert out["status"]["replicas"] == 9 and out["spec"]["replicas"] == 4
    code, scale = c("GET", f"{DEP_PATH}/api/scale")
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 4)
    code, scale = c(
        "PATCH",
        f"{DEP_PATH}/api/scale",
        {"spec": {"replicas": 6}},
        ctype="application/merge-patch+json",
    )
    assert scale["spec"]["replicas"] == 6


def test_delete_finalizers_and_owner_references(c: Client, emulator: Emulator) -> None:
    code, owner = c(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    for name in ("dep1", "dep2"):
        c(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "ownerReferences": [ref]},
            },
        )
    code, out = c(
        "DELETE", "/api/v1/namespaces/default/configmaps/owner?propagationPolicy=Background"
    )
    assert (code, out["status"]) == (200, "Success")
    assert emulator.store.get(("", "configmaps"), "default", "dep1") is None
    c(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        },
    )
    code, out = c("DELETE", "/api/v1/namespaces/default/configmaps/held")
    assert out["metadata"]["deletionTimestamp"]
    code, out = c(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/held",
        {"metadata": {"finalizers": None}},
        ctype="application/merge-patch+json",
    )
    assert emulator.store.get(("", "configmaps"), "default", "held") is None
    code, _ = c("DELETE", "/api/v1/namespaces/default/configmaps/x?propagationPolicy=Sideways")
    assert code == 422


# ---------------------------------------------------------------------------- auth
def test_auth(emulator: Emulator) -> None:
    anon = Client(emulator, "no-such-token")
    code, err = anon("GET", "/api/v1/namespaces")
    assert (code, err["reason"], err["message"]) == (401, "Unauthorized", "Unauthorized")
    ro = Client(emulator, "readonly")
    assert ro("GET", "/api/v1/namespaces")[0] == 200
    code, err = ro("POST", DEP_PATH, dep())
    assert code == 403
    assert (
        err["message"]
        == 'deployments.apps is forbidden: User "system:serviceaccount:default:readonly" cannot create resource "deployments" in API group "apps" in the namespace "default"'
    )
    assert err["details"] == {"group": "apps", "kind": "deployments"}
    web = Client(emulator, "namespace-web")
    code, err = web("DELETE", "/apis/apps/v1/namespaces/default/deployments/x")
    assert (
        err["message"]
        == 'deployments.apps "x" is forbidden: User "system:serviceaccount:web:deployer" cannot delete resource "deployments" in API group "apps" in the namespace "default"'
    )
    code, err = web("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert err["message"].endswith(
        'cannot list resource "customresourcedefinitions" in API group "apiextensions.k8s.io" at the cluster scope'
    )
    Client(emulator)(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
    )
    code, _ = web.apply(
        "/apis/apps/v1/namespaces/web/deployments/api",
        dict(dep(), metadata={"name": "api", "namespace": "web"}),
    )
    assert code == 201


# ---------------------------------------------------------------------------- CRDs
def crd(scope: str = "Namespaced", preserve: bool = False) -> dict[str, Any]:
    spec_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "size": {"type": "integer", "default": 1, "minimum": 0},
            "mode": {"type": "string", "enum": ["a", "b"]},
        },
    }
    if preserve:
        spec_schema["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"kind": "Thing", "plural": "things", "shortNames": ["th"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def test_crd_lifecycle(c: Client, emulator: Emulator) -> None:
    code, _ = c("GET", "/apis/example.com/v1")
    assert code == 404
    code, _ = c("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd())
    assert code == 201
    code, stored = c(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.com"
    )
    assert {x["type"] for x in stored["status"]["conditions"]} == {"NamesAccepted", "Established"}
    assert stored["spec"]["names"]["listKind"] == "ThingList"
    code, disc = c("GET", "/apis/example.com/v1")
    main = next(r for r in disc["resources"] if r["name"] == "things")
    assert (main["kind"], main["namespaced"], main["shortNames"]) == ("Thing", True, ["th"])
    assert any(r["name"] == "things/status" for r in disc["resources"])
    code, groups = c("GET", "/apis")
    assert any(g["name"] == "example.com" for g in groups["groups"])
    thing = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t1"},
        "spec": {"mode": "a", "junk": 1},
        "status": {"x": 1},
    }
    code, t = c("POST", "/apis/example.com/v1/namespaces/default/things", thing)
    assert code == 201 and t["spec"] == {"mode": "a", "size": 1}
    assert "status" not in t  # status subresource: ignored on create
    code, err = c(
        "POST",
        "/apis/example.com/v1/namespaces/default/things",
        dict(thing, metadata={"name": "t2"}, spec={"mode": "z", "size": -1}),
    )
    assert code == 422
    assert 'spec.mode: Unsupported value: "z": supported values: "a", "b"' in err["message"]
    code, err = c(
        "PATCH",
        "/apis/example.com/v1/namespaces/default/things/t1",
        {"spec": {"size": 2}},
        ctype="application/strategic-merge-patch+json",
    )
    assert code == 415
    code, _ = c(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.com"
    )
    assert c("GET", "/apis/example.com/v1/namespaces/default/things/t1")[0] == 404
    assert emulator.store.list(("example.com", "things"), None) == []


def test_cluster_scoped_crd_with_preserved_fields(c: Client) -> None:
    c.apply(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.com",
        crd("Cluster", preserve=True),
    )
    code, t = c.apply(
        "/apis/example.com/v1/things/t1",
        {
            "apiVersion": "example.com/v1",
            "kind": "Thing",
            "metadata": {"name": "t1"},
            "spec": {"free": {"form": True}},
        },
    )
    assert code == 201 and t["spec"] == {"free": {"form": True}, "size": 1}
    assert "namespace" not in t["metadata"]
    assert c("GET", "/apis/example.com/v1/namespaces/default/things/t1")[0] == 404


# ---------------------------------------------------------------------------- discovery and openapi
def test_discovery_lists_required_kinds(c: Client) -> None:
    _, core = c("GET", "/api/v1")
    names = {r["name"] for r in core["resources"]}
    assert {
        "namespaces",
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "pods",
        "persistentvolumeclaims",
    } <= names
    wanted = {
        "apps/v1": {
            "deployments",
            "statefulsets",
            "daemonsets",
            "replicasets",
            "deployments/status",
        },
        "batch/v1": {"jobs", "cronjobs"},
        "networking.k8s.io/v1": {"ingresses", "networkpolicies"},
        "rbac.authorization.k8s.io/v1": {
            "roles",
            "rolebindings",
            "clusterroles",
            "clusterrolebindings",
        },
        "autoscaling/v2": {"horizontalpodautoscalers"},
        "policy/v1": {"poddisruptionbudgets"},
        "apiextensions.k8s.io/v1": {"customresourcedefinitions"},
    }
    for gv, expected in wanted.items():
        _, out = c("GET", f"/apis/{gv}")
        assert expected <= {r["name"] for r in out["resources"]}, gv
    _, out = c("GET", "/apis/apps/v1")
    deploy = next(r for r in out["resources"] if r["name"] == "deployments")
    assert (
        deploy["shortNames"] == ["deploy"]
        and deploy["singularName"] == "deployment"
        and "patch" in deploy["verbs"]
    )
    _, version = c("GET", "/version")
    assert version["major"] == "1"
    _, root = c("GET", "/openapi/v3")
    assert "apis/apps/v1" in root["paths"]
    _, doc = c("GET", "/openapi/v3/apis/apps/v1")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert {p["name"] for p in patch["parameters"]} >= {
        "fieldValidation",
        "fieldManager",
        "dryRun",
        "force",
    }
    assert "io.k8s.api.apps.v1.Deployment" in doc["components"]["schemas"]


# ---------------------------------------------------------------------------- over HTTP: watch, keep-alive, controller
def _watch(
    server: EmulatorServer, path: str, stop_after: int, until: Any = None
) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {server.tokens['admin']}"})
    resp = conn.getresponse()
    events: list[dict[str, Any]] = []
    while len(events) < stop_after:
        line = resp.readline()
        if not line:
            break
        events.append(json.loads(line))
        if until is not None and until(events[-1]):
            break
    conn.close()
    return events


def _http(
    server: EmulatorServer,
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    ctype: str = "application/json",
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {server.tokens['admin']}", "Content-Type": ctype}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def test_watch_resumes_from_resource_version_with_selectors(kube_emulator: EmulatorServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", kube_emulator.port, timeout=30)
    cm_path = "/api/v1/namespaces/default/configmaps"
    _, listing = _http(kube_emulator, conn, "GET", cm_path)
    rv = listing["metadata"]["resourceVersion"]
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        _http(
            kube_emulator,
            conn,
            "POST",
            cm_path,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"team": team}},
            },
        )
    _http(
        kube_emulator,
        conn,
        "PATCH",
        f"{cm_path}/c",
        {"metadata": {"labels": {"team": "y"}}},
        "application/merge-patch+json",
    )
    _http(kube_emulator, conn, "DELETE", f"{cm_path}/a")
    events = _watch(
        kube_emulator, f"{cm_path}?watch=true&resourceVersion={rv}&labelSelector=team%3Dx", 4
    )
    # leaving the selector is seen as DELETED, as the real watch cache reports it
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "c"),
        ("DELETED", "c"),
        ("DELETED", "a"),
    ]
    conn.close()


def test_watch_sees_live_changes(kube_emulator: EmulatorServer) -> None:
    got: list[dict[str, Any]] = []
    conn = http.client.HTTPConnection("127.0.0.1", kube_emulator.port, timeout=30)
    _, listing = _http(kube_emulator, conn, "GET", "/api/v1/namespaces/default/configmaps")
    rv = listing["metadata"]["resourceVersion"]
    path = f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dlive&timeoutSeconds=20"
    watcher = threading.Thread(target=lambda: got.extend(_watch(kube_emulator, path, 2)))
    watcher.start()
    time.sleep(0.1)  # usually connected by now; resourceVersion makes it correct either way
    _http(
        kube_emulator,
        conn,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}},
    )
    _http(
        kube_emulator,
        conn,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live"}},
    )
    _http(
        kube_emulator,
        conn,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/live",
        {"data": {"k": "v"}},
        "application/merge-patch+json",
    )
    watcher.join(timeout=20)
    conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "live"),
        ("MODIFIED", "live"),
    ]


def test_controller_completes_jobs_and_statefulsets(kube_emulator: EmulatorServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", kube_emulator.port, timeout=30)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "j", "image": "busybox:1"}],
                }
            }
        },
    }
    _http(kube_emulator, conn, "POST", "/apis/batch/v1/namespaces/default/jobs", job)
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "pg:16"}]},
            },
        },
    }
    _http(kube_emulator, conn, "POST", "/apis/apps/v1/namespaces/default/statefulsets", sts)
    events = _watch(
        kube_emulator,
        "/apis/batch/v1/namespaces/default/jobs?watch=true&timeoutSeconds=20",
        10,
        until=lambda e: (e["object"].get("status") or {}).get("succeeded") == 1,
    )
    done = [e for e in events if (e["object"].get("status") or {}).get("succeeded") == 1]
    assert done, events
    assert {c["type"] for c in done[-1]["object"]["status"]["conditions"]} == {
        "SuccessCriteriaMet",
        "Complete",
    }
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, s = _http(kube_emulator, conn, "GET", "/apis/apps/v1/namespaces/default/statefulsets/db")
        if (s.get("status") or {}).get("readyReplicas") == 2:
            break
        time.sleep(0.1)
    assert s["status"]["readyReplicas"] == 2 and s["status"]["observedGeneration"] == 1
    conn.close()


def test_watch_as_table_for_kubectl_get_watch(kube_emulator: EmulatorServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", kube_emulator.port, timeout=30)
    conn.request(
        "GET",
        "/api/v1/namespaces?watch=true&timeoutSeconds=5&fieldSelector=metadata.name%3Ddefault",
        headers={
            "Authorization": f"Bearer {kube_emulator.tokens['admin']}",
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
        },
    )
    event = json.loads(conn.getresponse().readline())
    conn.close()
    assert event["type"] == "ADDED"
    table = event["object"]
    assert table["kind"] == "Table"
    assert [col["name"] for col in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert table["rows"][0]["cells"][:2] == ["default", "Active"]


def test_apply_to_status_subresource_and_main_resource_ignores_status(c: Client) -> None:
    c.apply(f"{DEP_PATH}/api", dict(dep(), status={"replicas": 5}))
    code, out = c("GET", f"{DEP_PATH}/api")
    assert out["status"] == {}
    status_cfg = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "default"},
        "status": {"replicas": 3},
    }
    code, out = c.apply(f"{DEP_PATH}/api/status", status_cfg, "fieldManager=ctrl")
    assert code == 200 and out["status"] == {"replicas": 3}
    entry = next(e for e in out["metadata"]["managedFields"] if e["manager"] == "ctrl")
    assert entry["subresource"] == "status" and entry["operation"] == "Apply"
    assert out["metadata"]["generation"] == 1


def test_aggregated_discovery(c: Client) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    resp = c.emulator.handle(
        "GET", "/apis", {"authorization": f"Bearer {c.token}", "accept": accept}, b""
    )
    assert (
        resp.content_type == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    doc = json.loads(resp.body)
    apps = next(i for i in doc["items"] if i["metadata"].get("name") == "apps")
    deploy = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and deploy["responseKind"]["kind"] == "Deployment"
    assert {s["subresource"] for s in deploy["subresources"]} == {"scale", "status"}
    _, legacy = c("GET", "/apis")
    assert legacy["kind"] == "APIGroupList"


def test_defaulting_details_from_set_defaults_functions(c: Client) -> None:
    d = dep()
    d["spec"]["template"]["spec"]["volumes"] = [
        {"name": "scratch"},
        {"name": "cfg", "configMap": {"name": "x"}},
    ]
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    _, out = c.apply(f"{DEP_PATH}/api", d)
    pod = out["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "x", "defaultMode": 420}},
    ]
    assert pod["containers"][0]["resources"] == {
        "limits": {"cpu": "1"}
    }  # requests only for bare Pods
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "metadata": {"labels": {"team": "x"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "j", "image": "b:1"}]},
            }
        },
    }
    _, j = c.apply("/apis/batch/v1/namespaces/default/jobs/j", job)
    assert j["metadata"]["labels"] == {"team": "x"}
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "s"},
        "spec": {
            "serviceName": "s",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app": "s"}},
            "template": {
                "metadata": {"labels": {"app": "s"}},
                "spec": {"containers": [{"name": "s", "image": "s:1"}]},
            },
        },
    }
    _, s = c.apply("/apis/apps/v1/namespaces/default/statefulsets/s", sts)
    assert s["spec"]["updateStrategy"] == {"type": "RollingUpdate"}


def test_scale_records_a_scale_subresource_entry_and_dry_run_changes_nothing(c: Client) -> None:
    c.apply(f"{DEP_PATH}/api", dep())
    code, scale = c(
        "PATCH",
        f"{DEP_PATH}/api/scale?dryRun=All&fieldManager=kubectl",
        {"spec": {"replicas": 5}},
        ctype="application/merge-patch+json",
    )
    assert code == 200 and scale["spec"]["replicas"] == 5
    assert c("GET", f"{DEP_PATH}/api")[1]["spec"]["replicas"] == 1
    code, scale = c(
        "PATCH",
        f"{DEP_PATH}/api/scale?fieldManager=kubectl",
        {"spec": {"replicas": 5}},
        ctype="application/merge-patch+json",
    )
    assert code == 200 and scale["spec"]["replicas"] == 5
    entries = c("GET", f"{DEP_PATH}/api")[1]["metadata"]["managedFields"]
    scaler = [e for e in entries if e["manager"] == "kubectl"]
    assert len(scaler) == 1
    assert scaler[0]["operation"] == "Update"
    assert scaler[0]["subresource"] == "scale"
    assert scaler[0]["apiVersion"] == "apps/v1"
    assert scaler[0]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


def test_json_patch_sees_and_may_reset_managed_fields(c: Client) -> None:
    c.apply(f"{DEP_PATH}/api", dep())
    jp = "application/json-patch+json"
    code, out = c(
        "PATCH",
        f"{DEP_PATH}/api",
        [
            {"op": "test", "path": "/metadata/managedFields/0/manager", "value": "test"},
            {"op": "add", "path": "/metadata/labels", "value": {"app": "api", "x": "1"}},
        ],
        ctype=jp,
    )
    assert code == 200, out
    # untouched managedFields: the patch is tracked as usual
    assert {e["manager"] for e in out["metadata"]["managedFields"]} == {"test", "unknown"}
    code, out = c(
        "PATCH",
        f"{DEP_PATH}/api",
        [{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}],
        ctype=jp,
    )
    assert code == 200, out
    assert "managedFields" not in out["metadata"]
    assert "managedFields" not in c("GET", f"{DEP_PATH}/api")[1]["metadata"]


def _raw_exchange(server: EmulatorServer, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_hand_parsed_http_requests(kube_emulator: EmulatorServer) -> None:
    token = kube_emulator.tokens["admin"]
    # a malformed request line: 400 and the connection is closed
    assert _raw_exchange(kube_emulator, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # an unknown method: 501
    assert _raw_exchange(kube_emulator, b"BREW / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 501 ")
    # HTTP/1.0 without keep-alive: one answer, then the server closes (recv returns)
    reply = _raw_exchange(kube_emulator, b"GET /version HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and b'"gitVersion"' in reply
    # a chunked body, header names in any case, two requests on one connection
    body = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chunked"}}
    ).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = (
        b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\n"
        b"authorization: Bearer " + token.encode() + b"\r\n"
        b"CONTENT-TYPE: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    )
    closing = (
        b"GET /api/v1/namespaces/default/configmaps/chunked HTTP/1.1\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n"
    )
    reply = _raw_exchange(kube_emulator, request + closing)
    assert reply.startswith(b"HTTP/1.1 201 ")
    assert reply.count(b"HTTP/1.1 200 ") == 1 and reply.count(b'"name":"chunked"') == 2


@pytest.mark.parametrize("managed", [[], [{"manager": "x", "operation": "Apply"}]])
def test_apply_with_managed_fields_is_refused_like_a_real_server(
    c: Client, managed: list[dict[str, Any]]
) -> None:
    body = dep()
    body["metadata"]["managedFields"] = managed
    code, out = c.apply(f"{DEP_PATH}/api", body)
    assert (code, out["reason"], out["message"]) == (
        400,
        "BadRequest",
        "metadata.managedFields must be nil",
    )
    body["metadata"]["managedFields"] = None
    assert c.apply(f"{DEP_PATH}/api", body)[0] == 201


@pytest.mark.parametrize(
    ("value", "offset"),
    [
        ("aGVsbG8=", None),
        ("aGVs\r\nbG8=", None),  # Go skips CR and LF anywhere
        ("hunter2", 4),  # the last quantum is short: Go reports where it began
        ("billy", 4),
        ("not base64!", 3),  # the space
        ("ab=x", 2),
        ("YQ==YQ==", 4),  # data after the padding
        ("a", 0),
    ],
)
def test_base64_offsets_are_gos(value: str, offset: int | None) -> None:
    from tests.kube_emulator.validation import base64_error_offset

    assert base64_error_offset(value) == offset


def test_secret_with_invalid_base64_is_refused_as_each_kind_of_write_is(c: Client) -> None:
    path = "/api/v1/namespaces/default/secrets"
    bad = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "data": {"user": "YWRtaW4=", "password": "hunter2"},
    }
    # create and update decode the body: 400, the decoder's words
    code, status = c("POST", path, bad)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == (
        'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 4'
    )
    # server-side apply: the field manager's conversion fails with no API status: 500, no reason
    code, status = c.apply(f"{path}/creds", bad)
    assert code == 500 and "reason" not in status
    assert status["message"] == (
        "failed to convert new object (default/creds; /v1, Kind=Secret) to proper version: "
        "unable to convert unstructured object to /v1, Kind=Secret: error decoding from json: "
        "illegal base64 data at input byte 4"
    )
    code, _ = c.apply(f"{path}/creds", bad, "fieldManager=test&dryRun=All")
    assert code == 500
    good = dict(bad, data={"user": "YWRtaW4="})
    assert c("POST", path, good)[0] == 201
    code, status = c("PUT", f"{path}/creds", bad)
    assert code == 400 and "illegal base64 data at input byte 4" in status["message"]
    # a patch: 422 Invalid on the field "patch"
    code, status = c(
        "PATCH",
        f"{path}/creds",
        {"data": {"password": "hunter2"}},
        ctype="application/merge-patch+json",
    )
    assert (code, status["reason"]) == (422, "Invalid")
    [cause] = status["details"]["causes"]
    assert cause["field"] == "patch" and cause["reason"] == "FieldValueInvalid"
    assert cause["message"].endswith('": illegal base64 data at input byte 4')
    assert status["message"].startswith(' "" is invalid: patch: Invalid value: "{')
    code, status = c(
        "PATCH",
        f"{path}/creds",
        {"data": {"password": "hunter2"}},
        ctype="application/strategic-merge-patch+json",
    )
    assert code == 422
    assert status["details"]["causes"][0]["message"] == (
        'Invalid value: "map[data:map[password:hunter2]]": error decoding from json: '
        "illegal base64 data at input byte 4"
    )
    # nothing was stored by any of them
    assert c("GET", f"{path}/creds")[1]["data"] == {"user": "YWRtaW4="}
    # what decodes is accepted: padding, CR/LF, empty values
    fine = dict(bad, data={"a": "aGVs\nbG8=", "b": ""})
    assert c.apply(f"{path}/creds", fine)[0] == 200


def _object(kind: str, api_version: str, name: str, **body: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        **body,
    }


def _path(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"]
    base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    plural = {"NetworkPolicy": "networkpolicies", "Ingress": "ingresses"}.get(
        obj["kind"], obj["kind"].lower() + "s"
    )
    namespaced = not obj["kind"].startswith("Cluster")
    prefix = f"{base}/namespaces/default/{plural}" if namespaced else f"{base}/{plural}"
    return f"{prefix}/{obj['metadata']['name']}"


_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
_POD = {"containers": [{"name": "app", "image": "app:1"}]}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            _object(
                "Role",
                "rbac.authorization.k8s.io/v1",
                "r",
                rules=[{"apiGroups": [""], "resources": ["pods"]}],
            ),
            'Role.rbac.authorization.k8s.io "r" is invalid: rules[0].verbs: Required value: verbs '
            "must contain at least one value",
        ),
        (
            _object(
                "ClusterRole",
                "rbac.authorization.k8s.io/v1",
                "c",
                rules=[{"verbs": ["get"], "resources": ["nodes"]}],
            ),
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        ),
        (
            _object(
                "ClusterRoleBinding",
                "rbac.authorization.k8s.io/v1",
                "b",
                roleRef={
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "c",
                },
                subjects=[{"kind": "ServiceAccount", "name": "bot"}],
            ),
            "subjects[0].namespace: Required value",
        ),
        (
            _object(
                "RoleBinding",
                "rbac.authorization.k8s.io/v1",
                "b",
                roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Roles", "name": "r"},
                subjects=[{"kind": "ServiceAccount", "name": "bot"}],
            ),
            'roleRef.kind: Unsupported value: "Roles": supported values: "Role", "ClusterRole"',
        ),
        (
            _object(
                "PodDisruptionBudget",
                "policy/v1",
                "p",
                spec={
                    "minAvailable": 1,
                    "maxUnavailable": 1,
                    "selector": {"matchLabels": {"a": "b"}},
                },
            ),
            "spec: Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and "
            "maxUnavailable cannot be both set",
        ),
        (
            _object("PodDisruptionBudget", "policy/v1", "p", spec={"maxUnavailable": "120%"}),
            'spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"120%"}: '
            "must not be greater than 100%",
        ),
        (
            _object(
                "NetworkPolicy",
                "networking.k8s.io/v1",
                "n",
                spec={
                    "podSelector": {},
                    "ingress": [{"from": [{}], "ports": [{"port": 6379, "protocol": "tcp"}]}],
                },
            ),
            'spec.ingress[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"',
        ),
        (
            _object(
                "NetworkPolicy",
                "networking.k8s.io/v1",
                "n",
                spec={"podSelector": {}, "ingress": [{"from": [{}]}]},
            ),
            "spec.ingress[0].from[0]: Required value: must specify a peer",
        ),
        (
            _object(
                "Ingress",
                "networking.k8s.io/v1",
                "i",
                spec={
                    "rules": [
                        {
                            "http": {
                                "paths": [
                                    {
                                        "path": "hooks",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": "web"}},
                                    }
                                ]
                            }
                        }
                    ]
                },
            ),
            'spec.rules[0].http.paths[0].path: Invalid value: "hooks": must be an absolute path',
        ),
        (
            _object(
                "Deployment",
                "apps/v1",
                "d",
                spec={
                    "selector": {"matchLabels": {"app": "d"}},
                    "template": {
                        "metadata": {"labels": {"app": "d"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "app:1",
                                    "resources": {
                                        "requests": {"memory": "1Gi"},
                                        "limits": {"memory": "512Mi"},
                                    },
                                }
                            ]
                        },
                    },
                },
            ),
            'spec.template.spec.containers[0].resources.requests: Invalid value: "1Gi": must be less '
            "than or equal to memory limit of 512Mi",
        ),
    ],
)
def test_mistakes_in_a_deployment_bundle_are_refused_with_the_real_wording(
    c: Client, obj: dict[str, Any], message: str
) -> None:
    code, status = c.apply(_path(obj), obj, "fieldManager=test&dryRun=All")
    assert (code, status["reason"]) == (422, "Invalid"), status
    assert message in status["message"]


def test_ingress_backend_needs_a_port() -> None:
    from tests.kube_emulator.validation import _ingress_backend

    [err] = _ingress_backend({"service": {"name": "web"}}, "spec.defaultBackend")
    assert (
        err.text()
        == "spec.defaultBackend.service.port: Required value: port name or number is required"
    )


def test_values_of_the_wrong_type_are_refused_as_each_decoder_words_it(c: Client) -> None:
    dep = _object(
        "Deployment",
        "apps/v1",
        "d",
        spec={
            "replicas": "2",
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": _POD},
        },
    )
    # server-side apply: structured-merge-diff's typed patch, an error with no API status
    code, status = c.apply(_path(dep), dep, "fieldManager=test&dryRun=All")
    assert code == 500 and "reason" not in status
    assert status["message"] == (
        "failed to create typed patch object (default/d; apps/v1, Kind=Deployment): "
        ".spec.replicas: expected numeric (int or float), got string"
    )
    # create: encoding/json's words, 400
    code, status = c("POST", "/apis/apps/v1/namespaces/default/deployments", dep)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
        "string into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    port = json.loads(json.dumps(dep))
    port["spec"]["replicas"] = 2
    port["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "8080"}]
    code, status = c("POST", "/apis/apps/v1/namespaces/default/deployments", port)
    assert status["message"].endswith(
        "json: cannot unmarshal string into Go struct field "
        "ContainerPort.spec.template.spec.containers.ports.containerPort of type int32"
    )
    code, status = c.apply(_path(port), port, "fieldManager=test&dryRun=All")
    assert status["message"].endswith(
        '.spec.template.spec.containers[name="app"].ports[containerPort="8080",protocol="TCP"]'
        ".containerPort: expected numeric (int or float), got string"
    )
    labels = _object("ConfigMap", "v1", "cm", data={"a": "b"})
    labels["metadata"]["labels"] = {"tier": 1}
    code, status = c.apply(_path(labels), labels, "fieldManager=test&dryRun=All")
    assert status["message"].endswith(
        ".metadata.labels.tier: expected string, got &value.valueUnstructured{Value:1}"
    )
    code, status = c("POST", "/api/v1/namespaces/default/configmaps", labels)
    assert status["message"].endswith(
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"
    )
    # what the types allow passes: int-or-string ports, numeric quantities
    fine = json.loads(json.dumps(port))
    container = fine["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = [{"containerPort": 8080, "name": "http"}]
    container["resources"] = {"limits": {"cpu": 1, "memory": "128Mi"}}
    container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}}
    assert c.apply(_path(fine), fine, "fieldManager=test&dryRun=All")[0] == 201
