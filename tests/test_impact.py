"""Tests for bot.impact: the PR's own changes apart from drift, and which workloads restart.

Origins are classified from diffs made exactly as the engines make them (``diff_app`` for the
offline side, ``object_diff`` with the live labels for the cluster side) over three states of
each object. Restarts are computed on objects rendered by the real Kustomize (``kubectl
kustomize``) where generators are involved, since the point is Kustomize's own hash names.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bot.diff import diff_app, object_diff
from bot.impact import (
    classify_origins,
    config_references,
    objects_needing_base_dry_run,
    workload_restarts,
)
from bot.manifests.config import AppSpec
from bot.manifests.render import kubectl_path, render_app
from bot.model import (
    AppResult,
    Change,
    Manifest,
    Obj,
    ObjectChange,
    ObjectError,
    ObjectRef,
    Origin,
    Restart,
    Source,
)
from bot.report import render_text

# -- three states of a small app ----------------------------------------------------------------


def deployment(name: str = "api", *, image: str = "web:1", replicas: int = 2, **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
            **spec,
        },
    }


def config_map(name: str, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "web"},
        "data": dict(data),
    }


def manifests(*objs: Obj) -> list[Manifest]:
    return [
        Manifest(app="web", obj=o, source=Source(f"web/{o['metadata']['name']}.yaml")) for o in objs
    ]


def live_diff(
    live: list[Obj], desired: list[Obj], labels: tuple[str, str] = ("live", "desired")
) -> AppResult:
    """What the live preview reports: the cluster's objects against the desired ones (the
    objects here carry no server defaults, so they stand for their dry-run answers)."""
    result = AppResult(name="web", target="production")
    live_index = {ObjectRef.of(o).key: o for o in live}
    desired_index = {ObjectRef.of(o).key: o for o in desired}
    for key, obj in desired_index.items():
        ref = ObjectRef.of(obj)
        diff = object_diff(live_index.get(key), obj, ref=ref, labels=labels)
        kind = (
            Change.CREATE if key not in live_index else Change.UPDATE if diff else Change.UNCHANGED
        )
        result.changes.append(ObjectChange(ref=ref, change=kind, diff=diff))
    for key, obj in live_index.items():
        if key not in desired_index:
            ref = ObjectRef.of(obj)
            result.changes.append(ObjectChange(ref, Change.DELETE, object_diff(obj, None, ref=ref)))
    return result


def classify(
    base: list[Obj], merge: list[Obj], live: list[Obj], *, dry_run_base: bool = True
) -> AppResult:
    """Run the classification as a preview job would: offline diff, live diff, and the live
    diff of the base only for the objects the classifier asks about."""
    pr = diff_app(app="web", target="production", old=manifests(*base), new=manifests(*merge))
    live_result = live_diff(live, merge)
    needed = {r.key for r in objects_needing_base_dry_run(pr=pr, live=live_result)}
    base_live = None
    if dry_run_base:
        wanted = [o for o in base if ObjectRef.of(o).key in needed]
        cluster = [o for o in live if ObjectRef.of(o).key in needed]
        base_live = live_diff(cluster, wanted, labels=("live", "base"))
    return classify_origins(pr=pr, live=live_result, base_live=base_live)


def origins(app: AppResult) -> dict[str, tuple[str, str | None]]:
    return {c.ref.name: (c.change.value, c.origin.value if c.origin else None) for c in app.changes}


def test_an_object_edited_by_hand_before_the_pr_is_drift_not_the_prs_doing() -> None:
    base = [deployment("api", image="web:1"), deployment("worker", image="worker:1")]
    merge = [deployment("api", image="web:2"), deployment("worker", image="worker:1")]
    # someone scaled the worker by hand before the PR was opened
    live = [deployment("api", image="web:1"), deployment("worker", image="worker:1", replicas=9)]
    result = classify(base, merge, live)
    assert origins(result) == {"api": ("updated", "pr"), "worker": ("updated", "drift")}
    api, worker = result.changes
    assert "-      - image: web:1" in api.pr_diff and "+      - image: web:2" in api.pr_diff
    assert api.drift_diff == ""
    assert worker.pr_diff == ""
    assert "-  replicas: 9" in worker.drift_diff and "+  replicas: 2" in worker.drift_diff
    text = render_text(_run(result))
    assert "worker  [drift: already differs in the cluster]" in text


def test_an_object_both_the_pr_and_a_hand_edit_changed_gets_both_diffs() -> None:
    base = [deployment("api", image="web:1")]
    merge = [deployment("api", image="web:2")]
    live = [deployment("api", image="web:1", replicas=9)]
    result = classify(base, merge, live)
    (api,) = result.changes
    assert api.origin is Origin.BOTH
    # what the PR does, and only that
    assert "+      - image: web:2" in api.pr_diff and "replicas" not in api.pr_diff
    # what the cluster has that the base does not declare, and only that
    assert "-  replicas: 9" in api.drift_diff and "image" not in api.drift_diff
    assert api.drift_diff.startswith("--- live/Deployment web/api\n+++ base/Deployment web/api\n")
    # and what merging does to the cluster: both
    assert "replicas" in api.diff and "image" in api.diff


def test_without_the_base_dry_run_the_two_diffs_decide_and_never_hide_drift() -> None:
    base = [deployment("api", image="web:1"), deployment("db", image="db:1")]
    merge = [deployment("api", image="web:2"), deployment("db", image="db:2")]
    live = [deployment("api", image="web:1"), deployment("db", image="db:1", replicas=9)]
    result = classify(base, merge, live, dry_run_base=False)
    assert origins(result) == {"api": ("updated", "pr"), "db": ("updated", "both")}
    db = next(c for c in result.changes if c.ref.name == "db")
    assert db.drift_diff == db.diff  # the whole change merging makes, drift included


def test_the_pr_change_already_in_the_cluster_and_a_deletion_already_gone() -> None:
    base = [deployment("api", image="web:1"), config_map("old", a="1")]
    merge = [deployment("api", image="web:2")]
    live = [deployment("api", image="web:2")]  # applied by hand; "old" deleted by hand
    result = classify(base, merge, live)
    assert origins(result) == {"api": ("unchanged", "pr"), "old": ("unchanged", "pr")}
    assert all(c.pr_diff for c in result.changes)
    assert not result.has_changes


def test_creations_and_deletions_by_the_pr() -> None:
    base = [config_map("gone", a="1")]
    merge = [config_map("new", a="1"), config_map("taken", a="1")]
    # "taken" was created by hand before the PR declared it: merging takes it over
    live = [config_map("gone", a="1"), config_map("taken", a="2")]
    base.append(config_map("unrelated", a="1"))
    merge.append(config_map("unrelated", a="1"))
    live.append(config_map("unrelated", a="1"))
    result = classify(base, merge, live)
    assert origins(result) == {
        "new": ("created", "pr"),
        "taken": ("updated", "both"),
        "unrelated": ("unchanged", None),
        "gone": ("deleted", "pr"),
    }


def test_an_app_whose_live_preview_failed_claims_nothing_is_already_live() -> None:
    pr = diff_app(
        app="web",
        target="production",
        old=manifests(config_map("a", k="1"), config_map("b", k="1")),
        new=manifests(config_map("a", k="2")),
    )
    live = AppResult(
        name="web", target="production", errors=[ObjectError("connection refused", transient=True)]
    )
    result = classify_origins(pr=pr, live=live)
    assert result.changes == [] and result.errors == live.errors


def test_only_objects_both_sides_update_need_a_base_dry_run() -> None:
    base = [deployment("api"), deployment("worker"), config_map("c", a="1")]
    merge = [deployment("api", image="web:2"), deployment("worker"), config_map("c", a="2")]
    live = [deployment("api"), deployment("worker", replicas=5), config_map("c", a="2")]
    pr = diff_app(app="web", target="production", old=manifests(*base), new=manifests(*merge))
    refs = objects_needing_base_dry_run(pr=pr, live=live_diff(live, merge))
    assert [r.name for r in refs] == ["api"]


def test_classification_does_not_modify_its_inputs() -> None:
    base, merge = [deployment(image="web:1")], [deployment(image="web:2")]
    pr = diff_app(app="web", target="production", old=manifests(*base), new=manifests(*merge))
    live = live_diff(base, merge)
    before = (copy.deepcopy(pr), copy.deepcopy(live))
    classify_origins(pr=pr, live=live)
    assert (pr, live) == before


def _run(app: AppResult) -> Any:
    from bot.model import Mode, RunResult

    return RunResult(mode=Mode.LIVE, apps=[app])


# -- which workloads restart ----------------------------------------------------------------------


def restarts(before: list[Obj], after: list[Obj]) -> list[tuple[str, bool, tuple[str, ...]]]:
    return [(str(r.ref), r.restart, r.reasons) for r in workload_restarts(before, after)]


def with_template(obj: Obj, **pod_spec: Any) -> Obj:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"].update(pod_spec)
    return out


def test_a_direct_template_change_restarts_and_names_the_fields() -> None:
    before = [deployment("api", image="web:1")]
    after = [deployment("api", image="web:2")]
    assert restarts(before, after) == [
        ("Deployment web/api", True, ("pod template changed: spec.containers[api].image",))
    ]


def test_a_change_that_restarts_nothing() -> None:
    before = [
        deployment("api", replicas=2),
        config_map("unused", a="1"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": "web"}},
    ]
    after = [
        deployment("api", replicas=5),  # scaling replaces no pod
        config_map("unused", a="2"),  # read by nothing
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": "web"},
            "spec": {"ports": [{"port": 80}]},
        },
        deployment("new-one"),  # a creation starts pods; it does not restart any
    ]
    assert workload_restarts(before, after) == []


def test_references_cover_volumes_projected_env_from_and_value_from() -> None:
    template = {
        "spec": {
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-volume"}},
                {"name": "b", "secret": {"secretName": "secret-volume"}},
                {
                    "name": "c",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "cm-projected"}},
                            {"secret": {"name": "secret-projected"}},
                            {"serviceAccountToken": {"path": "token"}},
                        ]
                    },
                },
            ],
            "initContainers": [
                {"name": "init", "envFrom": [{"secretRef": {"name": "secret-init"}}]}
            ],
            "containers": [
                {
                    "name": "app",
                    "envFrom": [{"configMapRef": {"name": "cm-env-from"}}],
                    "env": [
                        {
                            "name": "A",
                            "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "a"}},
                        },
                        {
                            "name": "B",
                            "valueFrom": {"secretKeyRef": {"name": "secret-key", "key": "b"}},
                        },
                        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "D", "value": "plain"},
                    ],
                }
            ],
        }
    }
    assert config_references(template) == {
        ("ConfigMap", "cm-volume"),
        ("Secret", "secret-volume"),
        ("ConfigMap", "cm-projected"),
        ("Secret", "secret-projected"),
        ("Secret", "secret-init"),
        ("ConfigMap", "cm-env-from"),
        ("ConfigMap", "cm-key"),
        ("Secret", "secret-key"),
    }


def test_in_place_config_changes_restart_nothing_and_say_so() -> None:
    mounts = {"volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]}
    before = [with_template(deployment("api"), **mounts), config_map("settings", level="info")]
    after = [with_template(deployment("api"), **mounts), config_map("settings", level="debug")]
    ((ref, restart, reasons),) = restarts(before, after)
    assert (ref, restart) == ("Deployment web/api", False)
    assert reasons[0].startswith("config map settings changed in place: no restart")


def test_a_changed_secret_is_named_and_its_value_never_appears() -> None:
    def api(image: str) -> Obj:
        container = {"name": "api", "image": image, "envFrom": [{"secretRef": {"name": "db"}}]}
        return with_template(deployment("api"), containers=[container])

    def secret(password: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "web"},
            "data": {"password": base64.b64encode(password.encode()).decode()},
        }

    before = [api("web:1"), secret("hunter2-old")]
    after = [api("web:2"), secret("hunter2-new")]
    (restart,) = workload_restarts(before, after)
    assert restart.restart
    assert restart.reasons == (
        "pod template changed: spec.containers[api].image",
        "secret db changed",
    )
    rendered = repr(restart) + render_text(_run(AppResult("web", "p", restarts=[restart])))
    for value in ("hunter2", base64.b64encode(b"hunter2-old").decode(), "aHVudGVy"):
        assert value not in rendered
    # the same values, written as stringData: no change, no restart
    same = secret("hunter2-old")
    same_as_string: Obj = {**same, "stringData": {"password": "hunter2-old"}}
    del same_as_string["data"]
    assert workload_restarts([*before[:1], same], [*before[:1], same_as_string]) == []


def test_update_strategies_that_hold_the_restart_back() -> None:
    def stateful(image: str, strategy: str) -> Obj:
        obj = deployment("db", image=image)
        obj["kind"] = "StatefulSet"
        obj["spec"]["updateStrategy"] = {"type": strategy}
        return obj

    assert restarts([stateful("pg:15", "OnDelete")], [stateful("pg:16", "OnDelete")]) == [
        (
            "StatefulSet web/db",
            False,
            (
                "pod template changed: spec.containers[db].image",
                "update strategy OnDelete: pods are replaced only when deleted",
            ),
        )
    ]
    assert restarts([stateful("pg:15", "RollingUpdate")], [stateful("pg:16", "RollingUpdate")])[0][
        1
    ]
    paused = [deployment(image="web:1", paused=True)], [deployment(image="web:2", paused=True)]
    assert restarts(*paused)[0][1] is False
    recreate = {"strategy": {"type": "Recreate"}}
    ((_, restart, reasons),) = restarts(
        [deployment(image="web:1", **recreate)], [deployment(image="web:2", **recreate)]
    )
    assert restart and reasons[-1].startswith("strategy Recreate")


def test_helm_checksum_annotations_read_as_template_changes() -> None:
    before, after = deployment(), deployment()
    before["spec"]["template"]["metadata"]["annotations"] = {"checksum/config": "abc"}
    after["spec"]["template"]["metadata"]["annotations"] = {"checksum/config": "def"}
    assert restarts([before], [after]) == [
        (
            "Deployment web/api",
            True,
            ("pod template changed: metadata.annotations[checksum/config]",),
        )
    ]


def test_many_changed_fields_are_counted_beyond_three() -> None:
    before = deployment()
    after = copy.deepcopy(before)
    container = after["spec"]["template"]["spec"]["containers"][0]
    container.update(image="x:2", command=["run"], args=["--fast"], workingDir="/srv", tty=True)
    ((_, _, (reason,)),) = restarts([before], [after])
    assert reason == (
        "pod template changed: spec.containers[api].args, spec.containers[api].command, "
        "spec.containers[api].image and 2 more"
    )


# -- with Kustomize's own generator names -----------------------------------------------------


KUSTOMIZATION = """\
namespace: web
resources: [deployment.yaml, worker.yaml]
configMapGenerator:
  - name: app-config
    literals: [LOG_LEVEL={level}]
