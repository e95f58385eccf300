"""Tests for bot.diff: normalization, Secret masking, canonical YAML diffs and the offline app diff."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.diff import (
    LAST_APPLIED_ANNOTATION,
    REDACTED,
    REDACTED_AFTER,
    REDACTED_BEFORE,
    diff_app,
    dump_yaml,
    mask_secrets,
    normalize,
    object_diff,
    secret_values,
)
from bot.model import Change, Manifest, Obj, ObjectChange, ObjectRef, Source


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def deployment(name: str = "web", *, image: str = "nginx:1.27", **meta: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "guestbook", **meta},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def secret(*, data: dict[str, Any] | None = None, string_data: dict[str, Any] | None = None) -> Obj:
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "guestbook"},
        "type": "Opaque",
    }
    if data is not None:
        obj["data"] = data
    if string_data is not None:
        obj["stringData"] = string_data
    return obj


def manifest(obj: Obj, file: str = "apps/guestbook/all.yaml", line: int = 1) -> Manifest:
    return Manifest(app="guestbook", obj=obj, source=Source(file=file, line=line))


# -- normalize --------------------------------------------------------------------------------

SERVER_METADATA = {
    "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
    "resourceVersion": "12345",
    "uid": "5f0c0d8e-0000-4000-8000-000000000000",
    "generation": 3,
    "creationTimestamp": "2026-01-01T00:00:00Z",
    "selfLink": "/apis/apps/v1/namespaces/guestbook/deployments/web",
    "deletionTimestamp": "2026-01-02T00:00:00Z",
    "deletionGracePeriodSeconds": 30,
}


@pytest.mark.parametrize("field", sorted(SERVER_METADATA))
def test_normalize_drops_each_server_metadata_field(field: str) -> None:
    live = deployment()
    live["metadata"][field] = SERVER_METADATA[field]
    assert normalize(live) == deployment()


def test_normalize_drops_status() -> None:
    live = deployment()
    live["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    assert normalize(live) == deployment()


@pytest.mark.parametrize(
    "annotation", [LAST_APPLIED_ANNOTATION, "deployment.kubernetes.io/revision"]
)
def test_normalize_drops_tool_annotations_and_the_map_they_leave_empty(annotation: str) -> None:
    live = deployment(annotations={annotation: "x"})
    assert normalize(live) == deployment()


def test_normalize_keeps_other_annotations() -> None:
    live = deployment(annotations={LAST_APPLIED_ANNOTATION: "{}", "team": "web"})
    assert normalize(live)["metadata"]["annotations"] == {"team": "web"}


@pytest.mark.parametrize("key", ["labels", "annotations"])
@pytest.mark.parametrize("empty", [{}, None])
def test_normalize_drops_empty_label_and_annotation_maps(key: str, empty: Any) -> None:
    assert normalize(deployment(**{key: empty})) == deployment()


def test_normalize_keeps_server_defaults_and_does_not_modify_input() -> None:
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "uid": "u"},
        "spec": {"clusterIP": "10.0.0.1", "type": "ClusterIP", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    }
    before = copy.deepcopy(service)
    out = normalize(service)
    assert service == before
    assert out["spec"] == service["spec"]
    assert "status" not in out and "uid" not in out["metadata"]
    out["spec"]["ports"][0]["port"] = 81
    assert service["spec"]["ports"][0]["port"] == 80, "normalize must return a deep copy"


def test_normalize_tolerates_odd_objects() -> None:
    assert normalize({"kind": "Thing"}) == {"kind": "Thing"}
    assert normalize({"kind": "Thing", "metadata": None}) == {"kind": "Thing", "metadata": None}


# -- mask_secrets -----------------------------------------------------------------------------


def test_mask_marks_equal_changed_added_and_removed_keys() -> None:
    old = secret(data={"same": b64("s3cret-1"), "changed": b64("old-value"), "gone": b64("bye")})
    new = secret(data={"same": b64("s3cret-1"), "changed": b64("new-value"), "added": b64("hi")})
    masked_old, masked_new = mask_secrets(old, new)
    assert masked_old is not None and masked_new is not None
    assert masked_old["data"] == {"same": REDACTED, "changed": REDACTED_BEFORE, "gone": REDACTED}
    assert masked_new["data"] == {"same": REDACTED, "changed": REDACTED_AFTER, "added": REDACTED}
    diff = object_diff(old, new, ref=ObjectRef.of(new))
    assert "-  gone: <redacted>" in diff
    assert "+  added: <redacted>" in diff
    assert "-  changed: '<redacted: before>'" in diff
    assert "+  changed: '<redacted: after>'" in diff
    for value in ("s3cret-1", "old-value", "new-value", "bye", "hi"):
        assert value not in diff and b64(value) not in diff


def test_empty_data_equals_no_data() -> None:
    assert object_diff(secret(data={}), secret(), ref=ObjectRef.of(secret())) == ""
    assert object_diff(secret(string_data={}), secret(), ref=ObjectRef.of(secret())) == ""


def test_mask_does_not_modify_inputs() -> None:
    old = secret(data={"a": b64("x")})
    new = secret(string_data={"a": "y"})
    before = copy.deepcopy((old, new))
    mask_secrets(old, new)
    assert (old, new) == before


def test_placeholder_does_not_depend_on_value_length() -> None:
    _, short = mask_secrets(secret(data={"k": b64("a")}), secret(data={"k": b64("b")}))
    _, long = mask_secrets(secret(data={"k": b64("a" * 100)}), secret(data={"k": b64("b" * 5000)}))
    assert short == long


def test_string_data_equals_data_with_the_same_decoded_value() -> None:
    old = secret(data={"password": b64("hunter2")})
    new = secret(string_data={"password": "hunter2"})
    assert object_diff(old, new, ref=ObjectRef.of(new)) == ""


def test_string_data_wins_over_data_for_the_same_key() -> None:
    # the API server merges stringData over data; the masked diff must see the merged value
    old = secret(data={"k": b64("v1")})
    new = secret(data={"k": b64("v1")}, string_data={"k": "v2"})
    _, masked_new = mask_secrets(old, new)
    assert masked_new is not None
    assert masked_new["data"] == {"k": REDACTED_AFTER}
    assert "stringData" not in masked_new


def test_invalid_base64_is_compared_raw_and_never_printed() -> None:
    old = secret(data={"k": "not base64!!"})
    same = secret(data={"k": "not base64!!"})
    other = secret(data={"k": "also not base64!!"})
    assert object_diff(old, same, ref=ObjectRef.of(old)) == ""
    diff = object_diff(old, other, ref=ObjectRef.of(old))
    assert REDACTED_BEFORE in diff and REDACTED_AFTER in diff
    assert "base64" not in diff


def test_non_string_and_null_values_are_masked() -> None:
    old = secret(string_data={"n": 1, "z": None})
    new = secret(string_data={"n": 2, "z": None})
    masked_old, masked_new = mask_secrets(old, new)
    assert masked_old is not None and masked_new is not None
    assert masked_old["data"] == {"n": REDACTED_BEFORE, "z": REDACTED}
    assert masked_new["data"] == {"n": REDACTED_AFTER, "z": REDACTED}


def test_malformed_data_is_hidden_whole() -> None:
    old = secret()
    old["data"] = "a string, not a map"
    new = secret()
    new["data"] = ["a", "list"]
    masked_old, masked_new = mask_secrets(old, new)
    assert masked_old is not None and masked_new is not None
    assert masked_old["data"] == REDACTED_BEFORE
    assert masked_new["data"] == REDACTED_AFTER
    diff = object_diff(old, new, ref=ObjectRef.of(old))
    assert "a string" not in diff and "list" not in diff


def test_last_applied_annotation_of_a_secret_is_masked() -> None:
    applied = yaml.safe_dump(secret(data={"k": b64("topsecret")}))
    live = secret(data={"k": b64("topsecret")})
    live["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: applied, "team": "web"}
    masked_live, masked_none = mask_secrets(live, None)
    assert masked_none is None
    assert masked_live is not None
    assert masked_live["metadata"]["annotations"] == {
        LAST_APPLIED_ANNOTATION: REDACTED,
        "team": "web",
    }
    # changed on the other side: before/after placeholders
    other = copy.deepcopy(live)
    other["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = "{}"
    a, b = mask_secrets(live, other)
    assert a is not None and b is not None
    assert a["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED_BEFORE
    assert b["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] == REDACTED_AFTER
    assert "topsecret" not in str(a) and b64("topsecret") not in str(a)


def test_secret_only_on_one_side_is_fully_masked() -> None:
    created = secret(data={"k": b64("v")}, string_data={"s": "w"})
    _, masked = mask_secrets(None, created)
    assert masked is not None
    assert masked["data"] == {"k": REDACTED, "s": REDACTED}
    diff = object_diff(None, created, ref=ObjectRef.of(created))
    assert diff.startswith("--- /dev/null\n+++ desired/Secret guestbook/creds\n")
    assert "+  k: <redacted>" in diff


def test_non_secrets_are_returned_untouched() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"k": "v"},
    }
    other = copy.deepcopy(config)
    old, new = mask_secrets(config, other)
    assert old is config and new is other
    assert mask_secrets(None, None) == (None, None)


def test_secret_values_lists_every_printable_form() -> None:
    obj = secret(data={"a": b64("alpha"), "bad": "%%%"}, string_data={"b": "beta"})
    values = set(secret_values(obj))
    assert {b64("alpha"), "alpha", "%%%", "beta", b64("beta")} <= values
    assert secret_values(deployment()) == []


# -- object_diff and YAML -----------------------------------------------------------------------


def test_dump_yaml_uses_canonical_key_order_and_literal_blocks() -> None:
    obj = {
        "zeta": 1,
        "data": {"b": "x", "a": "line one\nline two\n"},
        "spec": {"z": 1, "a": 2},
        "metadata": {"labels": {"b": "1", "a": "2"}, "namespace": "n", "name": "x"},
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "alpha": 0,
    }
    assert dump_yaml(obj) == (
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: x\n"
        "  namespace: n\n"
        "  labels:\n"
        "    a: '2'\n"
        "    b: '1'\n"
        "spec:\n"
        "  a: 2\n"
        "  z: 1\n"
        "data:\n"
        "  a: |\n"
        "    line one\n"
        "    line two\n"
        "  b: x\n"
        "alpha: 0\n"
        "zeta: 1\n"
    )


def test_dump_yaml_never_emits_aliases_or_folds_long_lines() -> None:
    shared = {"a": "b"}
    text = dump_yaml({"kind": "X", "spec": {"one": shared, "two": shared, "long": "w " * 200}})
    assert "&id" not in text and "*id" not in text
    assert ("w " * 199).strip() in text


def test_object_diff_ignores_server_fields_and_shows_real_changes() -> None:
    live = deployment(resourceVersion="1", uid="u", generation=4)
    live["status"] = {"replicas": 2}
    desired = deployment(image="nginx:1.28")
    diff = object_diff(live, desired, ref=ObjectRef.of(desired))
    assert diff.splitlines()[:2] == [
        "--- live/Deployment guestbook/web",
        "+++ desired/Deployment guestbook/web",
    ]
    changed = [line for line in diff.splitlines()[2:] if line[:1] in "+-"]
    assert changed == ["-      - image: nginx:1.27", "+      - image: nginx:1.28"]
    assert object_diff(live, deployment(), ref=ObjectRef.of(desired)) == ""


def test_object_diff_labels_and_deletion() -> None:
    old = deployment()
    diff = object_diff(old, None, ref=ObjectRef.of(old), labels=("base", "head"))
    assert diff.startswith("--- base/Deployment guestbook/web\n+++ /dev/null\n")
    assert all(line.startswith("-") for line in diff.splitlines()[3:])


def test_object_diff_of_a_multiline_value_changes_one_line() -> None:
    def config(text: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"f": text},
        }

    diff = object_diff(
        config("a\nb\nc\n"), config("a\nB\nc\n"), ref=ObjectRef("v1", "ConfigMap", None, "c")
    )
    assert [line for line in diff.splitlines()[2:] if line[:1] in "+-"] == ["-    b", "+    B"]


# -- diff_app -----------------------------------------------------------------------------------


def test_diff_app_create_update_delete_unchanged() -> None:
    old = [
        manifest(deployment("a")),
        manifest(deployment("b")),
        manifest(deployment("c"), file="apps/guestbook/c.yaml", line=7),
    ]
    new = [
        manifest(deployment("d"), file="apps/guestbook/d.yaml", line=3),
        manifest(deployment("b", image="nginx:2")),
        manifest(deployment("a")),
    ]
    result = diff_app(app="guestbook", target="production", old=old, new=new, commit="abc")
    assert (result.name, result.target, result.commit) == ("guestbook", "production", "abc")
    assert [(c.ref.name, c.change) for c in result.changes] == [
        ("a", Change.UNCHANGED),
        ("b", Change.UPDATE),
        ("c", Change.DELETE),
        ("d", Change.CREATE),
    ]
    unchanged, updated, deleted, created = result.changes
    assert unchanged.diff == ""
    assert (
        "+++ head/Deployment guestbook/b" in updated.diff
        and "+      - image: nginx:2" in updated.diff
    )
    assert deleted.source == Source(file="apps/guestbook/c.yaml", line=7)
    assert deleted.diff.startswith("--- base/Deployment guestbook/c\n+++ /dev/null\n")
    assert created.source == Source(file="apps/guestbook/d.yaml", line=3)
    assert created.diff.startswith("--- /dev/null\n+++ head/Deployment guestbook/d\n")
    assert result.notes == []


def test_diff_app_order_does_not_depend_on_input_order() -> None:
    objs = [manifest(deployment(n)) for n in "qwertyuiop"]
    one = diff_app(app="x", target="t", old=[], new=objs)
    two = diff_app(app="x", target="t", old=[], new=list(reversed(objs)))
    assert [c.to_json() for c in one.changes] == [c.to_json() for c in two.changes]


def test_diff_app_api_version_change_is_an_update() -> None:
    old = deployment()
    old["apiVersion"] = "apps/v1beta2"
    result = diff_app(app="g", target="t", old=[manifest(old)], new=[manifest(deployment())])
    assert [c.change for c in result.changes] == [Change.UPDATE]
    change = result.changes[0]
    assert change.ref.api_version == "apps/v1"
    assert "-apiVersion: apps/v1beta2\n+apiVersion: apps/v1\n" in change.diff


def test_diff_app_kind_in_another_group_is_another_object() -> None:
    other = deployment()
    other["apiVersion"] = "example.com/v1"
    result = diff_app(app="g", target="t", old=[manifest(other)], new=[manifest(deployment())])
    assert sorted(c.change.value for c in result.changes) == ["created", "deleted"]


def test_diff_app_with_prune_off_keeps_removed_objects_as_notes() -> None:
    result = diff_app(app="g", target="t", old=[manifest(deployment("old"))], new=[], prune=False)
    assert result.changes == []
    assert result.notes == [
        "Deployment guestbook/old is no longer in Git but is left in the cluster because prune is off"
    ]
    assert not result.has_changes


def test_diff_app_masks_secrets() -> None:
    old = [manifest(secret(data={"token": b64("old-token-value")}))]
    new = [manifest(secret(string_data={"token": "new-token-value", "extra": "more"}))]
    result = diff_app(app="g", target="t", old=old, new=new)
    (change,) = result.changes
    assert change.change is Change.UPDATE
    assert "old-token-value" not in change.diff and "new-token-value" not in change.diff
    assert "+  extra: <redacted>" in change.diff


def test_diff_app_first_duplicate_wins() -> None:
    result = diff_app(
        app="g",
        target="t",
        old=[],
        new=[manifest(deployment(image="one"), line=1), manifest(deployment(image="two"), line=9)],
    )
    (change,) = result.changes
    assert change.source is not None and change.source.line == 1


# -- property: no Secret value ever leaks -------------------------------------------------------

_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
# Any text, but starting with a character the diff never prints itself, so that finding a value
# in the output is a leak and never a coincidence with the YAML around it or a placeholder.
_values = st.builds(
    lambda mark, rest: mark + rest,
    st.sampled_from("§¶¤Ω"),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=3, max_size=40),
)


@st.composite
def secrets(draw: st.DrawFn) -> Obj:
    data = draw(st.dictionaries(_keys, _values, max_size=4))
    string_data = draw(st.dictionaries(_keys, _values, max_size=4))
    keep_empty_data: bool = draw(st.booleans())
    obj = secret(
        data={k: b64(v) for k, v in data.items()} if data or keep_empty_data else None,
        string_data=string_data or None,
    )
    if draw(st.booleans()):
        obj["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: yaml.safe_dump(obj)}
    return obj


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=st.one_of(st.none(), secrets()), new=st.one_of(st.none(), secrets()))
def test_no_secret_value_ever_appears_in_a_diff(old: Obj | None, new: Obj | None) -> None:
    diff = object_diff(old, new, ref=ObjectRef("v1", "Secret", "guestbook", "creds"))
    masked = repr(mask_secrets(old, new))
    for obj in (old, new):
        for value in secret_values(obj) if obj else []:
            assert value not in diff
            assert value not in masked


# -- redact_values --------------------------------------------------------------------------------


def test_redact_values_scrubs_messages_diffs_notes_and_health() -> None:
    from bot.diff import redact_values
    from bot.model import AppResult, Health, Mode, ObjectError, ObjectHealth, RunResult

    ref = ObjectRef("v1", "Secret", "n", "s")
    result = RunResult(
        mode=Mode.LIVE,
        apps=[
            AppResult(
                name="a",
                target="t",
                changes=[ObjectChange(ref, Change.UPDATE, "+  leaked: hunter22\n")],
                errors=[ObjectError(message='invalid value "hunter22" and "abc"', ref=ref)],
                health=[ObjectHealth(ref, Health.DEGRADED, "Bad", "saw hunter22hunter22")],
                notes=["note hunter22"],
            )
        ],
        errors=[ObjectError(message="global hunter22")],
    )
    clean = redact_values(result, ["hunter22", "abc", "hunter22hunter22"])
    text = repr(clean)
    assert "hunter22" not in text
    assert 'and "abc"' in text, "values shorter than 4 characters are left alone"
    assert clean.apps[0].health[0].message == "saw <redacted>"
    assert "hunter22" in repr(result), "the input is not modified"
    assert redact_values(result, []) is result
