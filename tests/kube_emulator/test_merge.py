"""Tests of the emulator's pure merge algorithms: server-side apply, field ownership, patches.

Expected managedFields encodings, conflict messages and patch results are taken from the real
kube-apiserver / structured-merge-diff behaviour and from the RFC 7386 / RFC 6902 appendices.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kube_emulator.merge import (
    LAST_APPLIED,
    ApplyConflict,
    FieldConflict,
    PatchError,
    apply,
    crd_list_types,
    decode_fields,
    encode_fields,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
    track_update,
)

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:01Z"
T2 = "2026-01-01T00:00:02Z"
T3 = "2026-01-01T00:00:03Z"

K_WEB = 'k:{"name":"web"}'
K_SIDECAR = 'k:{"name":"sidecar"}'


def deployment(
    *,
    replicas: int | None = 2,
    containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web", "namespace": "default"}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": containers
                if containers is not None
                else [{"name": "web", "image": "nginx:1"}]
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def configmap(data: dict[str, str], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default", **metadata},
        "data": data,
    }


def entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["metadata"].get("managedFields", []))


def entry(obj: dict[str, Any], manager: str, operation: str = "Apply") -> dict[str, Any]:
    found = [e for e in entries(obj) if e["manager"] == manager and e["operation"] == operation]
    assert len(found) == 1, f"{manager}/{operation} in {entries(obj)}"
    return found[0]


def owners(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in entries(obj)]


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["spec"]["template"]["spec"]["containers"])


def scale(obj: dict[str, Any], replicas: int) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = replicas
    return new


# ---------------------------------------------------------------------------------------------
# apply: creation and encoding
# ---------------------------------------------------------------------------------------------


def test_apply_create_records_the_config_fields_as_the_real_server_encodes_them() -> None:
    config = deployment(
        labels={"app": "web"},
        containers=[{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}],
    )
    result = apply(None, config, manager="kubectl", force=False, now=T0)

    assert result["spec"]["replicas"] == 2
    assert result["metadata"]["name"] == "web"
    assert entries(result) == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    # A LabelSelector is an atomic struct: owned as a whole.
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                K_WEB: {
                                    ".": {},
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        # protocol is a key with a default: filled in.
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def bare_configmap() -> dict[str, Any]:
    config = configmap({})
    del config["data"]
    return config


def test_apply_does_not_track_name_namespace_apiversion_kind() -> None:
    result = apply(None, bare_configmap(), manager="m", force=False, now=T0)
    # Nothing but stripped fields were applied: no entry at all, as on a real server.
    assert entries(result) == []
    result = apply(None, configmap({"k": "v"}), manager="m", force=False, now=T0)
    assert entry(result, "m")["fieldsV1"] == {"f:data": {"f:k": {}}}


def test_apply_ignores_managed_fields_in_the_config() -> None:
    config = configmap({"k": "v"})
    config["metadata"]["managedFields"] = [
        {"manager": "evil", "operation": "Apply", "fieldsV1": {"f:data": {"f:k": {}}}}
    ]
    result = apply(None, config, manager="m", force=False, now=T0)
    assert owners(result) == [("m", "Apply")]


def test_apply_does_not_mutate_its_inputs() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    config = deployment(replicas=3, containers=[{"name": "web", "image": "nginx:2"}])
    live_before, config_before = copy.deepcopy(live), copy.deepcopy(config)
    result = apply(live, config, manager="a", force=False, now=T1)
    assert live == live_before
    assert config == config_before
    result["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    result["metadata"]["managedFields"][0]["manager"] = "changed"
    assert live == live_before
    assert config == config_before


def test_apply_same_config_twice_is_a_no_op_and_keeps_the_time() -> None:
    first = apply(None, deployment(), manager="a", force=False, now=T0)
    second = apply(first, deployment(), manager="a", force=False, now=T1)
    assert second == first
    assert entry(second, "a")["time"] == T0


def test_apply_change_updates_the_time() -> None:
    first = apply(None, deployment(), manager="a", force=False, now=T0)
    second = apply(first, deployment(replicas=3), manager="a", force=False, now=T1)
    assert second["spec"]["replicas"] == 3
    assert entry(second, "a")["time"] == T1


def test_apply_keeps_fields_it_does_not_mention() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    live["spec"]["revisionHistoryLimit"] = 10  # a default nobody owns
    result = apply(live, deployment(replicas=4), manager="a", force=False, now=T1)
    assert result["spec"]["revisionHistoryLimit"] == 10


def test_apply_null_in_config_removes_the_field() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    config = deployment()
    config["spec"]["replicas"] = None
    result = apply(live, config, manager="a", force=False, now=T1)
    assert "replicas" not in result["spec"]


# ---------------------------------------------------------------------------------------------
# apply: conflicts
# ---------------------------------------------------------------------------------------------


def test_conflict_with_an_update_manager_has_the_real_message_and_causes() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, now=T0)
    live = track_update(live, scale(live, 5), manager="kubectl-client-side-apply", now=T1)
    with pytest.raises(ApplyConflict) as caught:
        apply(live, deployment(replicas=3), manager="kubectl", force=False, now=T2)
    error = caught.value
    assert error.message() == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
        "using apps/v1: .spec.replicas"
    )
    assert str(error) == error.message()
    assert error.causes() == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    assert error.api_version == "apps/v1"
    assert [(c.manager, c.field) for c in error.conflicts] == [
        ("kubectl-client-side-apply", ".spec.replicas")
    ]


def test_conflict_with_an_apply_manager_names_no_api_version() -> None:
    live = apply(None, configmap({"k": "a"}), manager="first", force=False, now=T0)
    with pytest.raises(ApplyConflict) as caught:
        apply(live, configmap({"k": "b"}), manager="second", force=False, now=T1)
    assert caught.value.message() == 'Apply failed with 1 conflict: conflict with "first": .data.k'


def test_several_conflicts_are_grouped_by_sorted_manager() -> None:
    live = apply(
        None, configmap({"a": "1", "b": "1", "c": "1"}), manager="owner", force=False, now=T0
    )
    changed = copy.deepcopy(live)
    changed["data"].update({"a": "2", "b": "2"})
    live = track_update(live, changed, manager="zeta", now=T1)
    changed = copy.deepcopy(live)
    changed["data"]["c"] = "2"
    live = track_update(live, changed, manager="alpha", now=T2)

    with pytest.raises(ApplyConflict) as caught:
        apply(live, configmap({"a": "3", "b": "3", "c": "3"}), manager="owner", force=False, now=T3)
    error = caught.value
    assert error.message() == (
        "Apply failed with 3 conflicts: "
        'conflicts with "alpha" using v1:\n'
        "- .data.c\n"
        'conflicts with "zeta" using v1:\n'
        "- .data.a\n"
        "- .data.b"
    )
    assert [cause["field"] for cause in error.causes()] == [".data.c", ".data.a", ".data.b"]
    assert {cause["message"] for cause in error.causes()} == {
        'conflict with "alpha" using v1',
        'conflict with "zeta" using v1',
    }


def test_all_conflicts_in_one_object_are_reported_members_before_children() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    config = deployment(replicas=9, containers=[{"name": "web", "image": "nginx:9"}])
    with pytest.raises(ApplyConflict) as caught:
        apply(live, config, manager="b", force=False, now=T1)
    assert caught.value.message() == (
        "Apply failed with 2 conflicts: "
        'conflicts with "a":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="web"].image'
    )


def test_conflict_message_for_a_status_subresource_manager() -> None:
    conflict = FieldConflict(
        manager="ctrl",
        field=".status.x",
        operation="Update",
        api_version="v1",
        subresource="status",
    )
    assert ApplyConflict([conflict], "v1").message() == (
        'Apply failed with 1 conflict: conflict with "ctrl" with subresource "status" '
        "using v1: .status.x"
    )


def test_field_conflict_defaults_to_the_exception_api_version() -> None:
    error = ApplyConflict([FieldConflict(manager="mgr", field=".spec.replicas")], "apps/v1")
    assert error.message() == (
        'Apply failed with 1 conflict: conflict with "mgr" using apps/v1: .spec.replicas'
    )


def test_same_value_is_shared_ownership_not_a_conflict() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    shared = apply(live, deployment(), manager="b", force=False, now=T1)
    assert owners(shared) == [("a", "Apply"), ("b", "Apply")]
    replicas: dict[str, Any] = {"f:replicas": {}}
    assert replicas.items() <= entry(shared, "a")["fieldsV1"]["f:spec"].items()
    assert replicas.items() <= entry(shared, "b")["fieldsV1"]["f:spec"].items()
    # Now any change to the shared field by either of them conflicts with the other.
    with pytest.raises(ApplyConflict) as caught:
        apply(shared, deployment(replicas=7), manager="a", force=False, now=T2)
    assert caught.value.message().endswith('conflict with "b": .spec.replicas')


def test_force_moves_ownership_and_drops_emptied_entries() -> None:
    live = apply(None, configmap({"k": "a"}), manager="first", force=False, now=T0)
    result = apply(live, configmap({"k": "b"}), manager="second", force=True, now=T1)
    assert result["data"] == {"k": "b"}
    assert owners(result) == [("second", "Apply")]


def test_force_takes_only_the_conflicting_fields() -> None:
    live = apply(None, configmap({"k": "a", "j": "a"}), manager="first", force=False, now=T0)
    result = apply(live, configmap({"k": "b"}), manager="second", force=True, now=T1)
    assert entry(result, "first")["fieldsV1"] == {"f:data": {"f:j": {}}}
    assert entry(result, "second")["fieldsV1"] == {"f:data": {"f:k": {}}}


def test_update_and_apply_entries_of_one_manager_are_distinct() -> None:
    live = apply(None, configmap({"k": "a"}), manager="kubectl", force=False, now=T0)
    changed = copy.deepcopy(live)
    changed["data"]["other"] = "x"
    live = track_update(live, changed, manager="kubectl", now=T1)
    assert owners(live) == [("kubectl", "Apply"), ("kubectl", "Update")]
    # The Update entry is another owner: changing its field from the Apply side conflicts.
    with pytest.raises(ApplyConflict) as caught:
        apply(live, configmap({"k": "a", "other": "y"}), manager="kubectl", force=False, now=T2)
    assert caught.value.causes()[0]["message"] == 'conflict with "kubectl" using v1'


def test_apply_over_an_untracked_object_conflicts_with_before_first_apply() -> None:
    live = configmap({"k": "a"})
    with pytest.raises(ApplyConflict) as caught:
        apply(live, configmap({"k": "b"}), manager="m", force=False, now=T0)
    assert caught.value.message() == (
        'Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.k'
    )
    result = apply(live, configmap({"k": "a"}), manager="m", force=False, now=T0)
    assert owners(result) == [("m", "Apply"), ("before-first-apply", "Update")]


def test_apply_to_the_status_subresource_touches_only_status() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, now=T0)
    config = deployment(replicas=9, labels={"x": "y"})
    config["status"] = {"replicas": 2}
    result = apply(live, config, manager="ctrl", force=False, now=T1, subresource="status")
    assert result["spec"]["replicas"] == 2
    assert "labels" not in result["metadata"]
    assert result["status"] == {"replicas": 2}
    status_entry = entry(result, "ctrl")
    assert status_entry["subresource"] == "status"
    assert status_entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}
    # A second apply of the same manager to the main resource is a separate entry.
    both = apply(result, deployment(), manager="ctrl", force=False, now=T2)
    assert [(e["manager"], e.get("subresource")) for e in entries(both)] == [
        ("kubectl", None),
        ("ctrl", "status"),
        ("ctrl", None),
    ]


def test_apply_with_reset_status_ignores_the_config_status() -> None:
    config = deployment()
    config["status"] = {"replicas": 5}
    result = apply(None, config, manager="m", force=False, now=T0, reset_status=True)
    assert "status" not in result
    assert "f:status" not in entry(result, "m")["fieldsV1"]
    assert config["status"] == {"replicas": 5}


def client_side_applied(data: dict[str, str]) -> dict[str, Any]:
    """A ConfigMap as `kubectl apply` (client-side) leaves it: annotation + Update entry."""
    obj = configmap(data)
    last = json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
    obj["metadata"]["annotations"] = {LAST_APPLIED: last}
    return track_update(None, obj, manager="kubectl-client-side-apply", now=T0)


def test_kubectl_server_side_apply_upgrades_from_client_side_apply() -> None:
    live = client_side_applied({"a": "1", "b": "2"})
    result = apply(live, configmap({"a": "9", "b": "2"}), manager="kubectl", force=False, now=T1)
    assert result["data"] == {"a": "9", "b": "2"}
    assert result["metadata"]["annotations"][LAST_APPLIED] == (
        '{"apiVersion":"v1","data":{"a":"9","b":"2"},"kind":"ConfigMap",'
        '"metadata":{"name":"cm","namespace":"default"}}\n'
    )
    assert entry(result, "kubectl")["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}}
    # .data.a moved to kubectl; the annotation and the map itself stay with the old manager.
    assert entry(result, "kubectl-client-side-apply", "Update")["fieldsV1"] == {
        "f:data": {".": {}, "f:b": {}},
        "f:metadata": {"f:annotations": {".": {}, f"f:{LAST_APPLIED}": {}}},
    }


def test_upgrade_from_client_side_apply_is_only_for_the_kubectl_manager() -> None:
    live = client_side_applied({"a": "1"})
    with pytest.raises(ApplyConflict):
        apply(live, configmap({"a": "9"}), manager="bot", force=False, now=T1)


def test_upgrade_from_client_side_apply_still_conflicts_on_drifted_fields() -> None:
    live = client_side_applied({"a": "1", "b": "2"})
    drifted = copy.deepcopy(live)
    drifted["data"]["a"] = "edited"
    live = track_update(live, drifted, manager="kubectl-client-side-apply", now=T1)
    with pytest.raises(ApplyConflict) as caught:
        apply(live, configmap({"a": "9", "b": "3"}), manager="kubectl", force=False, now=T2)
    assert [c.field for c in caught.value.conflicts] == [".data.a"]


def test_last_applied_annotation_is_escaped_like_go() -> None:
    live = client_side_applied({"a": "1"})
    result = apply(live, configmap({"a": "<&>"}), manager="kubectl", force=False, now=T1)
    assert '"a":"\\u003c\\u0026\\u003e"' in result["metadata"]["annotations"][LAST_APPLIED]


# ---------------------------------------------------------------------------------------------
# apply: removal of dropped fields
# ---------------------------------------------------------------------------------------------


def test_field_dropped_from_config_is_removed() -> None:
    live = apply(
        None,
        deployment(labels={"app": "web", "tier": "front"}, annotations={"note": "x"}),
        manager="a",
        force=False,
        now=T0,
    )
    result = apply(live, deployment(labels={"app": "web"}), manager="a", force=False, now=T1)
    assert result["metadata"]["labels"] == {"app": "web"}
    assert "annotations" not in result["metadata"]
    assert entry(result, "a")["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}


def test_dropped_field_owned_by_another_manager_stays() -> None:
    live = apply(None, configmap({"k": "v", "j": "w"}), manager="a", force=False, now=T0)
    live = apply(live, configmap({"k": "v"}), manager="b", force=False, now=T1)
    result = apply(live, configmap({"j": "w"}), manager="a", force=False, now=T2)
    assert result["data"] == {"k": "v", "j": "w"}
    assert entry(result, "a")["fieldsV1"] == {"f:data": {"f:j": {}}}
    assert entry(result, "b")["fieldsV1"] == {"f:data": {"f:k": {}}}


def test_dropped_field_owned_by_an_updater_stays() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    live = track_update(live, scale(live, 2), manager="b", now=T1)  # same value: no change
    assert owners(live) == [("a", "Apply")]
    live = track_update(live, scale(live, 4), manager="hpa", now=T1)
    live = apply(live, deployment(replicas=4), manager="a", force=False, now=T2)  # shared now
    assert "f:replicas" in entry(live, "a")["fieldsV1"]["f:spec"]
    result = apply(live, deployment(replicas=None), manager="a", force=False, now=T3)
    assert result["spec"]["replicas"] == 4
    assert "f:replicas" not in entry(result, "a")["fieldsV1"]["f:spec"]
    assert entry(result, "hpa", "Update")["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


def test_fields_never_applied_by_the_manager_are_not_removed() -> None:
    live = apply(None, configmap({"k": "v"}), manager="a", force=False, now=T0)
    changed = copy.deepcopy(live)
    changed["data"]["extra"] = "e"
    live = track_update(live, changed, manager="editor", now=T1)
    result = apply(live, configmap({}), manager="a", force=False, now=T2)
    assert result["data"] == {"extra": "e"}
    # An empty map in the config is a leaf the applier owns.
    assert entry(result, "a")["fieldsV1"] == {"f:data": {}}
    result = apply(live, bare_configmap(), manager="a", force=False, now=T2)
    assert result["data"] == {"extra": "e"}
    assert owners(result) == [("editor", "Update")]


def test_dropped_nested_map_is_removed_as_a_whole() -> None:
    containers = [{"name": "web", "image": "i", "resources": {"limits": {"cpu": "1"}}}]
    live = apply(None, deployment(containers=containers), manager="a", force=False, now=T0)
    result = apply(
        live,
        deployment(containers=[{"name": "web", "image": "i"}]),
        manager="a",
        force=False,
        now=T1,
    )
    assert containers_of(result) == [{"name": "web", "image": "i"}]


# ---------------------------------------------------------------------------------------------
# apply: associative lists
# ---------------------------------------------------------------------------------------------

TWO = [{"name": "web", "image": "nginx:1"}, {"name": "sidecar", "image": "envoy:1"}]


def test_change_one_container_image_touches_only_that_container() -> None:
    live = apply(None, deployment(containers=TWO), manager="a", force=False, now=T0)
    new = [{"name": "web", "image": "nginx:2"}, {"name": "sidecar", "image": "envoy:1"}]
    result = apply(live, deployment(containers=new), manager="a", force=False, now=T1)
    assert containers_of(result) == new


def test_containers_added_by_two_appliers_are_both_kept_and_owned_separately() -> None:
    live = apply(None, deployment(), manager="a", force=False, now=T0)
    sidecar = deployment(replicas=None, containers=[{"name": "sidecar", "image": "envoy:1"}])
    result = apply(live, sidecar, manager="b", force=False, now=T1)
    assert [c["name"] for c in containers_of(result)] == ["web", "sidecar"]
    b_containers = entry(result, "b")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert b_containers == {K_SIDECAR: {".": {}, "f:image": {}, "f:name": {}}}
    a_containers = entry(result, "a")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert list(a_containers) == [K_WEB]


def test_container_removed_from_config_is_removed() -> None:
    live = apply(None, deployment(containers=TWO), manager="a", force=False, now=T0)
    result = apply(live, deployment(), manager="a", force=False, now=T1)
    assert containers_of(result) == [{"name": "web", "image": "nginx:1"}]
    fields = entry(result, "a")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert list(fields) == [K_WEB]


def test_container_of_another_applier_survives_removal_from_mine() -> None:
    live = apply(None, deployment(containers=TWO), manager="a", force=False, now=T0)
    sidecar = deployment(replicas=None, containers=[{"name": "sidecar", "image": "envoy:1"}])
    live = apply(live, sidecar, manager="b", force=False, now=T1)
    result = apply(live, deployment(), manager="a", force=False, now=T2)
    assert [c["name"] for c in containers_of(result)] == ["web", "sidecar"]


def test_merged_list_order_follows_config_for_shared_items_and_keeps_live_only_items() -> None:
    live_containers = [{"name": n, "image": "i"} for n in ["a", "b", "c", "d"]]
    live = track_update(None, deployment(containers=live_containers), manager="c", now=T0)
    config = deployment(
        replicas=None,
        containers=[
            {"name": "c", "image": "i"},
            {"name": "a", "image": "i"},
            {"name": "e", "image": "i"},
        ],
    )
    result = apply(live, config, manager="a", force=False, now=T1)
    # structured-merge-diff's merge: shared items (c, a) in config order, b/d keep their place.
    assert [c["name"] for c in containers_of(result)] == ["b", "c", "d", "a", "e"]


def test_container_ports_are_keyed_by_port_and_protocol_and_sorted_numerically() -> None:
    ports = [
        {"containerPort": 8443},
        {"containerPort": 80, "protocol": "UDP"},
        {"containerPort": 80},
    ]
    config = deployment(containers=[{"name": "web", "image": "i", "ports": ports}])
    result = apply(None, config, manager="a", force=False, now=T0)
    fields = entry(result, "a")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][K_WEB]
    assert list(fields["f:ports"]) == [
        'k:{"containerPort":80,"protocol":"TCP"}',
        'k:{"containerPort":80,"protocol":"UDP"}',
        'k:{"containerPort":8443,"protocol":"TCP"}',
    ]


def test_service_ports_are_keyed_by_port_and_protocol() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    result = apply(None, service, manager="a", force=False, now=T0)
    assert entry(result, "a")["fieldsV1"] == {
        "f:spec": {
            "f:ports": {
                'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}
            },
            "f:selector": {},
        }
    }


def test_env_and_volume_mounts_are_associative() -> None:
    container = {
        "name": "web",
        "image": "i",
        "env": [{"name": "A", "value": "1"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    result = apply(None, deployment(containers=[container]), manager="a", force=False, now=T0)
    fields = entry(result, "a")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][K_WEB]
    assert fields["f:env"] == {'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}}
    assert fields["f:volumeMounts"] == {
        'k:{"mountPath":"/data"}': {".": {}, "f:mountPath": {}, "f:name": {}}
    }


def test_atomic_lists_are_owned_and_replaced_whole() -> None:
    container = {"name": "web", "image": "i", "args": ["a", "b"]}
    live = apply(None, deployment(containers=[container]), manager="a", force=False, now=T0)
    fields = entry(live, "a")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][K_WEB]
    assert fields["f:args"] == {}
    result = apply(
        live,
        deployment(containers=[{"name": "web", "image": "i", "args": ["c"]}]),
        manager="a",
        force=False,
        now=T1,
    )
    assert containers_of(result)[0]["args"] == ["c"]


def test_finalizers_are_a_set() -> None:
    config = bare_configmap()
    config["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    live = apply(None, config, manager="a", force=False, now=T0)
    assert entry(live, "a")["fieldsV1"] == {
        "f:metadata": {"f:finalizers": {'v:"example.com/a"': {}, 'v:"example.com/b"': {}}}
    }
    other = bare_configmap()
    other["metadata"]["finalizers"] = ["example.com/c"]
    result = apply(live, other, manager="b", force=False, now=T1)
    assert result["metadata"]["finalizers"] == ["example.com/a", "example.com/b", "example.com/c"]


def test_custom_resource_lists_are_atomic_unless_declared() -> None:
    cr = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"items": [{"name": "a", "size": 1}]},
    }
    live = apply(None, cr, manager="a", force=False, now=T0)
    assert entry(live, "a")["fieldsV1"] == {"f:spec": {"f:items": {}}}
    keyed = apply(None, cr, manager="a", force=False, now=T0, list_types={"spec.items": ("name",)})
    assert entry(keyed, "a")["fieldsV1"] == {
        "f:spec": {"f:items": {'k:{"name":"a"}': {".": {}, "f:name": {}, "f:size": {}}}}
    }
    # An unknown group's "containers" is just a list too.
    cr["spec"] = {"containers": [{"name": "x"}]}
    assert entry(apply(None, cr, manager="a", force=False, now=T0), "a")["fieldsV1"] == {
        "f:spec": {"f:containers": {}}
    }


def test_crd_list_types_from_the_openapi_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name", "kind"],
                        "items": {
                            "type": "object",
                            "properties": {
                                "tags": {"type": "array", "x-kubernetes-list-type": "set"},
                                "ref": {"type": "object", "x-kubernetes-map-type": "atomic"},
                            },
                        },
                    },
                    "plain": {"type": "array", "items": {"type": "string"}},
                },
            }
        },
    }
    list_types = crd_list_types(schema)
    assert list_types == {
        "spec.items": ("kind", "name"),
        "spec.items.tags": "set",
        "spec.items.ref": "atomic",
    }
    cr = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {
            "items": [{"name": "a", "kind": "K", "tags": ["x"], "ref": {"n": 1}}],
            "plain": ["p"],
        },
    }
    result = apply(None, cr, manager="m", force=False, now=T0, list_types=list_types)
    assert entry(result, "m")["fieldsV1"] == {
        "f:spec": {
            "f:items": {
                'k:{"kind":"K","name":"a"}': {
                    ".": {},
                    "f:kind": {},
                    "f:name": {},
                    "f:ref": {},
                    "f:tags": {'v:"x"': {}},
                }
            },
            "f:plain": {},
        }
    }
    assert crd_list_types(None) == {}


@pytest.mark.parametrize(
    ("containers", "message"),
    [
        (
            [{"image": "i"}],
            ".spec.template.spec.containers: element 0: associative list with keys has an "
            'element that omits key field "name" (and doesn\'t have default value)',
        ),
        (
            [{"name": "a", "image": "i"}, {"name": "a", "image": "j"}],
            '.spec.template.spec.containers: duplicate entries for key [name="a"]',
        ),
        (
            ["web"],
            ".spec.template.spec.containers: element 0: associative list may only contain maps",
        ),
    ],
)
def test_invalid_associative_lists_in_config_raise_patch_error(
    containers: list[Any], message: str
) -> None:
    with pytest.raises(PatchError) as caught:
        apply(None, deployment(containers=containers), manager="a", force=False, now=T0)
    assert str(caught.value) == message


def test_apply_rejects_a_non_object_config() -> None:
    with pytest.raises(PatchError):
        apply(None, ["not", "an", "object"], manager="a", force=False, now=T0)  # type: ignore[arg-type]


def test_managed_fields_order_is_apply_first_then_by_time() -> None:
    live = track_update(None, configmap({"a": "1"}), manager="creator", now=T0)
    live = apply(live, configmap({"b": "1"}), manager="z-applier", force=False, now=T1)
    live = apply(live, configmap({"c": "1"}), manager="a-applier", force=False, now=T2)
    assert owners(live) == [
        ("z-applier", "Apply"),
        ("a-applier", "Apply"),
        ("creator", "Update"),
    ]


# ---------------------------------------------------------------------------------------------
# track_update
# ---------------------------------------------------------------------------------------------


def test_create_by_update_matches_the_real_kubectl_create_encoding() -> None:
    new = deployment(labels={"app": "web"})
    new["spec"]["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    new["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    result = track_update(None, new, manager="kubectl-create", now=T0)
    assert entries(result) == [
        {
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:strategy": {
                        "f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                        "f:type": {},
                    },
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                K_WEB: {
                                    ".": {},
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        ".": {},
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                            "f:protocol": {},
                                        },
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]


def test_create_configmap_by_update() -> None:
    result = track_update(None, configmap({"key": "v"}), manager="kubectl-create", now=T0)
    assert entry(result, "kubectl-create", "Update")["fieldsV1"] == {
        "f:data": {".": {}, "f:key": {}}
    }


def test_update_takes_changed_fields_from_other_managers() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, now=T0)
    result = track_update(live, scale(live, 5), manager="hpa", now=T1)
    assert entry(result, "hpa", "Update")["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entry(result, "kubectl")["fieldsV1"]["f:spec"]


def test_update_without_changes_creates_no_entry_and_keeps_time() -> None:
    live = track_update(None, configmap({"k": "v"}), manager="m", now=T0)
    assert track_update(live, copy.deepcopy(live), manager="other", now=T1) == live
    assert track_update(live, copy.deepcopy(live), manager="m", now=T1) == live


def test_update_by_same_manager_accumulates_and_refreshes_time() -> None:
    live = track_update(None, configmap({"a": "1"}), manager="m", now=T0)
    changed = copy.deepcopy(live)
    changed["data"]["b"] = "2"
    result = track_update(live, changed, manager="m", now=T1)
    assert entries(result) == [
        {
            "manager": "m",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:a": {}, "f:b": {}}},
        }
    ]


def test_removed_fields_leave_every_manager() -> None:
    live = apply(None, configmap({"a": "1", "b": "2"}), manager="x", force=False, now=T0)
    changed = copy.deepcopy(live)
    del changed["data"]["a"]
    result = track_update(live, changed, manager="editor", now=T1)
    assert entry(result, "x")["fieldsV1"] == {"f:data": {"f:b": {}}}
    assert owners(result) == [("x", "Apply")]  # a removal alone gives the editor nothing


def test_update_of_an_untracked_object_stays_untracked() -> None:
    live = configmap({"a": "1"})
    changed = configmap({"a": "2"})
    assert track_update(live, changed, manager="m", now=T0) == changed


def test_applying_only_identity_tracks_nothing_then_before_first_apply_owns_the_rest() -> None:
    live = apply(None, bare_configmap(), manager="m", force=False, now=T0)
    assert entries(live) == []
    assert apply(live, bare_configmap(), manager="m", force=False, now=T1) == live
    live["data"] = {}  # written by something that was not tracked
    again = apply(live, bare_configmap(), manager="m", force=False, now=T1)
    assert entries(again) == [
        {
            "manager": "before-first-apply",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {}},
        }
    ]


def test_empty_maps_and_nulls_in_the_config_are_owned_leaves() -> None:
    config = deployment(containers=[{"name": "web", "image": "i", "resources": {}}])
    config["spec"]["strategy"] = {}
    config["spec"]["template"]["metadata"]["creationTimestamp"] = None
    result = apply(None, config, manager="m", force=False, now=T0)
    spec = entry(result, "m")["fieldsV1"]["f:spec"]
    assert spec["f:strategy"] == {}
    assert spec["f:template"]["f:metadata"]["f:creationTimestamp"] == {}
    assert spec["f:template"]["f:spec"]["f:containers"][K_WEB]["f:resources"] == {}
    assert "creationTimestamp" not in result["spec"]["template"]["metadata"]


def test_owner_references_and_image_pull_secrets_items_are_atomic() -> None:
    config = deployment()
    config["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-1"}
    ]
    config["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "reg"}]
    result = apply(None, config, manager="m", force=False, now=T0)
    fields = entry(result, "m")["fieldsV1"]
    assert fields["f:metadata"] == {"f:ownerReferences": {'k:{"uid":"u-1"}': {}}}
    assert fields["f:spec"]["f:template"]["f:spec"]["f:imagePullSecrets"] == {
        'k:{"name":"reg"}': {}
    }
    created = track_update(None, config, manager="c", now=T0)
    assert entry(created, "c", "Update")["fieldsV1"]["f:metadata"] == {
        "f:ownerReferences": {".": {}, 'k:{"uid":"u-1"}': {}}
    }


def test_removing_everything_a_manager_owned_drops_its_entry() -> None:
    live = apply(None, configmap({"a": "1"}), manager="x", force=False, now=T0)
    changed = copy.deepcopy(live)
    changed["data"] = {"b": "2"}
    result = track_update(live, changed, manager="editor", now=T1)
    assert owners(result) == [("editor", "Update")]


def test_update_ignores_managed_fields_in_new_object() -> None:
    live = track_update(None, configmap({"a": "1"}), manager="m", now=T0)
    changed = copy.deepcopy(live)
    changed["metadata"]["managedFields"] = []
    changed["data"]["a"] = "2"
    result = track_update(live, changed, manager="n", now=T1)
    assert owners(result) == [("m", "Update"), ("n", "Update")]
    # m keeps the map it created (".") but not the key n changed.
    assert entry(result, "m", "Update")["fieldsV1"] == {"f:data": {}}
    assert entry(result, "n", "Update")["fieldsV1"] == {"f:data": {"f:a": {}}}


def test_metadata_bookkeeping_fields_are_never_tracked() -> None:
    live = track_update(None, configmap({"a": "1"}), manager="m", now=T0)
    changed = copy.deepcopy(live)
    changed["metadata"].update(resourceVersion="7", uid="u", generation=2, creationTimestamp=T0)
    assert track_update(live, changed, manager="n", now=T1) == {
        **changed,
        "metadata": {**changed["metadata"], "managedFields": live["metadata"]["managedFields"]},
    }


def test_status_update_is_tracked_with_its_subresource() -> None:
    live = apply(None, deployment(), manager="kubectl", force=False, now=T0)
    changed = copy.deepcopy(live)
    changed["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    result = track_update(live, changed, manager="controller", now=T1, subresource="status")
    status_entry = entry(result, "controller", "Update")
    assert status_entry["subresource"] == "status"
    assert status_entry["fieldsV1"] == {
        "f:status": {
            ".": {},
            "f:conditions": {
                ".": {},
                'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}},
            },
            "f:replicas": {},
        }
    }
    assert list(status_entry) == [
        "manager",
        "operation",
        "apiVersion",
        "time",
        "fieldsType",
        "fieldsV1",
        "subresource",
    ]


def test_update_and_status_entries_of_one_manager_are_distinct() -> None:
    live = track_update(None, deployment(), manager="m", now=T0)
    changed = copy.deepcopy(live)
    changed["status"] = {"replicas": 1}
    result = track_update(live, changed, manager="m", now=T1, subresource="status")
    assert [(e["manager"], e.get("subresource")) for e in entries(result)] == [
        ("m", None),
        ("m", "status"),
    ]


def test_more_than_ten_updaters_fold_the_oldest_into_ancient_changes() -> None:
    live = track_update(None, configmap({"k0": "v"}), manager="m00", now="2026-01-01T00:00:00Z")
    for n in range(1, 12):
        changed = copy.deepcopy(live)
        changed["data"][f"k{n}"] = "v"
        live = track_update(live, changed, manager=f"m{n:02}", now=f"2026-01-01T00:00:{n:02}Z")
    managers = [e["manager"] for e in entries(live)]
    assert len(managers) == 10
    assert managers[0] == "ancient-changes"
    assert managers[1:] == [f"m{n:02}" for n in range(3, 12)]
    ancient = entries(live)[0]
    assert ancient["time"] == "2026-01-01T00:00:02Z"
    assert ancient["fieldsV1"] == {"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}}


# ---------------------------------------------------------------------------------------------
# FieldsV1 helpers
# ---------------------------------------------------------------------------------------------


def test_fields_v1_round_trips() -> None:
    fields = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:containers": {K_WEB: {".": {}, "f:image": {}}}},
    }
    assert encode_fields(decode_fields(fields)) == fields
    assert json.dumps(encode_fields(decode_fields(fields))) == json.dumps(fields)


# ---------------------------------------------------------------------------------------------
# strategic merge patch
# ---------------------------------------------------------------------------------------------

SMP_BASE = deployment(
    labels={"app": "web"},
    containers=[
        {
            "name": "web",
            "image": "nginx:1",
            "ports": [{"containerPort": 80}],
            "env": [{"name": "A", "value": "1"}],
        },
        {"name": "sidecar", "image": "envoy:1", "args": ["--a", "--b"]},
    ],
)


def smp_containers(patch_containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    patch = {"spec": {"template": {"spec": {"containers": patch_containers}}}}
    return containers_of(strategic_merge_patch(SMP_BASE, patch))


@pytest.mark.parametrize(
    ("patch_containers", "expected"),
    [
        pytest.param(
            [{"name": "web", "image": "nginx:2"}],
            [
                {
                    "name": "web",
                    "image": "nginx:2",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                },
                {"name": "sidecar", "image": "envoy:1", "args": ["--a", "--b"]},
            ],
            id="change-one-image",
        ),
        pytest.param(
            [{"name": "new", "image": "busybox"}],
            # Upstream's mergeSortedSlice puts new patch items before the server-only ones.
            [
                {"name": "new", "image": "busybox"},
                {
                    "name": "web",
                    "image": "nginx:1",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                },
                {"name": "sidecar", "image": "envoy:1", "args": ["--a", "--b"]},
            ],
            id="add-container",
        ),
        pytest.param(
            [{"name": "sidecar", "$patch": "delete"}],
            [
                {
                    "name": "web",
                    "image": "nginx:1",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                }
            ],
            id="delete-container",
        ),
        pytest.param(
            [{"name": "only", "image": "x"}, {"$patch": "replace"}],
            [{"name": "only", "image": "x"}],
            id="replace-list",
        ),
        pytest.param(
            [{"name": "sidecar", "args": ["--c"]}],
            [
                {
                    "name": "web",
                    "image": "nginx:1",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                },
                {"name": "sidecar", "image": "envoy:1", "args": ["--c"]},
            ],
            id="atomic-args-replaced",
        ),
        pytest.param(
            [{"name": "web", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}]}],
            [
                {
                    "name": "web",
                    "image": "nginx:1",
                    "ports": [{"containerPort": 80}],
                    # Items named in the patch take the patch's order.
                    "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
                },
                {"name": "sidecar", "image": "envoy:1", "args": ["--a", "--b"]},
            ],
            id="env-by-name",
        ),
        pytest.param(
            [{"name": "web", "ports": [{"containerPort": 443}]}],
            [
                {
                    "name": "web",
                    "image": "nginx:1",
                    "ports": [{"containerPort": 443}, {"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                },
                {"name": "sidecar", "image": "envoy:1", "args": ["--a", "--b"]},
            ],
            id="ports-by-containerPort",
        ),
        pytest.param(
            [{"name": "web", "image": None}],
            [
                {
                    "name": "web",
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}],
                },
                {"name": "sidecar", "image": "envoy:1", "args": ["--a", "--b"]},
            ],
            id="null-deletes-field",
        ),
    ],
)
def test_smp_containers(
    patch_containers: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    assert smp_containers(patch_containers) == expected


def test_smp_does_not_mutate_inputs() -> None:
    base, patch = (
        copy.deepcopy(SMP_BASE),
        {
            "spec": {
                "replicas": 9,
                "template": {"spec": {"containers": [{"name": "web", "image": "x"}]}},
            }
        },
    )
    patch_before = copy.deepcopy(patch)
    result = strategic_merge_patch(base, patch)
    assert base == SMP_BASE
    assert patch == patch_before
    result["spec"]["template"]["spec"]["containers"][1]["args"].append("z")
    assert base == SMP_BASE


def test_smp_maps_merge_and_null_deletes() -> None:
    base = configmap({"a": "1", "b": "2"}, labels={"x": "1"})
    patch = {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"y": "2"}}}
    result = strategic_merge_patch(base, patch)
    assert result["data"] == {"b": "2", "c": "3"}
    assert result["metadata"]["labels"] == {"x": "1", "y": "2"}


def test_smp_kubectl_label_annotate_and_rollout_restart() -> None:
    result = strategic_merge_patch(
        SMP_BASE,
        {
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "n"}},
            "spec": {
                "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": T0}}}
            },
        },
    )
    assert result["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert result["metadata"]["annotations"] == {"note": "n"}
    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": T0},
    }


def test_smp_scale() -> None:
    assert strategic_merge_patch(SMP_BASE, {"spec": {"replicas": 7}})["spec"]["replicas"] == 7


def test_smp_patch_replace_and_delete_maps() -> None:
    base = deployment()
    base["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    replaced = strategic_merge_patch(
        base, {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}
    )
    assert replaced["spec"]["strategy"] == {"type": "Recreate"}
    # handleDirectiveInMergeMap: "$patch: delete" in a map leaves an empty map.
    deleted = strategic_merge_patch(base, {"spec": {"strategy": {"$patch": "delete"}}})
    assert deleted["spec"]["strategy"] == {}


def test_smp_retain_keys() -> None:
    base = deployment()
    base["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(base, patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_set_element_order() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                    "containers": [{"name": "web", "image": "nginx:3"}],
                }
            }
        }
    }
    result = strategic_merge_patch(SMP_BASE, patch)
    assert [(c["name"], c["image"]) for c in containers_of(result)] == [
        ("sidecar", "envoy:1"),
        ("web", "nginx:3"),
    ]


def test_smp_finalizers_merge_and_delete_from_primitive_list() -> None:
    base = configmap({})
    base["metadata"]["finalizers"] = ["a", "b"]
    merged = strategic_merge_patch(base, {"metadata": {"finalizers": ["c", "a"]}})
    # Patch items first, in patch order; "b" (server only, after "a" on the server) after them.
    assert merged["metadata"]["finalizers"] == ["c", "a", "b"]
    appended = strategic_merge_patch(base, {"metadata": {"finalizers": ["a", "b", "c"]}})
    assert appended["metadata"]["finalizers"] == ["a", "b", "c"]
    deleted = strategic_merge_patch(
        base, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    )
    assert deleted["metadata"]["finalizers"] == ["b"]


def test_smp_service_ports_by_port() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]},
    }
    result = strategic_merge_patch(
        service, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}
    )
    assert result["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080},
        {"port": 443, "targetPort": 9443},
    ]


def test_smp_tolerations_are_replaced() -> None:
    base = deployment()
    base["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}
    result = strategic_merge_patch(base, patch)
    assert result["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "map: map[image:x] does not contain declared merge key: name",
        ),
        (
            {"spec": {"$patch": "explode"}},
            "unknown patch type: explode in map: map[$patch:explode]",
        ),
        (
            {"spec": {"template": {"spec": {"containers": ["web"]}}}},
            "list element types are not identical",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "w", "$patch": "merge"}]}}}},
            "merging lists cannot yet be specified in the patch",
        ),
        (
            {"metadata": {"$retainKeys": ["name"], "labels": {"x": "y"}}},
            "invalid patch format of retainKeys",
        ),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "web"}],
                            "containers": [{"name": "sidecar", "image": "x"}],
                        }
                    }
                }
            },
            "doesn't match $setElementOrder list",
        ),
    ],
)
def test_smp_errors(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchError) as caught:
        strategic_merge_patch(SMP_BASE, patch)
    assert message in str(caught.value)


# ---------------------------------------------------------------------------------------------
# JSON merge patch: RFC 7386 Appendix A
# ---------------------------------------------------------------------------------------------

RFC7386_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_CASES)
def test_json_merge_patch_rfc7386_appendix(target: Any, patch: Any, expected: Any) -> None:
    before = copy.deepcopy(target)
    assert json_merge_patch(target, patch) == expected
    assert target == before


# ---------------------------------------------------------------------------------------------
# JSON patch: RFC 6902 Appendix A
# ---------------------------------------------------------------------------------------------

RFC6902_OK = [
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
        id="A.1",
    ),
    pytest.param(
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
        id="A.2",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}, id="A.3"
    ),
    pytest.param(
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
        id="A.4",
    ),
    pytest.param(
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
        id="A.5",
    ),
    pytest.param(
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        id="A.6",
    ),
    pytest.param(
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
        id="A.7",
    ),
    pytest.param(
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
        id="A.8",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
        id="A.10",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
        id="A.11",
    ),
    pytest.param(
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
        id="A.14",
    ),
    pytest.param(
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
        id="A.16",
    ),
    pytest.param(
        {"a": {"b": 1}},
        [{"op": "copy", "from": "/a", "path": "/c"}],
        {"a": {"b": 1}, "c": {"b": 1}},
        id="copy",
    ),
    pytest.param({"a": 1}, [{"op": "replace", "path": "", "value": [1]}], [1], id="replace-root"),
    pytest.param({"a/b": 1}, [{"op": "remove", "path": "/a~1b"}], {}, id="escaped-slash"),
    pytest.param(
        {"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}, id="move-to-itself"
    ),
]


@pytest.mark.parametrize(("doc", "ops", "expected"), RFC6902_OK)
def test_json_patch_rfc6902_appendix(doc: Any, ops: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == expected
    assert doc == before


def test_json_patch_copy_is_deep() -> None:
    result = json_patch(
        {"a": {"b": 1}},
        [{"op": "copy", "from": "/a", "path": "/c"}, {"op": "replace", "path": "/c/b", "value": 2}],
    )
    assert result == {"a": {"b": 1}, "c": {"b": 2}}


RFC6902_ERRORS = [
    pytest.param(
        {"baz": "qux"},
        [{"op": "test", "path": "/baz", "value": "bar"}],
        "testing value /baz failed",
        id="A.9",
    ),
    pytest.param(
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        "doc is missing path",
        id="A.12",
    ),
    pytest.param(
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        "test failed",
        id="A.15",
    ),
    pytest.param(
        {"a": True},
        [{"op": "test", "path": "/a", "value": 1}],
        "test failed",
        id="bool-is-not-number",
    ),
    pytest.param(
        {"a": 1},
        [{"op": "remove", "path": "/b"}],
        "Unable to remove nonexistent key: b",
        id="remove-missing",
    ),
    pytest.param(
        {"a": 1},
        [{"op": "replace", "path": "/b", "value": 1}],
        "doc is missing key: /b",
        id="replace-missing",
    ),
    pytest.param(
        {"a": [1]},
        [{"op": "add", "path": "/a/5", "value": 1}],
        "out of bounds",
        id="index-out-of-bounds",
    ),
    pytest.param(
        {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], "invalid array index", id="leading-zero"
    ),
    pytest.param(
        {"a": [1]},
        [{"op": "remove", "path": "/a/-"}],
        "invalid array index",
        id="dash-not-for-remove",
    ),
    pytest.param(
        {"a": {"b": 1}},
        [{"op": "move", "from": "/a", "path": "/a/b/c"}],
        "prefix",
        id="move-into-child",
    ),
    pytest.param(
        {}, [{"op": "frobnicate", "path": "/a"}], "Unexpected kind: frobnicate", id="unknown-op"
    ),
    pytest.param({}, [{"op": "add", "value": 1}], 'missing "path"', id="missing-path"),
    pytest.param({}, [{"op": "add", "path": "/a"}], 'missing "value"', id="missing-value"),
    pytest.param({}, [{"op": "add", "path": "a", "value": 1}], "JSON pointer", id="bad-pointer"),
    pytest.param({}, ["add"], "invalid JSON patch operation", id="not-an-object"),
]


@pytest.mark.parametrize(("doc", "ops", "message"), RFC6902_ERRORS)
def test_json_patch_errors(doc: Any, ops: list[Any], message: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError) as caught:
        json_patch(doc, ops)
    assert message in str(caught.value)
    assert doc == before


def test_json_patch_failure_applies_nothing() -> None:
    doc = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(
            doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 3}]
        )
    assert doc == {"a": 1}


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

keys = st.text(alphabet="abcdefghij-.", min_size=1, max_size=6)
scalars = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans())
json_values = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda children: st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(keys, json_values, max_size=5)


def merge_patch_diff(source: Any, target: Any) -> Any:
    """The RFC 7386 patch that turns ``source`` into ``target`` (no nulls in values)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return target
    patch: dict[str, Any] = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            patch[key] = value
        elif source[key] != value or type(source[key]) is not type(value):
            patch[key] = merge_patch_diff(source[key], value)
    return patch


