"""The health wait names stuck pods (issue 11.10): the new pods of a rollout waiting in
ImagePullBackOff, CrashLoopBackOff, ... are named with the kubelet's reason and message in the
progress steps and the report, and a rollout whose every new pod has been stuck for the app's
``stuckPodTimeout`` ends the wait early as degraded. Against the local API server, whose
controller runs ReplicaSets and Pods (image tag ``broken``: ErrImagePull then ImagePullBackOff;
``crash``: CrashLoopBackOff); the pure judgements on hand-made objects."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.apply import DETAIL as CLI_DETAIL
from bot.cli.apply import EXIT_UNHEALTHY, ProgressBars, ProgressLines
from bot.cluster import Cluster, Target, apply_app
from bot.cluster import health as health_mod
from bot.cluster.health import PodProblem, label_selector, new_pods, pod_problem
from bot.cluster.rollout import DETAIL, RolloutPods, StuckPod, stuck_detail
from bot.model import Health, ObjectRef
from tests.test_cli_apply import commit, configmap, run_apply
from tests.test_cluster_engine import NAMESPACE, deployment, manifests, spec

STUCK = ("ImagePullBackOff", "ErrImagePull")


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    with Cluster(Target(name="test", kubeconfig=Path(kubeconfig))) as c:
        yield c


def recorder() -> tuple[list[str], Any]:
    steps: list[str] = []

    def progress(step: str, done: int, total: int) -> None:
        steps.append(step)

    return steps, progress


@pytest.mark.realcluster
@pytest.mark.parametrize(
    ("image", "reasons", "said"),
    [
        ("nginx:broken", STUCK, 'pulling image "nginx:broken"'),
        ("nginx:crash", ("CrashLoopBackOff",), "restarting failed container=main"),
    ],
    ids=["image-pull", "crash-loop"],
)
def test_a_rollout_whose_pods_are_stuck_ends_early_naming_the_pod(
    cluster: Cluster, image: str, reasons: tuple[str, ...], said: str
) -> None:
    steps, progress = recorder()
    app = spec(health_timeout=120, stuck_pod_timeout=1)
    objs = manifests(
        NAMESPACE.format(ns="web") + deployment("good", "nginx:1.27") + deployment("bad", image)
    )
    result = apply_app(cluster, app, objs, commit="c1", progress=progress)
    assert not result.errors, result.errors
    health = {h.ref.name: h for h in result.health}
    assert health["good"].health is Health.HEALTHY
    bad = health["bad"]
    # degraded by its pods, not by a deadline or the 120 s timeout
    assert bad.health is Health.DEGRADED and bad.reason in reasons, bad
    assert "every new pod (1) stuck for 1s (stuckPodTimeout): pod web/bad-" in bad.message
    assert "container main: " in bad.message and said in bad.message
    named = [s for s in steps if DETAIL in s]
    assert named and all(s.startswith("waiting for health" + DETAIL) for s in named)
    assert any("Deployment web/bad: 1 of 1 new pods stuck, pod bad-" in s for s in named), named


@pytest.mark.realcluster
def test_statefulsets_and_daemonsets_name_their_stuck_pods(cluster: Cluster) -> None:
    broken = """apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: web}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:broken"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: web}
spec:
  selector: {matchExpressions: [{key: app, operator: In, values: [agent]}]}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "agent:crash"}]}
