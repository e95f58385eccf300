"""The example repositories under examples/ render, validate and deploy as the docs say.

Each example is committed into a fresh git repository and previewed with the real
``gitops-bot preview`` (offline, every object checked against the Kubernetes schema, since the
examples set ``validate: true``); the plain and Kustomize ones are also deployed with
``gitops-bot apply`` to the local Kubernetes API server and waited for until healthy. So an
example that stops rendering, or a guide promising what the bot no longer does with it, fails
here. The Helm example needs a ``helm`` binary, which the test environment does not have: its
structure is checked always, its rendering only where ``helm`` is on the PATH.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.cluster.targets import Targets
from bot.manifests import load_config
from tests.fixtures.repos.builder import git, make_repo
from tests.kube_emulator.fixture import Kubectl

EXAMPLES = Path(__file__).parents[1] / "examples"

#: What each example renders to, per app: ``Kind namespace/name`` (cluster-scoped: ``Kind name``).
EXPECTED: dict[str, dict[str, list[str]]] = {
    "demo-repo": {
        "shop": [
            "Namespace shop",
            "Secret shop/storefront-credentials",
            "Service shop/storefront",
            "Deployment shop/storefront",
        ],
        "payments": [
            "Namespace payments",
            "ConfigMap payments/payments-config-*",
            "Deployment payments/payments",
        ],
    },
    "plain-yaml": {
        "redis": [
            "Namespace guestbook",
            "Secret guestbook/redis",
            "Service guestbook/redis",
            "Deployment guestbook/redis",
        ],
        "guestbook": [
            "ConfigMap guestbook/frontend",
            "Service guestbook/frontend",
            "Deployment guestbook/frontend",
        ],
    },
    "kustomize-environments": {
        "api-staging": ["ConfigMap api/api-config-*", "Service api/api", "Deployment api/api"],
        "api-production": [
            "ConfigMap api/api-config-*",
            "Service api/api",
            "Deployment api/api",
            "PodDisruptionBudget api/api",
        ],
    },
    "helm": {
        "web-staging": ["ConfigMap web/web", "Service web/web", "Deployment web/web"],
        "web-production": ["ConfigMap web/web", "Service web/web", "Deployment web/web"],
    },
}

HELM = shutil.which("helm")


def example_repo(tmp_path: Path, name: str) -> Path:
    """The example committed on top of an empty first commit, as a new repository."""
    repo = make_repo(tmp_path, name=name)
    shutil.copytree(EXAMPLES / name, repo, dirs_exist_ok=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"the {name} example")
    return repo


def run(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def refs(objects: list[dict[str, Any]]) -> list[str]:
    shown = []
    for o in objects:
        name = o["name"]
        if "-config-" in name:  # Kustomize's generated name ends in a hash of the content
            name = name.rsplit("-", 1)[0] + "-*"
        where = f"{o['namespace']}/{name}" if o["namespace"] else name
        shown.append(f"{o['kind']} {where}")
    return sorted(shown)


def test_every_example_is_covered() -> None:
    examples = {p.parent.name for p in EXAMPLES.glob("*/.gitops.yaml")}
    assert examples == set(EXPECTED)


@pytest.mark.parametrize(
    "name",
    [
        "demo-repo",
        "plain-yaml",
        "kustomize-environments",
        pytest.param(
            "helm", marks=pytest.mark.skipif(HELM is None, reason="no helm binary on the PATH")
        ),
    ],
)
def test_example_previews_cleanly(tmp_path: Path, name: str) -> None:
    repo = example_repo(tmp_path, name)
    code, report = run("preview", "--repo", str(repo), "--base", "HEAD~1")
    assert report["errors"] == []
    for app in report["apps"]:
        assert app["errors"] == [], f"{name}/{app['name']}: {app['errors']}"
    assert code == 0
    rendered = {app["name"]: refs(app["created"]) for app in report["apps"]}
    assert rendered == {app: sorted(objects) for app, objects in EXPECTED[name].items()}


def test_example_apps_are_listed_with_their_renderer(tmp_path: Path) -> None:
    renderers = {}
    for name in EXPECTED:
        code, listing = run("apps", "--repo", str(EXAMPLES / name))
        assert code == 0
        renderers.update({app["name"]: app["renderer"] for app in listing["apps"]})
    assert renderers == {
        "shop": "plain",
        "payments": "kustomize",
        "redis": "plain",
        "guestbook": "plain",
        "api-staging": "kustomize",
        "api-production": "kustomize",
        "web-staging": "helm",
        "web-production": "helm",
    }


def test_helm_example_without_helm_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where helm is missing (as in the bot's image), the chart's apps say so, and only they."""
    repo = example_repo(tmp_path, "helm")
    config = load_config(repo)
    for app in config.apps:  # the values files the apps name are in the repository
        for values in app.render.helm_values:
            assert (repo / app.path / values).resolve().is_file(), values
    path = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv("PATH", os.pathsep.join(d for d in path if not (Path(d) / "helm").exists()))
    code, report = run("preview", "--repo", str(repo), "--base", "HEAD~1")
    assert code == 2
    assert {app["name"]: [e["message"] for e in app["errors"]] for app in report["apps"]} == {
        app: [
            "helm is not installed: install Helm 3 on the bot's PATH to render the chart in "
            "'charts/web'"
        ]
        for app in EXPECTED["helm"]
    }


def test_example_targets_are_in_the_example_clusters_file() -> None:
    targets = Targets.from_settings(EXAMPLES / "clusters.example.yaml")
    for name in EXPECTED:
        for app in load_config(EXAMPLES / name).apps:
            if name != "demo-repo":
                assert app.target in targets, f"{name}/{app.name}: target {app.target!r}"
    production = targets["production"]
    assert production.repositories == ("acme/platform-gitops",)
    assert production.namespaces == frozenset({"api", "web"})
    assert targets["default"].in_cluster


@pytest.mark.slow
@pytest.mark.realcluster
@pytest.mark.parametrize(
    ("name", "apps", "namespaces"),
    [
        ("plain-yaml", [], []),  # both apps; redis creates the namespace
        ("kustomize-environments", ["api-production"], ["api"]),
    ],
)
def test_example_deploys_healthy(
    tmp_path: Path,
    kubeconfig: str,
    kubectl: Kubectl,
    name: str,
    apps: list[str],
    namespaces: list[str],
) -> None:
    repo = example_repo(tmp_path, name)
    for namespace in namespaces:  # what the operator creates before the first deploy
        kubectl.ok("create", "namespace", namespace)
    selected = [arg for app in apps for arg in ("--app", app)]
    code, report = run("apply", "--repo", str(repo), "--kubeconfig", kubeconfig, *selected)
    assert report["errors"] == []
    for app in report["apps"]:
        assert app["errors"] == [], f"{name}/{app['name']}: {app['errors']}"
        assert app["health"] and all(h["health"] == "healthy" for h in app["health"]), app["health"]
    assert code == 0
    expected = {app: objects for app, objects in EXPECTED[name].items() if not apps or app in apps}
    applied = {app["name"]: refs(app["created"]) for app in report["apps"]}
    assert applied == {app: sorted(objects) for app, objects in expected.items()}
