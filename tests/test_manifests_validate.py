"""Per-object validation: required fields, names, duplicates, namespaces, schema."""

from __future__ import annotations

from typing import Any

import pytest

from bot.manifests.scopes import crd_scopes, is_cluster_scoped
from bot.manifests.validate import name_problem, schema_problem, validate_objects
from bot.model import Source


def obj(kind: str, name: Any, api_version: str = "v1", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {} if name is None else {"name": name}
    meta.update(extra.pop("meta", {}))
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def src(file: str, line: int = 1, document: int = 0) -> Source:
    return Source(file=file, document=document, line=line)


def run(*items: tuple[dict[str, Any], Source], namespace: str | None = None, schema: bool = False):  # type: ignore[no-untyped-def]
    return validate_objects(app="app", items=list(items), namespace=namespace, schema=schema)


def test_required_fields() -> None:
    manifests, errors = run(
        ({"kind": "ConfigMap", "metadata": {"name": "a"}}, src("a.yaml", 1)),
        ({"apiVersion": "v1", "metadata": {"name": "b"}}, src("b.yaml", 2)),
        ({"apiVersion": "v1", "kind": "ConfigMap"}, src("c.yaml", 3)),
        (obj("ConfigMap", None), src("d.yaml", 4)),
        (obj("Pod", None, meta={"generateName": "job-"}), src("e.yaml", 5)),
        (obj("ConfigMap", 7), src("f.yaml", 6)),
        (obj("ConfigMap", "ok"), src("g.yaml", 7)),
    )
    assert [m.ref.name for m in manifests] == ["ok"]
    assert [(e.file, e.line) for e in errors] == [
        ("a.yaml", 1),
        ("b.yaml", 2),
        ("c.yaml", 3),
        ("d.yaml", 4),
        ("e.yaml", 5),
        ("f.yaml", 6),
    ]
    assert errors[0].message == "apiVersion is missing or not a string"
    assert errors[1].message == "kind is missing or not a string"
    assert errors[2].message == "metadata is missing or not a mapping"
    assert errors[3].message == "metadata.name is missing or not a string"
    assert "generateName" in errors[4].message
    assert all(e.reason == "Invalid" and not e.transient for e in errors)


@pytest.mark.parametrize(
    ("group", "kind", "name", "ok"),
    [
        ("", "ConfigMap", "a.b-c", True),
        ("", "ConfigMap", "A", False),
        ("", "ConfigMap", "-a", False),
        ("", "ConfigMap", "a" * 254, False),
        ("", "Namespace", "a.b", False),
        ("", "Namespace", "a" * 63, True),
        ("", "Namespace", "a" * 64, False),
        ("", "Service", "1abc", False),  # RFC 1035: starts with a letter
        ("", "Service", "abc-1", True),
        ("rbac.authorization.k8s.io", "ClusterRole", "system:controller:x", True),
        ("rbac.authorization.k8s.io", "RoleBinding", "a/b", False),
        ("example.com", "Widget", "my.widget", True),
    ],
)
def test_names(group: str, kind: str, name: str, ok: bool) -> None:
    assert (name_problem(group, kind, name) is None) is ok


def test_crd_name_must_be_plural_dot_group() -> None:
    crd = obj(
        "CustomResourceDefinition",
        "widget.example.com",
        "apiextensions.k8s.io/v1",
        spec={"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}},
    )
    _, errors = run((crd, src("crd.yaml")))
    assert "must be named 'widgets.example.com'" in errors[0].message


def test_duplicates_name_both_sources() -> None:
    manifests, errors = run(
        (obj("ConfigMap", "a"), src("one.yaml", 1)),
        (obj("ConfigMap", "a", meta={"namespace": "default"}), src("two.yaml", 9, 2)),
        (obj("ConfigMap", "a", meta={"namespace": "other"}), src("three.yaml")),  # other namespace
        (obj("Deployment", "a", "apps/v1"), src("four.yaml")),  # other kind
        (obj("Deployment", "a", "apps/v1beta2"), src("five.yaml")),  # same group+kind: duplicate
    )
    assert len(manifests) == 3
    assert [e.message for e in errors] == [
        "ConfigMap default/a is declared twice: first in one.yaml:1 (document 0), again in "
        "two.yaml:9 (document 2)",
        "Deployment default/a is declared twice: first in four.yaml:1 (document 0), again in "
        "five.yaml:1 (document 0)",
    ]
    assert errors[0].file == "two.yaml" and errors[0].reason == "Duplicate"


def test_namespace_rules_do_not_mutate_input() -> None:
    namespace = obj("Namespace", "web", meta={"namespace": "stray"})
    cm = obj("ConfigMap", "a")
    manifests, errors = run((namespace, src("a")), (cm, src("b")), namespace="web")
    assert errors == []
    assert manifests[0].ref.namespace is None and "namespace" not in manifests[0].obj["metadata"]
    assert manifests[1].obj["metadata"]["namespace"] == "web"
    assert namespace["metadata"] == {"name": "web", "namespace": "stray"}
    assert cm["metadata"] == {"name": "a"}


def test_invalid_namespace_value() -> None:
    _, errors = run((obj("ConfigMap", "a", meta={"namespace": "Bad_NS"}), src("a")))
    assert "invalid metadata.namespace" in errors[0].message


def test_every_object_namespace_is_checked_also_after_a_valid_one() -> None:
    manifests, errors = run(
        (obj("ConfigMap", "a", meta={"namespace": "ok"}), src("a", 1)),
        (obj("ConfigMap", "b", meta={"namespace": "ok"}), src("a", 2)),
        (obj("ConfigMap", "c", meta={"namespace": ["not", "a", "string"]}), src("a", 3)),
        (obj("ConfigMap", "d", meta={"namespace": 7}), src("a", 4)),
        (obj("ConfigMap", "e", meta={"namespace": "Not-OK"}), src("a", 5)),
        (obj("ConfigMap", "f"), src("a", 6)),
        namespace="ok",
    )
    assert [m.ref.name for m in manifests] == ["a", "b", "f"]
    assert [(e.line, e.ref.namespace if e.ref else None) for e in errors] == [
        (3, ["not", "a", "string"]),
        (4, 7),
        (5, "Not-OK"),
    ]
    assert all("invalid metadata.namespace" in e.message for e in errors)


def test_crd_in_same_app_sets_scope() -> None:
    crd = obj(
        "CustomResourceDefinition",
        "widgets.example.com",
        "apiextensions.k8s.io/v1",
        spec={
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
        },
    )
    scopes = crd_scopes([crd])
    assert scopes == {("example.com", "Widget"): False}
    assert is_cluster_scoped("", "Node") and not is_cluster_scoped("", "Pod")
    assert not is_cluster_scoped("example.com", "Widget", scopes)
    cluster = {("example.com", "Widget"): True}
    assert is_cluster_scoped("example.com", "Widget", cluster)


BAD_DEPLOYMENT = obj(
    "Deployment", "web", "apps/v1", spec={"replica": 1, "selector": {}, "template": {}}
)


def test_schema_validation_is_opt_in() -> None:
    manifests, errors = run((BAD_DEPLOYMENT, src("d.yaml", 3)))
    assert len(manifests) == 1 and errors == []
    manifests, errors = run((BAD_DEPLOYMENT, src("d.yaml", 3)), schema=True)
    assert manifests == []
    (error,) = errors
    assert error.message.startswith("schema (Kubernetes 1.37): ")
    assert "'replica' was unexpected" in error.message
    assert (error.file, error.line) == ("d.yaml", 3)


def test_schema_validation_passes_good_objects_and_unknown_kinds() -> None:
    good = obj("ConfigMap", "a", data={"k": "v"}, meta={"namespace": "x"})
    assert schema_problem(good) is None
    assert schema_problem(obj("Widget", "w", "example.com/v1", spec={"anything": 1})) is None
    assert "is not of type 'string'" in (schema_problem(obj("ConfigMap", "a", data={"k": 1})) or "")


def test_secret_data_must_be_base64_and_the_error_never_quotes_the_value() -> None:
    """A real API server refuses a Secret whose `data` is not base64; so does validation."""
    value = "hunter2 is not base64!"
    manifests, errors = run(
        (obj("Secret", "bad", data={"password": value, "ok": "aHVudGVyMg=="}), src("s.yaml", 4)),
        (obj("Secret", "fine", data={"a": "aHVu\ndGVyMg==\n", "b": "", "c": None}), src("t.yaml")),
        (obj("Secret", "plain", stringData={"password": value}), src("u.yaml")),
        (obj("ConfigMap", "bin", binaryData={"blob": "%%%"}), src("v.yaml", 9)),
        (obj("Secret", "shape", data=["not", "a", "map"]), src("w.yaml", 2)),
        (obj("Secret", "numbers", data={"pin": 1234, "short": "YWJjZA"}), src("x.yaml", 3)),
    )
    assert sorted(m.ref.name for m in manifests) == ["fine", "plain"]
    by_name = {e.ref.name: e for e in errors if e.ref}
    bad = by_name["bad"]
    assert (bad.file, bad.line, bad.reason) == ("s.yaml", 4, "Invalid")
    assert bad.message.startswith("data.password is not valid base64")
    assert "stringData" in bad.message
    assert value not in bad.message and "hunter2" not in bad.message
    assert "binaryData.blob is not valid base64" in by_name["bin"].message
    assert "under data" in by_name["bin"].message
    assert "must be a mapping" in by_name["shape"].message
    assert by_name["numbers"].message.startswith("data.pin, data.short are not valid base64")