---
"""
    app = spec(health_timeout=120, stuck_pod_timeout=1)
    result = apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + broken), commit="c")
    health = {h.ref.kind: h for h in result.health}
    assert health["StatefulSet"].health is Health.DEGRADED
    assert health["StatefulSet"].reason in STUCK
    assert "pod web/db-0, container db" in health["StatefulSet"].message
    assert health["DaemonSet"].health is Health.DEGRADED
    assert health["DaemonSet"].reason == "CrashLoopBackOff"
    assert "pod web/agent-" in health["DaemonSet"].message


@pytest.mark.realcluster
def test_a_timeout_names_the_stuck_pod_and_a_fixed_rollout_is_healthy(cluster: Cluster) -> None:
    # stuckPodTimeout longer than the wait: the wait times out, still naming the pod
    slow = spec(health_timeout=2, stuck_pod_timeout=600)
    objs = manifests(NAMESPACE.format(ns="web") + deployment("api", "nginx:broken"))
    [timed_out] = apply_app(cluster, slow, objs, commit="c1").health
    assert timed_out.health is Health.PROGRESSING and timed_out.reason == "Timeout"
    assert "pod web/api-" in timed_out.message and "nginx:broken" in timed_out.message
    # the fix rolls out: the old ReplicaSet's stuck pod is not one of the rollout's new pods
    fixed = manifests(NAMESPACE.format(ns="web") + deployment("api", "nginx:1.27"))
    [healthy] = apply_app(
        cluster, spec(health_timeout=60, stuck_pod_timeout=1), fixed, commit="c2"
    ).health
    assert healthy.health is Health.HEALTHY, healthy


@pytest.mark.realcluster
def test_apply_names_the_stuck_pod_in_progress_lines_and_report(
    tmp_path: Path, kubeconfig: Path
) -> None:
    from tests.test_cluster_owners import new_repo

    repo = new_repo(tmp_path / "repo")
    config = (
        "version: 1\napps:\n- name: web\n  path: web\n  namespace: web\n"
        "  healthTimeout: 120\n  stuckPodTimeout: 1\n"
    )
    sha = commit(
        repo,
        {
            ".gitops.yaml": config,
            "web/ns.yaml": NAMESPACE.format(ns="web"),
            "web/app.yaml": deployment("web", "registry.example/web:broken"),
            "web/cm.yaml": configmap("settings", "1"),
        },
        "a broken image",
    )
    result = run_apply(repo, kubeconfig, "--ref", sha)
    assert result.exit_code == EXIT_UNHEALTHY, result.output
    [health] = json.loads(result.stdout)["apps"][0]["health"]
    assert health["health"] == "degraded" and health["reason"] in STUCK
    assert "pod web/web-" in health["message"]
    lines = [line for line in result.stderr.splitlines() if "new pods stuck" in line]
    assert lines, result.stderr
    assert lines[0].startswith("[web] waiting for health: 0/1")
    assert "Deployment web/web: 1 of 1 new pods stuck, pod web-" in lines[0]
    assert "registry.example/web:broken" in lines[0]


def test_the_cli_splits_steps_where_the_engine_joins_them() -> None:
    assert CLI_DETAIL == DETAIL


# -- pure judgements -----------------------------------------------------------------------------


def owner(uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": "X", "name": "x", "uid": uid, "controller": True}]


def pod(name: str, owner_uid: str, *, labels: dict[str, str] | None = None, **status: Any) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "web",
            "uid": f"uid-{name}",
            "labels": labels or {},
            "ownerReferences": owner(owner_uid),
        },
        "status": status,
    }


def waiting(reason: str, message: str = "m", name: str = "main") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def test_stuck_reasons_are_read_from_init_containers_first() -> None:
    assert pod_problem(pod("p", "rs", containerStatuses=[waiting("ContainerCreating")])) is None
    assert pod_problem(pod("p", "rs")) is None
    stuck = pod(
        "p",
        "rs",
        initContainerStatuses=[waiting("CreateContainerConfigError", 'secret "db" not found', "i")],
        containerStatuses=[waiting("PodInitializing")],
    )
    assert pod_problem(stuck) == PodProblem(
        "i", "CreateContainerConfigError", 'secret "db" not found'
    )


def test_label_selectors_are_written_as_the_api_reads_them() -> None:
    assert label_selector({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    assert (
        label_selector(
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["b", "a"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "team", "operator": "Exists"},
                ],
            }
        )
        == "app=web,tier in (a,b),env notin (dev),!canary,team"
    )
    assert label_selector({}) is None and label_selector(None) is None
    assert label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]}) is None


def test_new_pods_of_each_kind() -> None:
    revision = "deployment.kubernetes.io/revision"
    dep = {
        "kind": "Deployment",
        "metadata": {"uid": "dep", "annotations": {revision: "2"}},
    }
    old_rs = {
        "metadata": {"uid": "rs1", "annotations": {revision: "1"}, "ownerReferences": owner("dep")}
    }
    new_rs = {
        "metadata": {"uid": "rs2", "annotations": {revision: "2"}, "ownerReferences": owner("dep")}
    }
    other_rs = {
        "metadata": {"uid": "rs3", "annotations": {revision: "2"}, "ownerReferences": owner("x")}
    }
    pods = [pod("old", "rs1"), pod("new", "rs2"), pod("stray", "rs3")]
    found = new_pods(dep, [old_rs, other_rs, new_rs], pods)
    assert [p["metadata"]["name"] for p in found] == ["new"]
    assert new_pods({**dep, "metadata": {"uid": "dep"}}, [new_rs], pods) == []

    hash_label = "controller-revision-hash"
    sts = {"kind": "StatefulSet", "metadata": {"uid": "sts"}, "status": {"updateRevision": "db-2"}}
    sts_pods = [
        pod("db-0", "sts", labels={hash_label: "db-1"}),
        pod("db-1", "sts", labels={hash_label: "db-2"}),
    ]
    assert [p["metadata"]["name"] for p in new_pods(sts, [], sts_pods)] == ["db-1"]

    ds = {"kind": "DaemonSet", "metadata": {"uid": "ds"}}
    revisions = [
        {"metadata": {"name": "agent-aaa", "ownerReferences": owner("ds")}, "revision": 1},
        {
            "metadata": {
                "name": "agent-bbb",
                "labels": {"controller.kubernetes.io/hash": "bbb"},
                "ownerReferences": owner("ds"),
            },
            "revision": 2,
        },
    ]
    ds_pods = [
        pod("agent-1", "ds", labels={hash_label: "aaa"}),
        pod("agent-2", "ds", labels={hash_label: "bbb"}),
    ]
    assert [p["metadata"]["name"] for p in new_pods(ds, revisions, ds_pods)] == ["agent-2"]


def test_every_new_pod_must_be_stuck_for_the_rollout_to_count_as_stuck() -> None:
    problem = PodProblem("main", "ImagePullBackOff", "Back-off pulling image")
    early, late = StuckPod("web", "a", problem, 10.0), StuckPod("web", "b", problem, 15.0)
    assert RolloutPods(new=2, stuck=(early, late)).all_stuck_for(20.0) == 5.0
    assert RolloutPods(new=3, stuck=(early, late)).all_stuck_for(20.0) == 0.0
    assert RolloutPods(new=0, stuck=()).all_stuck_for(20.0) == 0.0
    ref = ObjectRef("apps/v1", "Deployment", "web", "web")
    assert stuck_detail({ref: RolloutPods(new=3, stuck=(early, late))}) == (
        "Deployment web/web: 2 of 3 new pods stuck, pod a ImagePullBackOff: Back-off pulling image"
    )
    assert stuck_detail({ref: RolloutPods(new=1, stuck=())}) == ""
    assert {"ImagePullBackOff", "CrashLoopBackOff", "ErrImagePull"} <= health_mod.STUCK_REASONS


def test_progress_lines_print_a_detail_at_once_and_keep_the_steps_time() -> None:
    now = [0.0]
    written: list[str] = []
    lines = ProgressLines(written.append, interval=10.0, clock=lambda: now[0])
    web = lines("web")
    web("waiting for health", 0, 1)
    for second, step in (
        (2.0, "waiting for health — pod a stuck"),  # a detail: a line at once
        (3.0, "waiting for health — pod a stuck"),  # the same: too soon
        (12.5, "waiting for health — pod a stuck"),  # an interval later
        (13.0, "waiting for health — pod a running again"),
        (14.0, "waiting for health"),  # the detail is gone
        (15.0, "waiting for health"),
    ):
        now[0] = second
        web(step, 0, 1)
    assert written == [
        "[web] waiting for health: 0/1",
        "[web] waiting for health: 0/1 (2 s) — pod a stuck",
        "[web] waiting for health: 0/1 (12 s) — pod a stuck",
        "[web] waiting for health: 0/1 (13 s) — pod a running again",
        "[web] waiting for health: 0/1 (14 s)",
    ]


def test_progress_bars_print_a_detail_once_on_its_own_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bars = ProgressBars(stream)
    web = bars("web")
    web("waiting for health", 0, 1)
    web("waiting for health — Deployment web/web: pod a ImagePullBackOff", 0, 1)
    web("waiting for health — Deployment web/web: pod a ImagePullBackOff", 0, 1)
    web("waiting for health", 1, 1)
    bars.close()
    text = stream.getvalue()
    assert text.count("[web] Deployment web/web: pod a ImagePullBackOff") == 1
    assert "[web] waiting for health" in text and "1/1" in text
