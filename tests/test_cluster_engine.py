"""The cluster engine against the Kubernetes API emulator (or a real cluster when
GITOPS_TEST_KUBECONFIG is set): live preview, ordered apply, prune, health, deployed commit,
drift, allowlists and the per-object errors a real API server answers with."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cluster import (
    Cluster,
    Target,
    Targets,
    apply_app,
    deployed_commit,
    drift_app,
    preview_app,
)
from bot.cluster.applyset import PART_OF_LABEL, ApplySet
from bot.cluster.runner import Clusters, run_preview
from bot.diff import secret_values
from bot.manifests.config import AppSpec
from bot.model import AppResult, Change, Health, Manifest, ObjectRef, Source

pytestmark = pytest.mark.realcluster

SECRET_VALUE = "hunter2-very-secret"


def spec(name: str = "web", namespace: str = "web", **kw: Any) -> AppSpec:
    base = AppSpec(name=name, path=name, namespace=namespace, health_timeout=20)
    return dataclasses.replace(base, **kw)


def manifests(text: str, app: str = "web") -> list[Manifest]:
    return [
        Manifest(app=app, obj=obj, source=Source(f"{app}/all.yaml", i))
        for i, obj in enumerate(yaml.safe_load_all(text))
        if obj
    ]


def cm(name: str, ns: str = "web", **data: str) -> str:
    body = "".join(f"\n  {k}: {v!r}" for k, v in data.items()) or " {}"
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
        f"data:{body}\n---\n"
    )


NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\n"


def deployment(name: str, image: str, *, ns: str = "web", deadline: int = 600) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: 1
  progressDeadlineSeconds: {deadline}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: {image}
---
"""


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    with Cluster(Target(name="test", kubeconfig=Path(kubeconfig)), concurrency=8) as c:
        yield c


def by_name(result: AppResult) -> dict[str, Change]:
    return {c.ref.name: c.change for c in result.changes}


def get(cluster: Cluster, api_version: str, kind: str, ns: str | None, name: str) -> Any:
    return cluster.get(cluster.resource(api_version, kind), ns, name)


def test_preview_then_apply_then_preview_shows_exactly_the_change(cluster: Cluster) -> None:
    app = spec()
    first = manifests(NAMESPACE.format(ns="web") + cm("a", x="1") + cm("b", y="2"))
    preview = preview_app(cluster, app, first)
    assert not preview.errors, preview.errors
    assert by_name(preview) == {"web": Change.CREATE, "a": Change.CREATE, "b": Change.CREATE}
    assert get(cluster, "v1", "ConfigMap", "web", "a") is None  # a preview changes nothing

    applied = apply_app(cluster, app, first, commit="c1")
    assert not applied.errors, applied.errors
    assert by_name(applied) == {"web": Change.CREATE, "a": Change.CREATE, "b": Change.CREATE}
    live = get(cluster, "v1", "ConfigMap", "web", "a")
    assert live["metadata"]["labels"][PART_OF_LABEL] == ApplySet.for_app("web", "web").id

    second = manifests(NAMESPACE.format(ns="web") + cm("a", x="changed") + cm("b", y="2"))
    again = preview_app(cluster, app, second)
    assert not again.errors, again.errors
    assert by_name(again) == {"web": Change.UNCHANGED, "a": Change.UPDATE, "b": Change.UNCHANGED}
    diff = next(c.diff for c in again.changes if c.ref.name == "a")
    assert "-  x: '1'" in diff and "+  x: changed" in diff
    # nothing only the server writes leaks into the diff
    for noise in ("managedFields", "resourceVersion", "uid", "creationTimestamp"):
        assert noise not in diff


