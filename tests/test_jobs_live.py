"""The live preview of a PR against a cluster the bot deployed: what this PR changes apart from
drift (issue 14.4), and which workloads will restart (issue 14.5). The base is deployed with the
bot's own apply engine to the kube emulator; then the cluster is edited by hand, as people do."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.jobs import preview as job
from bot.jobs.deploy import deploy_commit
from bot.jobs.preview import run_preview
from bot.manifests import kubectl_path
from bot.model import Origin
from tests.jobs_support import (
    Remote,
    configmap,
    intake_head,
    make_context,
    memory_forge,
    namespace,
    settings_for,
    targets_at,
)

pytestmark = pytest.mark.realcluster


def deploy(remote: Remote, tmp_path: Path, kubeconfig: str) -> None:
    result = deploy_commit(
        remote.path,
        remote.head("main"),
        settings=settings_for(tmp_path),
        kubeconfig=Path(kubeconfig),
        wait=False,
    )
    assert result.ok, result.to_json()


def test_changes_of_the_pr_are_told_apart_from_drift_the_merge_overwrites(
    tmp_path: Path, redis_url: str, kubeconfig: str, kubectl: object
) -> None:
    # forceConflicts: the deploy takes the hand-edited fields back (else it would conflict)
    config = "version: 1\napps:\n  - {name: web, path: web, namespace: web, forceConflicts: true}\n"
    files: dict[str, str | bytes | None] = {
        ".gitops.yaml": config,
        "web/ns.yaml": namespace("web"),
        "web/a.yaml": configmap("a", "1"),
        "web/b.yaml": configmap("b", "1"),
        "web/c.yaml": configmap("c", "1"),
    }
    remote = Remote(tmp_path / "remote.git", files)
    deploy(remote, tmp_path, kubeconfig)
    # by hand, before the PR: `a` (which the PR changes too) and `c` (which it does not)
    for name in ("a", "c"):
        kubectl.ok(  # type: ignore[attr-defined]
            "patch", "configmap", name, "-n", "web", "--type=merge",
            "-p", '{"data": {"value": "by hand"}}',
        )  # fmt: skip
    head = remote.commit(
        "feature", {"web/a.yaml": configmap("a", "2"), "web/b.yaml": configmap("b", "2")}
    )
    forge = memory_forge(remote)
    remote.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path, targets=targets_at(kubeconfig))
    intake_head(ctx, 1, head)
    outcome = run_preview(ctx, 1, expected_head=head)
    assert outcome.outcome == job.POSTED and outcome.result is not None
    (app,) = outcome.result.apps
    origins = {c.ref.name: c.origin for c in app.changes}
    assert origins == {"web": None, "a": Origin.BOTH, "b": Origin.PR, "c": Origin.DRIFT}
    a = next(c for c in app.changes if c.ref.name == "a")
    assert "+  value: '2'" in a.pr_diff and "-  value: '1'" in a.pr_diff
    assert "by hand" in a.drift_diff
    body = forge.comments_on(1)[0].body
    assert "Changed by this PR" in body
    assert "Already differs in the cluster; merging also overwrites it" in body


KUSTOMIZATION = """\
namespace: web
resources: [ns.yaml, deployment.yaml]
configMapGenerator:
  - name: app-config
    literals: [LOG_LEVEL={level}]
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: web:1
          envFrom: [{{configMapRef: {{name: app-config}}}}]
"""


def kustomized(level: str, replicas: int) -> dict[str, str | bytes | None]:
    return {
        "web/kustomization.yaml": KUSTOMIZATION.format(level=level),
        "web/deployment.yaml": DEPLOYMENT.format(replicas=replicas),
    }


@pytest.fixture
def deployed(tmp_path: Path, kubeconfig: str) -> Remote:
    if kubectl_path() is None:
        pytest.skip("kubectl (for kustomize) is not installed")
    files: dict[str, str | bytes | None] = {
        ".gitops.yaml": "version: 1\napps:\n  - {name: web, path: web, namespace: web}\n",
        "web/ns.yaml": namespace("web"),
        **kustomized("info", 2),
    }
    remote = Remote(tmp_path / "remote.git", files)
    deploy(remote, tmp_path, kubeconfig)
    return remote


def test_a_generator_driven_config_map_change_lists_the_deployment_that_restarts(
    deployed: Remote, tmp_path: Path, redis_url: str, kubeconfig: str
) -> None:
    head = deployed.commit("feature", kustomized("debug", 2))
    forge = memory_forge(deployed)
    deployed.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path, targets=targets_at(kubeconfig))
    intake_head(ctx, 1, head)
    outcome = run_preview(ctx, 1, expected_head=head)
    assert outcome.result is not None
    (app,) = outcome.result.apps
    assert [(r.ref.kind, r.ref.name, r.restart, r.reasons) for r in app.restarts] == [
        ("Deployment", "api", True, ("config map app-config changed",))
    ]
    assert "Deployment web/api" in forge.comments_on(1)[0].body


def test_a_change_that_restarts_nothing_lists_no_workload(
    deployed: Remote, tmp_path: Path, redis_url: str, kubeconfig: str
) -> None:
    head = deployed.commit("feature", kustomized("info", 3))  # scaling replaces no pod
    forge = memory_forge(deployed)
    deployed.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path, targets=targets_at(kubeconfig))
    intake_head(ctx, 1, head)
    outcome = run_preview(ctx, 1, expected_head=head)
    assert outcome.result is not None
    (app,) = outcome.result.apps
    assert [c.ref.name for c in app.updated] == ["api"]
    assert app.restarts == []
    assert "Will restart" not in forge.comments_on(1)[0].body
