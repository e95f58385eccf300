"""ApplySet interoperability with the real kubectl (1.37) on the emulator: what the bot applied
is pruned by ``kubectl apply --prune --applyset`` and the other way round, when both name the
same tooling; with the bot's own tooling, kubectl refuses to touch the set (and vice versa)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bot.cluster import Cluster, Target, apply_app
from bot.cluster.applyset import PART_OF_LABEL, ApplySet
from bot.model import Change
from tests.test_cluster_engine import by_name, cm, get, manifests, spec

pytestmark = [pytest.mark.slow, pytest.mark.realcluster]

KUBECTL = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "kubectl")
KUBECTL_TOOLING = "kubectl/v1.37.1"


def kubectl_apply(kubeconfig: Path, directory: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECTL_APPLYSET="true", HOME=str(tmp))
    return subprocess.run(
        [
            KUBECTL,
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--server-side",
            "--prune",
            "--applyset=gitops-bot.web",
            "-n",
            "web",
            "-f",
            str(directory),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    (directory / "all.yaml").write_text(text)
    return directory


@pytest.fixture
def cluster(kubeconfig: Path) -> Cluster:
    c = Cluster(Target(name="test", kubeconfig=Path(kubeconfig)))
    c.apply(
        c.resource("v1", "Namespace"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
        field_manager="setup",
    )
    return c


def test_kubectl_prunes_what_the_bot_applied_and_the_other_way_round(
    cluster: Cluster, kubeconfig: Path, tmp_path: Path
) -> None:
    app = spec()
    result = apply_app(
        cluster, app, manifests(cm("a") + cm("b")), commit="c1", tooling=KUBECTL_TOOLING
    )
    assert not result.errors, result.errors

    # kubectl applies the same set without b: kubectl prunes the object the bot applied
    proc = kubectl_apply(Path(kubeconfig), write(tmp_path / "k1", cm("a") + cm("c")), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "configmap/b pruned" in proc.stdout
    assert get(cluster, "v1", "ConfigMap", "web", "b") is None
    live_c = get(cluster, "v1", "ConfigMap", "web", "c")
    assert live_c["metadata"]["labels"][PART_OF_LABEL] == ApplySet.for_app("web", "web").id

    # the bot applies without c: the bot prunes the object kubectl added to the set
    result = apply_app(cluster, app, manifests(cm("a")), commit="c2", tooling=KUBECTL_TOOLING)
    assert not result.errors, result.errors
    assert by_name(result)["c"] is Change.DELETE
    assert get(cluster, "v1", "ConfigMap", "web", "c") is None
    cluster.close()


def test_foreign_tooling_is_refused_by_kubectl_and_by_the_bot(
    cluster: Cluster, kubeconfig: Path, tmp_path: Path
) -> None:
    apply_app(cluster, spec(), manifests(cm("a")), commit="c1")  # default tooling: gitops-bot
    proc = kubectl_apply(Path(kubeconfig), write(tmp_path / "k", cm("a")), tmp_path)
    assert proc.returncode != 0
    assert 'is managed by tooling "gitops-bot" instead of "kubectl"' in proc.stderr

    cluster.delete(cluster.resource("v1", "Secret"), "web", "gitops-bot.web")
    proc = kubectl_apply(Path(kubeconfig), write(tmp_path / "k", cm("a")), tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = apply_app(cluster, spec(), manifests(cm("a")), commit="c2")
    assert [e.reason for e in result.errors] == ["ApplySetConflict"]
    assert "managed by tooling 'kubectl/" in result.errors[0].message
    cluster.close()