@settings(max_examples=150, deadline=None)
@given(json_objects, json_objects)
def test_json_merge_patch_of_a_diff_round_trips(
    source: dict[str, Any], target: dict[str, Any]
) -> None:
    assert json_merge_patch(source, merge_patch_diff(source, target)) == target


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(keys, st.text(max_size=4), min_size=1, max_size=5),
    st.dictionaries(keys, st.text(max_size=4), max_size=3),
    st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=4),
)
def test_apply_is_idempotent(
    data: dict[str, str], labels: dict[str, str], names: list[str]
) -> None:
    config = configmap(data, labels=labels)
    live = apply(None, config, manager="m", force=False, now=T0)
    assert apply(live, config, manager="m", force=False, now=T1) == live
    dep = deployment(containers=[{"name": n, "image": n} for n in names] or None)
    live = apply(None, dep, manager="m", force=False, now=T0)
    assert apply(live, dep, manager="m", force=False, now=T1) == live


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(keys, st.text(max_size=3), max_size=5),
    st.dictionaries(keys, st.text(max_size=3), max_size=5),
)
def test_apply_result_holds_exactly_the_config_for_a_sole_applier(
    first: dict[str, str], second: dict[str, str]
) -> None:
    live = apply(None, configmap(first), manager="m", force=False, now=T0)
    result = apply(live, configmap(second), manager="m", force=False, now=T1)
    assert result.get("data", {}) == second
    # An empty map is itself an owned leaf.
    assert entries(result)[0]["fieldsV1"] == {"f:data": {f"f:{k}": {} for k in sorted(second)}}


