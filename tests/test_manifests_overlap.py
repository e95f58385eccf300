"""One object declared by two apps on one target fails both apps, at render time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bot.cli import main
from bot.manifests import load_config, render_apps
from bot.manifests.overlap import REASON
from tests.fixtures.repos.builder import commit, make_repo

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"""
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def two_apps(root: Path, *, namespace: str = "web", objects: str = DEPLOYMENT) -> None:
    write(
        root,
        {
            ".gitops.yaml": "version: 1\napps:\n"
            "  - {name: one, path: one, namespace: web}\n"
            f"  - {{name: two, path: two, namespace: {namespace}}}\n"
            "  - {name: other, path: other, namespace: web}\n",
            "one/cm.yaml": CM.replace("settings", "one-only"),
            "one/deploy.yaml": objects,
            "two/deploy.yaml": "# the same Deployment, copied\n" + objects,
            "other/cm.yaml": CM.replace("settings", "other-only"),
        },
    )


def shared_errors(app: Any) -> list[Any]:
    return [e for e in app.errors if e.reason == REASON]


def test_both_apps_fail_naming_each_other_with_file_and_line(tmp_path: Path) -> None:
    two_apps(tmp_path)
    rendered = {r.spec.name: r for r in render_apps(tmp_path, load_config(tmp_path))}
    (one,) = shared_errors(rendered["one"])
    (two,) = shared_errors(rendered["two"])
    assert (one.file, one.line) == ("one/deploy.yaml", 1)
    assert (two.file, two.line) == ("two/deploy.yaml", 2)
    for error in (one, two):
        assert str(error.ref) == "Deployment web/web"
        assert "'one' (one/deploy.yaml:1)" in error.message
        assert "'two' (two/deploy.yaml:2)" in error.message
        assert "give them different targets or namespaces in .gitops.yaml" in error.message
    assert rendered["other"].errors == []


def test_identity_is_taken_after_namespace_defaulting(tmp_path: Path) -> None:
    # the same file under apps of different namespaces: two different objects
    two_apps(tmp_path, namespace="staging")
    assert all(not r.errors for r in render_apps(tmp_path, load_config(tmp_path)))
    # an explicit namespace equal to the other app's default collides
    write(
        tmp_path,
        {"two/deploy.yaml": DEPLOYMENT.replace("name: web\n", "name: web\n  namespace: web\n", 1)},
    )
    rendered = {r.spec.name: r for r in render_apps(tmp_path, load_config(tmp_path))}
    assert shared_errors(rendered["one"]) and shared_errors(rendered["two"])


def test_different_targets_do_not_collide_but_one_cluster_does(tmp_path: Path) -> None:
    two_apps(tmp_path)
    write(
        tmp_path,
        {
            ".gitops.yaml": "version: 1\napps:\n"
            "  - {name: one, path: one, namespace: web, target: production}\n"
            "  - {name: two, path: two, namespace: web, target: staging}\n"
        },
    )
    config = load_config(tmp_path)
    assert all(not r.errors for r in render_apps(tmp_path, config))
    # `apply --kubeconfig` sends every app to one cluster: there they would share the object
    rendered = render_apps(tmp_path, config, one_target="kubeconfig")
    for app in rendered:
        (error,) = shared_errors(app)
        assert "sent to the one cluster" in error.message and "--app" in error.message
    # ...unless only one of them is sent
    (only,) = render_apps(tmp_path, config, apps=["one"], one_target="kubeconfig")
    assert only.errors == []


def test_an_app_rendered_alone_is_checked_against_the_others_on_its_target(
    tmp_path: Path,
) -> None:
    two_apps(tmp_path)
    rendered = render_apps(tmp_path, load_config(tmp_path), apps=["two"])
    # the unaffected app it collides with is returned too, failed: the deploy refuses both
    assert [r.spec.name for r in rendered] == ["one", "two"]
    assert all(shared_errors(r) for r in rendered)
    # an app that collides with nobody brings nobody along
    (alone,) = render_apps(tmp_path, load_config(tmp_path), apps=["other"])
    assert alone.spec.name == "other" and alone.errors == []
    # without the check (a base commit) nothing is compared
    (unchecked,) = render_apps(tmp_path, load_config(tmp_path), apps=["two"], check_shared=False)
    assert unchecked.errors == []


def test_two_other_apps_sharing_an_object_do_not_fail_this_preview(tmp_path: Path) -> None:
    two_apps(tmp_path)
    (alone,) = render_apps(tmp_path, load_config(tmp_path), apps=["other"])
    assert alone.errors == []


def test_offline_preview_fails_both_apps_when_a_change_makes_them_collide(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path)
    two_apps(repo, objects=CM.replace("settings", "two-only"))
    commit(repo, {}, "two apps, nothing shared")
    # the change touches only `two`: it now declares the Deployment `one` declares
    write(repo, {"one/deploy.yaml": DEPLOYMENT})
    commit(repo, {}, "one gets a Deployment")
    commit(repo, {"two/deploy.yaml": DEPLOYMENT}, "two copies it")
    result = CliRunner().invoke(
        main, ["preview", "--repo", str(repo), "--base", "HEAD~1", "--format", "json"]
    )
    assert result.exit_code == 2, result.output
    apps = {a["name"]: a for a in json.loads(result.stdout)["apps"]}
    assert sorted(apps) == ["one", "two"]  # `one` is unaffected, yet the deploy refuses it too
    for app in apps.values():
        assert any(e["reason"] == REASON for e in app["errors"])
        assert app["created"] == app["updated"] == app["deleted"] == []


def test_flux_style_repository_previews_the_shared_helmrelease_as_an_error(
    tmp_path: Path,
) -> None:
    """Discovery makes apps of `apps/production` and `apps/staging`; both deploy the same
    HelmRelease (and Namespace, HelmRepository) to the one default target."""
    repo = make_repo(tmp_path, "flux-style")
    values = (repo / "apps/staging/podinfo-values.yaml").read_text()
    commit(
        repo,
        {"apps/staging/podinfo-values.yaml": values.replace("replicaCount: 1", "replicaCount: 2")},
    )
    result = CliRunner().invoke(
        main, ["preview", "--repo", str(repo), "--base", "HEAD~1", "--format", "json"]
    )
    assert result.exit_code == 2, result.output
    apps = {a["name"]: a for a in json.loads(result.stdout)["apps"]}
    assert sorted(apps) == ["apps-production", "apps-staging"]
    for app in apps.values():
        shared = [e for e in app["errors"] if e["reason"] == REASON]
        assert {e["object"]["kind"] for e in shared} == {
            "Namespace",
            "HelmRelease",
            "HelmRepository",
        }
        for error in shared:
            assert error["message"].startswith("declared by 2 apps on target 'default'")
            assert "'apps-production'" in error["message"] and "'apps-staging'" in error["message"]
