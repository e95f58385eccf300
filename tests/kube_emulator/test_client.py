"""Fidelity: the official Python client (kubernetes.dynamic.DynamicClient) against the kube emulator.

The same flows as with kubectl: server-side apply of a Namespace, a CRD and its instance,
Deployments, a Service, a Secret and a ConfigMap; defaults visible on read; dry-run applies as a
diff; pruning by label; delete; waiting on health with a watch; apply conflicts.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config, dynamic
from kubernetes.client.exceptions import ApiException

from tests.kube_emulator import EmulatorServer

MANAGER = "gitops-bot"
PART_OF = "applyset.kubernetes.io/part-of"

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Gadget", "plural": "gadgets"},
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "level": {"type": "string", "default": "low"},
                                    "count": {"type": "integer"},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def deployment(
    name: str,
    *,
    image: str = "nginx:1.25",
    replicas: int | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": image}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "web", "labels": {PART_OF: "set1"}},
        "spec": spec,
    }


DOCS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
    CRD,
    {
        "apiVersion": "example.com/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1"},
        "spec": {"count": 2, "bogus": True},
    },
    deployment("api"),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "web", "labels": {PART_OF: "set1"}},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 8080}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "web", "labels": {PART_OF: "set1"}},
        "stringData": {"token": "s3cr3t"},
    },
    {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "web", "labels": {PART_OF: "set1"}},
        "data": {"mode": "prod"},
    },
]


@pytest.fixture
def client(kubeconfig: str, tmp_path: Path) -> Iterator[dynamic.DynamicClient]:
    api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    # A per-test discovery cache: the session's emulator keeps its port across tests.
    yield dynamic.DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))  # type: ignore[no-untyped-call]
    api_client.close()


def apply(client: dynamic.DynamicClient, doc: dict[str, Any], **kwargs: Any) -> Any:
    api = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    meta = doc["metadata"]
    return api.server_side_apply(
        body=doc,
        name=meta["name"],
        namespace=meta.get("namespace"),
        field_manager=kwargs.pop("field_manager", MANAGER),
        **kwargs,
    )


def get(
    client: dynamic.DynamicClient,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None = None,
) -> dict[str, Any]:
    api = client.resources.get(api_version=api_version, kind=kind)
    result: dict[str, Any] = api.get(name=name, namespace=namespace).to_dict()
    return result


def apply_all(client: dynamic.DynamicClient) -> None:
    for doc in DOCS:
        apply(client, doc)


def test_server_side_apply_of_all_kinds_and_defaults(client: dynamic.DynamicClient) -> None:
    apply_all(client)
    dep = get(client, "apps/v1", "Deployment", "api", "web")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    managers = {e["manager"]: e["operation"] for e in dep["metadata"]["managedFields"]}
    assert managers[MANAGER] == "Apply"
    svc = get(client, "v1", "Service", "api", "web")
    assert svc["spec"]["ports"] == [{"port": 8080, "protocol": "TCP", "targetPort": 8080}]
    secret = get(client, "v1", "Secret", "creds", "web")
    assert base64.b64decode(secret["data"]["token"]) == b"s3cr3t"
    gadget = get(client, "example.com/v1", "Gadget", "g1")
    assert gadget["spec"] == {"count": 2, "level": "low"}
    assert "namespace" not in gadget["metadata"]  # cluster-scoped custom resource
    crd = get(client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "gadgets.example.com")
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established == {"NamesAccepted": "True", "Established": "True"}


def test_dry_run_apply_is_a_diff_that_changes_nothing(client: dynamic.DynamicClient) -> None:
    apply_all(client)
    live = get(client, "v1", "ConfigMap", "settings", "web")
    same = apply(client, DOCS[-1], dry_run="All").to_dict()
    assert same == live
    changed_doc = {**DOCS[-1], "data": {"mode": "canary"}}
    changed = apply(client, changed_doc, dry_run="All").to_dict()
    assert changed["data"] == {"mode": "canary"}
    assert get(client, "v1", "ConfigMap", "settings", "web") == live
    created = apply(client, deployment("new-one"), dry_run="All").to_dict()
    assert created["spec"]["replicas"] == 1
    with pytest.raises(ApiException) as err:
        get(client, "apps/v1", "Deployment", "new-one", "web")
    assert err.value.status == 404


def test_prune_by_label_and_delete(client: dynamic.DynamicClient) -> None:
    apply_all(client)
    cms = client.resources.get(api_version="v1", kind="ConfigMap")
    members = cms.get(namespace="web", label_selector=f"{PART_OF}=set1").items
    assert [m.metadata.name for m in members] == ["settings"]
    assert {
        m.metadata.name for m in cms.get(namespace="web", label_selector=f"{PART_OF}!=set1").items
    } == {"kube-root-ca.crt"}
    cms.delete(name="settings", namespace="web", propagation_policy="Background")
    with pytest.raises(ApiException) as err:
        cms.get(name="settings", namespace="web")
    assert err.value.status == 404
    assert 'configmaps \\"settings\\" not found' in str(
        err.value.body
    ) or 'configmaps "settings" not found' in str(err.value.body)


def wait_for(
    client: dynamic.DynamicClient, name: str, predicate: Any, timeout: float = 30
) -> dict[str, Any]:
    api = client.resources.get(api_version="apps/v1", kind="Deployment")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.watch(
            api, namespace="web", field_selector=f"metadata.name={name}", timeout=5
        )  # type: ignore[no-untyped-call]
        for event in events:
            obj: dict[str, Any] = event["raw_object"]
            if predicate(obj):
                return obj
    raise AssertionError(f"deployment {name} never reached the expected state")


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == ctype), {}
    )


def test_watch_health_healthy_and_broken(client: dynamic.DynamicClient) -> None:
    apply(client, DOCS[0])
    apply(client, deployment("api", replicas=2))
    ready = wait_for(client, "api", lambda o: condition(o, "Available").get("status") == "True")
    assert ready["status"]["availableReplicas"] == 2
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    apply(client, deployment("bad", image="example/app:broken", deadline=2))
    failed = wait_for(
        client,
        "bad",
        lambda o: condition(o, "Progressing").get("reason") == "ProgressDeadlineExceeded",
    )
    assert condition(failed, "Available")["status"] == "False"
    assert "availableReplicas" not in failed["status"]


def test_conflicting_apply_and_force(client: dynamic.DynamicClient) -> None:
    apply(client, DOCS[0])
    apply(client, deployment("api", replicas=3), field_manager="team-a")
    with pytest.raises(ApiException) as err:
        apply(client, deployment("api", replicas=5), field_manager="team-b")
    assert err.value.status == 409
    assert 'Apply failed with 1 conflict: conflict with \\"team-a\\"' in str(err.value.body)
    forced = apply(
        client, deployment("api", replicas=5), field_manager="team-b", force_conflicts=True
    ).to_dict()
    assert forced["spec"]["replicas"] == 5
    owners = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    assert "f:replicas" in owners["team-b"]["f:spec"]
    assert "f:replicas" not in owners["team-a"]["f:spec"]


def test_crd_deletion_removes_the_kind(
    client: dynamic.DynamicClient, kube_emulator: EmulatorServer
) -> None:
    apply_all(client)
    crds = client.resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    crds.delete(name="gadgets.example.com")
    assert kube_emulator.emulator.registry.lookup("example.com", "v1", "gadgets") is None
    assert kube_emulator.store.list(("example.com", "gadgets"), None) == []