map_values = st.recursive(
    scalars, lambda children: st.dictionaries(keys, children, max_size=4), max_leaves=12
)
map_patches = st.recursive(
    scalars | st.none(),
    lambda children: st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(keys, map_values, max_size=5), st.dictionaries(keys, map_patches, max_size=5)
)
def test_smp_without_lists_or_directives_is_a_json_merge_patch(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert strategic_merge_patch(target, patch) == json_merge_patch(target, patch)


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"a": "1"}, {"a": "2", "b": "x"}],
    ids=["none", "empty", "same", "changed"],
)
def test_track_update_scope_gives_the_full_comparison_result(
    annotations: dict[str, str] | None,
) -> None:
    live = apply(
        None,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "annotations": {"a": "1", "c": "3"}},
            "spec": {"replicas": 2},
        },
        manager="owner",
        force=False,
        now=T0,
    )
    live = track_update(live, copy.deepcopy(live), manager="other", now=T0)
    new = copy.deepcopy(live)
    if annotations is None:
        del new["metadata"]["annotations"]
    else:
        new["metadata"]["annotations"] = annotations
    full = track_update(live, new, manager="controller", now=T1)
    scoped = track_update(
        live, new, manager="controller", now=T1, scope=("metadata", "annotations")
    )
    assert scoped == full