def test_secret_values_never_appear_in_preview_or_apply(cluster: Cluster) -> None:
    app = spec()
    secret = f"""apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: web
stringData:
  password: {SECRET_VALUE}
---
"""
    objs = manifests(NAMESPACE.format(ns="web") + secret)
    outputs = [preview_app(cluster, app, objs), apply_app(cluster, app, objs, commit="c1")]
    changed = manifests(NAMESPACE.format(ns="web") + secret.replace(SECRET_VALUE, "other-value-42"))
    outputs.append(preview_app(cluster, app, changed))
    text = "\n".join(str(r.to_json()) for r in outputs)
    leaked = secret_values(objs[1].obj) + secret_values(changed[1].obj)
    assert leaked and not [v for v in leaked if v in text]
    assert "<redacted" in text
    assert outputs[2].updated  # the change is still visible, as a masked change


def test_pruned_object_previewed_as_deletion_then_deleted(cluster: Cluster) -> None:
    app = spec()
    apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + cm("a") + cm("b")), commit="c1")
    fewer = manifests(NAMESPACE.format(ns="web") + cm("a"))
    preview = preview_app(cluster, app, fewer)
    assert by_name(preview)["b"] is Change.DELETE
    result = apply_app(cluster, app, fewer, commit="c2")
    assert not result.errors, result.errors
    assert result.pruned and by_name(result)["b"] is Change.DELETE
    assert get(cluster, "v1", "ConfigMap", "web", "b") is None
    assert get(cluster, "v1", "ConfigMap", "web", "a") is not None


def test_prune_off_keeps_removed_objects(cluster: Cluster) -> None:
    app = spec(prune=False)
    apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + cm("a") + cm("b")), commit="c1")
    result = apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + cm("a")), commit="c2")
    assert not result.pruned and "b" not in by_name(result)
    assert get(cluster, "v1", "ConfigMap", "web", "b") is not None


def test_partial_failure_does_not_prune(cluster: Cluster) -> None:
    app = spec()
    apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + cm("a") + cm("b")), commit="c1")
    invalid = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n  namespace: web\n"
    broken = manifests(NAMESPACE.format(ns="web") + cm("a") + invalid)
    preview = preview_app(cluster, app, broken)  # shows what the merge does: no prune
    assert "b" not in by_name(preview)
    assert any("prune not previewed" in n for n in preview.notes)
    result = apply_app(cluster, app, broken, commit="c2")
    assert [e.reason for e in result.errors] == ["Invalid"]
    assert result.errors[0].ref is not None and result.errors[0].ref.name == "Not_Valid"
    assert not result.pruned
    assert any("prune skipped" in n for n in result.notes)
    assert get(cluster, "v1", "ConfigMap", "web", "b") is not None  # not deleted
    assert deployed_commit(cluster, "web", namespace="web").commit == "c1"  # type: ignore[union-attr]


def test_field_manager_conflict_reported_then_forced(cluster: Cluster) -> None:
    app = spec()
    apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + cm("a", x="1")), commit="c1")
    # someone else takes the field over with their own apply
    cluster.apply(
        cluster.resource("v1", "ConfigMap"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "web"},
            "data": {"x": "theirs"},
        },
        field_manager="someone-else",
        force=True,
    )
    objs = manifests(NAMESPACE.format(ns="web") + cm("a", x="ours"))
    preview = preview_app(cluster, app, objs)
    assert [e.reason for e in preview.errors] == ["Conflict"]
    assert "someone-else" in preview.errors[0].message
    assert "forceConflicts: true" in preview.errors[0].message
    result = apply_app(cluster, app, objs, commit="c2")
    assert [e.reason for e in result.errors] == ["Conflict"]
    assert get(cluster, "v1", "ConfigMap", "web", "a")["data"]["x"] == "theirs"
    forced = apply_app(cluster, spec(force_conflicts=True), objs, commit="c2")
    assert not forced.errors, forced.errors
    assert get(cluster, "v1", "ConfigMap", "web", "a")["data"]["x"] == "ours"


