"""The pure parts behind ``gitops-bot doctor`` and ``/setup/github-app``: which rights a set of
rendered apps needs (:mod:`bot.rbac`), GitHub's web root for an API root, how the credentials
file quotes values, and doctor noticing an App stored but not loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import doctor
from bot.app_credentials import Store, _quoted
from bot.checks import Status
from bot.forges.app_manifest import CreatedApp, github_web_url, new_app_url, valid_org
from bot.manifests import AppSpec, RenderedApp
from bot.model import Manifest, Source
from bot.rbac import Why, guess_plural, guessed_kinds, needs, rbac_manifests


def rendered(name: str, *objects: dict[str, Any], **spec: Any) -> RenderedApp:
    app = RenderedApp(spec=AppSpec(name=name, path=f"apps/{name}", **spec))
    app.manifests = [Manifest(app=name, obj=obj, source=Source(file="x.yaml")) for obj in objects]
    return app


def obj(api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("Deployment", "deployments"),
        ("Ingress", "ingresses"),
        ("NetworkPolicy", "networkpolicies"),
        ("Endpoints", "endpoints"),
        ("StorageClass", "storageclasses"),
    ],
)
def test_plurals_are_guessed_as_kubectl_guesses_them(kind: str, plural: str) -> None:
    assert guess_plural(kind) == plural


def test_declared_namespaces_are_limited_to_their_names() -> None:
    found = needs(
        [rendered("ns", obj("v1", "Namespace", "team-a"), obj("v1", "Namespace", "team-b"))]
    )
    namespaces = [n for n in found if n.kind == "Namespace"]
    assert {(n.verbs, n.names) for n in namespaces} == {
        (("get", "create", "patch", "delete"), ("team-a", "team-b")),
        (("list",), ()),
    }


def test_a_crd_in_the_repository_names_its_plural_and_others_are_flagged_as_guessed() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgetries"}},
    }
    found = needs(
        [
            rendered(
                "w",
                crd,
                obj("example.com/v1", "Widget", "a", "web"),
                obj("other.io/v1", "Gadget", "b", "web"),
            )
        ]
    )
    widget = next(n for n in found if n.kind == "Widget")
    assert widget.plural == "widgetries"
    assert guessed_kinds(found, {}) == ["Gadget.other.io"]
    text = rbac_manifests(found, service_account=("bots", "bot"))
    assert "widgetries" in text and "gadgets" in text


def test_the_parent_needs_no_rule_of_its_own_where_the_apps_secrets_are_covered() -> None:
    found = needs(
        [
            rendered("a", obj("v1", "Secret", "s", "web"), namespace="web"),
            rendered("b", obj("v1", "ConfigMap", "c", "api"), namespace="api", prune=False),
        ]
    )
    assert {n.why for n in found if n.kind == "Secret"} == {Why.DECLARED, Why.PARENT}
    docs = [d for d in yaml.safe_load_all(rbac_manifests(found, service_account=("b", "b"))) if d]
    rules = {d["metadata"]["namespace"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert rules["web"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "create", "patch", "delete"],
        }
    ]
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["gitops-bot.b"],
        "verbs": ["get", "create", "patch"],
    } in rules["api"]


def test_workloads_add_what_the_health_wait_lists() -> None:
    found = needs(
        [
            rendered(
                "w",
                obj("apps/v1", "DaemonSet", "d", "web"),
                obj("apps/v1", "StatefulSet", "s", "web"),
            )
        ]
    )
    health = {(n.kind, n.verbs) for n in found if n.why == Why.HEALTH}
    assert health == {("Pod", ("list",)), ("ControllerRevision", ("list",))}


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
        ("https://api.acme.ghe.com", "https://acme.ghe.com"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ],
)
def test_githubs_web_root_for_an_api_root(api: str, web: str) -> None:
    assert github_web_url(api) == web


def test_the_manifest_form_posts_to_the_user_or_an_organization() -> None:
    assert new_app_url("https://github.com", state="s t") == (
        "https://github.com/settings/apps/new?state=s%20t"
    )
    assert new_app_url("https://github.com", state="s", org="acme") == (
        "https://github.com/organizations/acme/settings/apps/new?state=s"
    )
    assert valid_org("acme-corp") and not valid_org("a/b") and not valid_org("-x")


def test_values_are_quoted_only_when_they_need_it() -> None:
    assert _quoted("3f2a9c") == "3f2a9c"
    assert _quoted("/srv/bot data/key.pem") == "'/srv/bot data/key.pem'"
    assert _quoted("it's") == "'it'\"'\"'s'"


def test_doctor_notices_an_app_stored_but_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)  # no cluster of the machine running tests
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = doctor.Settings.from_env({"GITOPS_DATA_DIR": str(tmp_path)})
    app = CreatedApp(
        id=7, slug="bot", name="bot", html_url="", owner="me", pem="PEM\n", webhook_secret="w"
    )
    Store.from_settings(settings).write(app, api_url="https://api.github.com")
    env_file = Store.from_settings(settings).env_file
    assert "GITHUB_API_URL" not in env_file.read_text()  # github.com is the default
    checks = doctor.diagnose(doctor.Options(), {"GITOPS_DATA_DIR": str(tmp_path)})
    stored = next(c for c in checks if c.name == "GitHub App from /setup/github-app")
    assert stored.status is Status.WARN and str(env_file) in stored.fix
    checks = doctor.diagnose(
        doctor.Options(), {"GITOPS_DATA_DIR": str(tmp_path), "GITHUB_APP_ID": "7"}
    )
    assert not any(c.name == "GitHub App from /setup/github-app" for c in checks)