secretGenerator:
  - name: api-token
    literals: [TOKEN={token}]
"""
API = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: {replicas}
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: web:1
          envFrom: [{configMapRef: {name: app-config}}]
          env:
            - name: TOKEN
              valueFrom: {secretKeyRef: {name: api-token, key: TOKEN}}
"""
WORKER = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers: [{name: worker, image: worker:1}]
"""


def kustomize(tmp_path: Path, name: str, *, level: str, token: str, replicas: int = 2) -> list[Obj]:
    if kubectl_path() is None:
        pytest.skip("kubectl (for kustomize) is not installed")
    root = tmp_path / name
    (root / "web").mkdir(parents=True)
    (root / "web/kustomization.yaml").write_text(KUSTOMIZATION.format(level=level, token=token))
    (root / "web/deployment.yaml").write_text(API.replace("{replicas}", str(replicas)))
    (root / "web/worker.yaml").write_text(WORKER)
    app = render_app(root, AppSpec(name="web", path="web", namespace="web"))
    assert app.errors == [], app.errors
    return [m.obj for m in app.manifests]


def test_a_generator_driven_config_map_change_restarts_its_readers(tmp_path: Path) -> None:
    before = kustomize(tmp_path, "base", level="info", token="t0k3n-value")
    after = kustomize(tmp_path, "head", level="debug", token="t0k3n-value")
    names = {o["kind"]: o["metadata"]["name"] for o in after if o["kind"] != "Deployment"}
    assert names["ConfigMap"].startswith("app-config-")  # Kustomize's hash suffix
    assert {o["metadata"]["name"] for o in before} != {o["metadata"]["name"] for o in after}
    assert workload_restarts(before, after) == [
        Restart(
            ref=ObjectRef("apps/v1", "Deployment", "web", "api"),
            reasons=("config map app-config changed",),
        )
    ]
    # the worker reads neither generator: it restarts for nothing
    text = render_text(
        _run(AppResult("web", "production", restarts=workload_restarts(before, after)))
    )
    assert "will restart: Deployment web/api (config map app-config changed)" in text


def test_a_generated_secret_change_is_named_never_shown(tmp_path: Path) -> None:
    before = kustomize(tmp_path, "base", level="info", token="first-t0k3n")
    after = kustomize(tmp_path, "head", level="info", token="second-t0k3n")
    (restart,) = workload_restarts(before, after)
    assert restart.reasons == ("secret api-token changed",)
    assert "t0k3n" not in repr(restart)


def test_scaling_a_kustomize_app_restarts_nothing(tmp_path: Path) -> None:
    before = kustomize(tmp_path, "base", level="info", token="t", replicas=2)
    after = kustomize(tmp_path, "head", level="info", token="t", replicas=4)
    assert workload_restarts(before, after) == []


def test_the_offline_preview_lists_the_restarts_a_generator_change_causes(tmp_path: Path) -> None:
    """What `gitops-bot preview` prints for a Kustomize app whose generated ConfigMap changes."""
    from click.testing import CliRunner

    from bot.cli import main
    from tests.fixtures.repos.builder import commit, make_repo

    if kubectl_path() is None:
        pytest.skip("kubectl (for kustomize) is not installed")
    repo = make_repo(tmp_path)
    files = {
        ".gitops.yaml": "version: 1\napps:\n  - {name: web, path: web, namespace: web}\n",
        "web/kustomization.yaml": KUSTOMIZATION.format(level="info", token="t"),
        "web/deployment.yaml": API.replace("{replicas}", "2"),
        "web/worker.yaml": WORKER,
    }
    commit(repo, files)
    commit(repo, {"web/kustomization.yaml": KUSTOMIZATION.format(level="debug", token="t")})
    run = CliRunner().invoke(main, ["preview", "--repo", str(repo), "--base", "HEAD~1"])
    assert run.exit_code == 0, run.output
    assert "  will restart: Deployment web/api (config map app-config changed)\n" in run.stdout
    assert "worker" not in run.stdout.split("will restart")[1].split("\n")[0]
    data = CliRunner().invoke(
        main, ["preview", "--repo", str(repo), "--base", "HEAD~1", "--format", "json"]
    )
    (app,) = [a for a in json.loads(data.stdout)["apps"]]
    assert app["restarts"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": "web",
            "name": "api",
            "restart": True,
            "reasons": ["config map app-config changed"],
        }
    ]