def test_forbidden_apply_is_reported_per_object(kube_emulator: Any, tmp_path: Path) -> None:
    admin = kube_emulator.write_kubeconfig(tmp_path / "admin")
    with Cluster(Target(name="admin", kubeconfig=Path(admin))) as c:
        for ns in ("web", "db"):
            c.apply(
                c.resource("v1", "Namespace"),
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                field_manager="setup",
            )
    limited = kube_emulator.write_kubeconfig(tmp_path / "web", user="namespace-web")
    with Cluster(Target(name="web-only", kubeconfig=Path(limited))) as c:
        objs = manifests(cm("ok") + cm("elsewhere", ns="db"))
        preview = preview_app(c, spec(), objs)
        assert [(e.reason, e.ref.name if e.ref else None) for e in preview.errors] == [
            ("Forbidden", "elsewhere")
        ]
        assert by_name(preview) == {"ok": Change.CREATE}
        result = apply_app(c, spec(), objs, commit="c1")
        assert [e.reason for e in result.errors] == ["Forbidden"]
        assert not result.errors[0].transient
        assert by_name(result) == {"ok": Change.CREATE}


def test_immutable_field_error_and_annotated_recreate(cluster: Cluster) -> None:
    app = spec()
    base = NAMESPACE.format(ns="web")
    apply_app(cluster, app, manifests(base + deployment("api", "nginx:1")), commit="c1", wait=False)
    changed = deployment("api", "nginx:1").replace("{app: api}", "{app: api2}")
    result = apply_app(cluster, app, manifests(base + changed), commit="c2", wait=False)
    assert [e.reason for e in result.errors] == ["Invalid"]
    assert "immutable" in result.errors[0].message
    assert "gitops-bot.io/recreate-on-immutable" in result.errors[0].message
    annotated = changed.replace(
        "  namespace: web\nspec:",
        "  namespace: web\n  annotations:\n    gitops-bot.io/recreate-on-immutable: 'true'\nspec:",
    )
    preview = preview_app(cluster, app, manifests(base + changed))
    assert [e.reason for e in preview.errors] == ["Invalid"]
    assert "immutable" in preview.errors[0].message
    preview = preview_app(cluster, app, manifests(base + annotated))
    assert not preview.errors, preview.errors
    assert by_name(preview)["api"] is Change.UPDATE
    assert any("will be deleted and re-created" in n for n in preview.notes)
    result = apply_app(cluster, app, manifests(base + annotated), commit="c3", wait=False)
    assert not result.errors, result.errors
    assert any("re-created" in n for n in result.notes)
    live = get(cluster, "apps/v1", "Deployment", "web", "api")
    assert live["spec"]["selector"]["matchLabels"] == {"app": "api2"}


def test_rollout_healthy_and_broken_rollout_degraded(cluster: Cluster) -> None:
    app = spec(health_timeout=30)
    objs = manifests(
        NAMESPACE.format(ns="web")
        + deployment("good", "nginx:1.27")
        + deployment("bad", "nginx:broken", deadline=1)
    )
    result = apply_app(cluster, app, objs, commit="c1")
    assert not result.errors, result.errors
    health = {h.ref.name: h for h in result.health}
    assert health["good"].health is Health.HEALTHY
    assert health["bad"].health is Health.DEGRADED
    assert health["bad"].reason == "ProgressDeadlineExceeded"
    assert not result.ok


def test_health_wait_times_out_as_progressing(cluster: Cluster) -> None:
    app = spec(health_timeout=0)
    objs = manifests(NAMESPACE.format(ns="web") + deployment("slow", "nginx:1.27"))
    result = apply_app(cluster, app, objs, commit="c1")
    [only] = result.health
    assert only.health is Health.PROGRESSING and only.reason == "Timeout"


CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
---
"""
WIDGET = """apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: web
spec:
  size: 3
