"""An app's namespace (issue 11.3): ``createNamespace: true`` creates it before anything else
(a creation in the live preview, through a dry run), and never prunes it; without it, a missing
namespace is one app-level error naming it and the fix, in the preview and the deploy, and
nothing is applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli.apply import EXIT_ERRORS, EXIT_OK
from bot.cluster import Cluster, Target, apply_app, preview_app
from bot.cluster.applyset import PART_OF_LABEL, ApplySet
from bot.model import Change
from tests.test_cli_apply import commit, configmap, run_apply
from tests.test_cluster_engine import NAMESPACE, by_name, cm, get, manifests, spec

pytestmark = pytest.mark.realcluster


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    with Cluster(Target(name="test", kubeconfig=Path(kubeconfig))) as c:
        yield c


def test_a_missing_namespace_is_one_error_naming_the_fix(cluster: Cluster) -> None:
    app = spec("web", "fresh")
    objects = manifests(cm("a", ns="fresh") + cm("b", ns="fresh"))
    for result in (
        preview_app(cluster, app, objects),
        apply_app(cluster, app, objects, commit="c1"),
    ):
        (error,) = result.errors
        assert error.reason == "NamespaceNotFound" and error.ref is None
        assert "namespace 'fresh' does not exist on target 'test'" in error.message
        assert "createNamespace: true" in error.message
        assert result.changes == []
    assert get(cluster, "v1", "Namespace", None, "fresh") is None
    assert get(cluster, "v1", "Secret", "fresh", "gitops-bot.web") is None


def test_create_namespace_creates_it_first_and_never_prunes_it(cluster: Cluster) -> None:
    app = spec("web", "fresh", create_namespace=True, line=3)
    objects = manifests(cm("a", ns="fresh"))
    preview = preview_app(cluster, app, objects)
    assert not preview.errors, preview.errors
    assert by_name(preview) == {"fresh": Change.CREATE, "a": Change.CREATE}
    created = next(c for c in preview.changes if c.ref.kind == "Namespace")
    assert created.source is not None and (created.source.file, created.source.line) == (
        ".gitops.yaml",
        3,
    )
    assert "name: fresh" in created.diff
    assert get(cluster, "v1", "Namespace", None, "fresh") is None  # a preview changes nothing

    applied = apply_app(cluster, app, objects, commit="c1")
    assert not applied.errors, applied.errors
    assert by_name(applied) == {"fresh": Change.CREATE, "a": Change.CREATE}
    namespace = get(cluster, "v1", "Namespace", None, "fresh")
    assert PART_OF_LABEL not in (namespace["metadata"].get("labels") or {})

    again = preview_app(cluster, app, objects)
    assert by_name(again) == {"fresh": Change.UNCHANGED, "a": Change.UNCHANGED}

    # the app emptied: its objects are pruned, the namespace it lives in is not
    emptied = apply_app(cluster, app, [], commit="c2")
    assert not emptied.errors, emptied.errors
    assert {c.ref.name: c.change for c in emptied.changes} == {
        "fresh": Change.UNCHANGED,
        "a": Change.DELETE,
    }
    assert get(cluster, "v1", "Namespace", None, "fresh") is not None
    assert get(cluster, "v1", "ConfigMap", "fresh", "a") is None


def test_a_namespace_the_app_declares_is_applied_once_as_a_member(cluster: Cluster) -> None:
    app = spec("web", "web", create_namespace=True)
    applied = apply_app(cluster, app, manifests(NAMESPACE.format(ns="web") + cm("a")), commit="c")
    assert not applied.errors, applied.errors
    assert [c.ref.name for c in applied.changes].count("web") == 1
    namespace = get(cluster, "v1", "Namespace", None, "web")
    assert namespace["metadata"]["labels"][PART_OF_LABEL] == ApplySet.for_app("web", "web").id


def test_creating_a_namespace_another_app_declares_leaves_that_app_its_labels(
    cluster: Cluster,
) -> None:
    owner = spec("owner", "shared")
    declared = NAMESPACE.format(ns="shared").replace(
        "name: shared", "name: shared\n  labels: {team: a}"
    )
    assert not apply_app(cluster, owner, manifests(declared, app="owner"), commit="c1").errors
    other = spec("other", "shared", create_namespace=True)
    result = apply_app(cluster, other, manifests(cm("b", ns="shared"), app="other"), commit="c1")
    assert not result.errors, result.errors
    labels = get(cluster, "v1", "Namespace", None, "shared")["metadata"]["labels"]
    assert labels["team"] == "a"
    assert labels[PART_OF_LABEL] == ApplySet.for_app("owner", "shared").id


def test_apply_with_and_without_create_namespace(tmp_path: Path, kubeconfig: Path) -> None:
    from tests.test_cluster_owners import new_repo

    repo = new_repo(tmp_path / "repo")
    config = "version: 1\napps:\n- name: guestbook\n  path: guestbook\n  namespace: guestbook\n"
    without = commit(
        repo,
        {".gitops.yaml": config, "guestbook/a.yaml": configmap("a", "1")},
        "a namespace nobody creates",
    )
    for extra in (("--dry-run",), ()):
        result = run_apply(repo, kubeconfig, "--ref", without, *extra)
        assert result.exit_code == EXIT_ERRORS, result.output
        [app] = json.loads(result.stdout)["apps"]
        assert [e["reason"] for e in app["errors"]] == ["NamespaceNotFound"]
        assert "createNamespace: true" in app["errors"][0]["message"]
    with_key = commit(
        repo, {".gitops.yaml": config + "  createNamespace: true\n"}, "createNamespace"
    )
    dry = run_apply(repo, kubeconfig, "--ref", with_key, "--dry-run")
    assert dry.exit_code == EXIT_OK, dry.output
    [app] = json.loads(dry.stdout)["apps"]
    assert sorted(o["name"] for o in app["created"]) == ["a", "guestbook"]
    result = run_apply(repo, kubeconfig, "--ref", with_key)
    assert result.exit_code == EXIT_OK, result.output
    [app] = json.loads(result.stdout)["apps"]
    assert sorted(o["name"] for o in app["created"]) == ["a", "guestbook"]
