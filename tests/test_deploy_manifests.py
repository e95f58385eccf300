"""The bot's own deployment (deploy/base) renders, is hardened, and a cluster accepts it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable)) or "kubectl"


def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy" / "base")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (obj["metadata"]["name"], obj["spec"]["template"]["spec"])
        for obj in rendered()
        if obj["kind"] in ("Deployment", "StatefulSet")
    ]


def test_every_process_of_the_procfile_is_deployed() -> None:
    names = {name for name, _ in pod_specs()}
    assert {"gitops-bot-web", "gitops-bot-worker", "gitops-bot-beat", "gitops-bot-redis"} <= names


@pytest.mark.parametrize(("name", "spec"), pod_specs())
def test_containers_are_locked_down(name: str, spec: dict[str, Any]) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert "memory" in container["resources"]["limits"], name


def test_only_the_worker_gets_a_cluster_token() -> None:
    for name, spec in pod_specs():
        if name == "gitops-bot-worker":
            assert spec["serviceAccountName"] == "gitops-bot"
        else:
            assert spec["automountServiceAccountToken"] is False, name


def test_the_api_server_accepts_it(kubeconfig: str, tmp_path: Path) -> None:
    manifest = tmp_path / "bot.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered()))
    result = subprocess.run(
        [
            KUBECTL,
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "--namespace",
            "default",
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/gitops-bot-web serverside-applied (server dry run)" in result.stdout