---
"""


def test_crd_and_instance_in_one_app(cluster: Cluster) -> None:
    app = spec()
    objs = manifests(NAMESPACE.format(ns="web") + CRD + WIDGET)
    preview = preview_app(cluster, app, objs)
    assert not preview.errors, preview.errors
    assert by_name(preview)["w1"] is Change.CREATE
    assert any("CustomResourceDefinition is created by this change" in n for n in preview.notes)
    result = apply_app(cluster, app, objs, commit="c1")
    assert not result.errors, result.errors
    assert by_name(result) == {
        "web": Change.CREATE,
        "widgets.example.com": Change.CREATE,
        "w1": Change.CREATE,
    }
    assert get(cluster, "example.com/v1", "Widget", "web", "w1")["spec"] == {"size": 3}
    again = preview_app(cluster, app, objs)
    assert not again.errors and not again.has_changes


def test_namespace_created_by_the_change_is_previewed(cluster: Cluster) -> None:
    preview = preview_app(
        cluster, spec(namespace="fresh"), manifests(NAMESPACE.format(ns="fresh") + cm("a", "fresh"))
    )
    assert not preview.errors, preview.errors
    assert by_name(preview) == {"fresh": Change.CREATE, "a": Change.CREATE}
    assert any("namespace 'fresh' is created by this change" in n for n in preview.notes)


def test_unknown_kind_is_an_error_for_that_object_only(cluster: Cluster) -> None:
    bogus = (
        "apiVersion: nope.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n  namespace: web\n"
    )
    result = preview_app(cluster, spec(), manifests(NAMESPACE.format(ns="web") + cm("a") + bogus))
    assert [e.ref.kind for e in result.errors if e.ref] == ["Gadget"]
    assert 'no matches for kind "Gadget"' in result.errors[0].message
    assert set(by_name(result)) == {"web", "a"}


def test_allowlist_refuses_objects_in_preview_and_apply(kubeconfig: Path) -> None:
    target = Target(
        name="tenant",
        kubeconfig=Path(kubeconfig),
        namespaces=frozenset({"web"}),
        cluster_scoped=False,
    )
    role = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n---\n"
    )
    objs = manifests(NAMESPACE.format(ns="web") + cm("a") + cm("b", ns="db") + role)
    with Cluster(target) as c:
        for result in (preview_app(c, spec(), objs), apply_app(c, spec(), objs, commit="c1")):
            refused = {e.ref.name: e.reason for e in result.errors if e.ref}
            assert refused == {"b": "NotAllowed", "r": "NotAllowed"}
            assert set(by_name(result)) == {"web", "a"}
        assert get(c, "v1", "ConfigMap", "db", "b") is None


@dataclasses.dataclass
class Rendered:
    spec: AppSpec
    manifests: list[Manifest]
    errors: list[Any] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def test_unknown_target_is_an_error_never_a_fallback(kubeconfig: Path) -> None:
    targets = Targets({"default": Target(name="default", kubeconfig=Path(kubeconfig))})
    apps = [
        Rendered(spec(target="production"), manifests(cm("a"))),
        Rendered(spec(name="ok", target="default"), manifests(NAMESPACE.format(ns="web"), "ok")),
    ]
    with Clusters(targets) as clusters:
        run = run_preview(apps, clusters)
    bad, good = run.apps
    assert bad.target == "production" and not bad.changes
    assert [e.reason for e in bad.errors] == ["UnknownTarget"]
    assert "unknown target 'production'" in bad.errors[0].message
    assert not good.errors


def test_older_commit_is_refused_and_deployed_commit_recorded(cluster: Cluster) -> None:
    app = spec()
    objs = manifests(NAMESPACE.format(ns="web") + cm("a", v="2"))
    assert deployed_commit(cluster, "web", namespace="web") is None
    apply_app(cluster, app, objs, commit="new")
    recorded = deployed_commit(cluster, "web", namespace="web")
    assert recorded is not None and recorded.commit == "new" and recorded.applied_at

    history = {("old", "new")}
    older = manifests(NAMESPACE.format(ns="web") + cm("a", v="1"))
    result = apply_app(
        cluster, app, older, commit="old", is_ancestor=lambda a, b: (a, b) in history
    )
    assert [e.reason for e in result.errors] == ["OlderCommit"]
    assert "older than new" in result.errors[0].message
    assert get(cluster, "v1", "ConfigMap", "web", "a")["data"] == {"v": "2"}
    # a dry run shows what the real run would do: the same refusal, not a diff
    dry = apply_app(
        cluster, app, older, commit="old", dry_run=True, is_ancestor=lambda a, b: (a, b) in history
    )
    assert [e.reason for e in dry.errors] == ["OlderCommit"] and not dry.changes
    # the same commit again, or a newer one, is fine
    again = apply_app(cluster, app, objs, commit="new", is_ancestor=lambda a, b: (a, b) in history)
    assert not again.errors


def test_drift_after_hand_edit_and_hand_delete(cluster: Cluster) -> None:
    app = spec()
    objs = manifests(NAMESPACE.format(ns="web") + cm("edited", x="1") + cm("deleted") + cm("same"))
    apply_app(cluster, app, objs, commit="c1")
    cmr = cluster.resource("v1", "ConfigMap")
    # kubectl edit / kubectl patch: an update by another manager
    cluster.request(
        "PATCH",
        cmr.path("web", "edited"),
        query=[("fieldManager", "kubectl-edit")],
        body={"data": {"x": "by-hand"}},
        content_type="application/merge-patch+json",
    )
    cluster.delete(cmr, "web", "deleted")
    drift = drift_app(cluster, app, objs, commit="c1")
    assert not drift.errors, drift.errors
    changes = by_name(drift)
    assert changes["edited"] is Change.UPDATE and changes["deleted"] is Change.CREATE
    assert changes["same"] is Change.UNCHANGED
    diff = next(c.diff for c in drift.changes if c.ref.name == "edited")
    assert "-  x: by-hand" in diff and "+  x: '1'" in diff


def test_discovery_runs_once_per_job(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = cluster._discover

    def counting() -> Any:
        calls.append(1)
        return original()

    monkeypatch.setattr(cluster, "_discover", counting)
    objs = manifests(NAMESPACE.format(ns="web") + "".join(cm(f"c{i}") for i in range(30)))
    preview_app(cluster, spec(), objs)
    apply_app(cluster, spec(), objs, commit="c1")
    preview_app(cluster, spec(), objs)
    assert len(calls) == 1


def test_objects_without_namespace_go_to_the_apps_namespace(cluster: Cluster) -> None:
    plain = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata: {a: b}\n"
    result = apply_app(cluster, spec(), manifests(NAMESPACE.format(ns="web") + plain), commit="c1")
    assert not result.errors, result.errors
    assert [c.ref for c in result.changes if c.ref.name == "plain"] == [
        ObjectRef("v1", "ConfigMap", "web", "plain")
    ]


def test_allowlist_also_guards_pruning(kubeconfig: Path) -> None:
    objs = manifests(NAMESPACE.format(ns="web") + cm("a") + cm("b", ns="db"))
    with Cluster(Target(name="admin", kubeconfig=Path(kubeconfig))) as c:
        c.apply(
            c.resource("v1", "Namespace"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}},
            field_manager="setup",
        )
        assert not apply_app(c, spec(), objs, commit="c1").errors
    tenant = Target(name="tenant", kubeconfig=Path(kubeconfig), namespaces=frozenset({"web"}))
    with Cluster(tenant) as c:
        fewer = manifests(NAMESPACE.format(ns="web") + cm("a"))
        for result in (preview_app(c, spec(), fewer), apply_app(c, spec(), fewer, commit="c2")):
            assert [(e.reason, e.ref.name if e.ref else None) for e in result.errors] == [
                ("NotAllowed", "b")
            ]
            assert "b" not in by_name(result)
        assert get(c, "v1", "ConfigMap", "db", "b") is not None


WORKLOADS = """apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: web}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: web}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "agent:1"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: web}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "migrate:1"}]
---
"""


def test_statefulset_daemonset_and_job_are_waited_for(cluster: Cluster) -> None:
    result = apply_app(
        cluster,
        spec(health_timeout=30),
        manifests(NAMESPACE.format(ns="web") + WORKLOADS),
        commit="c1",
    )
    assert not result.errors, result.errors
    health = {h.ref.kind: h.health for h in result.health}
    assert health == {
        "StatefulSet": Health.HEALTHY,
        "DaemonSet": Health.HEALTHY,
        "Job": Health.HEALTHY,
    }, result.health


def test_instance_of_a_failed_crd_is_reported_not_silently_skipped(cluster: Cluster) -> None:
    broken_crd = CRD.replace("scope: Namespaced", "scope: Sideways")
    result = apply_app(
        cluster, spec(), manifests(NAMESPACE.format(ns="web") + broken_crd + WIDGET), commit="c1"
    )
    failed = {e.ref.kind: e for e in result.errors if e.ref}
    assert set(failed) == {"CustomResourceDefinition", "Widget"}
    assert failed["CustomResourceDefinition"].reason == "Invalid"
    assert "did not become available" in failed["Widget"].message
    assert not result.pruned


def test_app_with_render_errors_is_not_deployed_and_previews_no_prune(
    cluster: Cluster, kubeconfig: Path
) -> None:
    from bot.cluster.runner import run_apply
    from bot.model import ObjectError

    apply_app(
        cluster, spec(), manifests(NAMESPACE.format(ns="web") + cm("a") + cm("b")), commit="c1"
    )
    broken = Rendered(
        spec(),
        manifests(NAMESPACE.format(ns="web") + cm("a", x="2")),
        errors=[ObjectError("web/b.yaml: not valid YAML", file="web/b.yaml", reason="RenderError")],
    )
    targets = Targets({"default": Target(name="default", kubeconfig=Path(kubeconfig))})
    with Clusters(targets) as clusters:
        preview = run_preview([broken], clusters).apps[0]
        deploy = run_apply([broken], clusters, commit="c2").apps[0]
    # the preview shows what the deploy does with such an app: nothing
    assert not preview.changes and [e.reason for e in preview.errors] == ["RenderError"]
    assert any("does not render cleanly" in n for n in preview.notes)
    assert not deploy.changes and [e.reason for e in deploy.errors] == ["RenderError"]
    assert get(cluster, "v1", "ConfigMap", "web", "b") is not None
    assert get(cluster, "v1", "ConfigMap", "web", "a")["data"] == {}


def test_unreachable_cluster_is_one_transient_app_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setattr("bot.cluster.client.BACKOFF", 0.01)  # retried, but quickly

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    objs = manifests("".join(cm(f"c{i}") for i in range(50)))
    with Cluster(Target(name="down", kubeconfig=kubeconfig)) as c:
        for result in (preview_app(c, spec(), objs), apply_app(c, spec(), objs, commit="c1")):
            [error] = result.errors
            assert error.transient and "cannot read the API of target 'down'" in error.message
            assert not result.changes


def test_health_of_many_deployments_is_read_in_bulk(cluster: Cluster) -> None:
    objs = manifests(
        NAMESPACE.format(ns="web")
        + "".join(deployment(f"d{i}", "nginx:1.27") for i in range(15))
        + deployment("bad", "nginx:broken", deadline=1)
    )
    result = apply_app(cluster, spec(health_timeout=30), objs, commit="c1")
    assert not result.errors, result.errors
    health = {h.ref.name: h.health for h in result.health}
    assert len(health) == 16 and health.pop("bad") is Health.DEGRADED
    assert set(health.values()) == {Health.HEALTHY}
