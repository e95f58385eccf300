"""One object, one app, in the cluster (issue 11.1): an object another app's ApplySet holds is
never taken over silently. It moves without a conflict when the same commit moves it (from app
A to app B, or by renaming the app), whichever app deploys first, and the old owner releases it
instead of pruning it; anything else is a conflict naming the other owner, in the preview
(``apply --dry-run``) as in the deploy. ``gitops-bot apply`` against the local API server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli.apply import EXIT_ERRORS, EXIT_OK
from bot.cluster import Cluster, Declarations, Target, apply_app, preview_app
from bot.cluster.applyset import PART_OF_LABEL, ApplySet
from bot.cluster.owners import REASON
from bot.model import Manifest, ObjectRef
from tests.kube_emulator.fixture import Kubectl
from tests.test_cli_apply import commit, configmap, git, run_apply
from tests.test_cluster_engine import cm, manifests, spec

pytestmark = pytest.mark.realcluster

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n"
TWO_APPS = """version: 1
apps:
- name: a
  path: a
  namespace: web
- name: b
  path: b
  namespace: web
"""


def new_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    return path


def part_of(kubeconfig: Path, name: str) -> str | None:
    """The ApplySet the live ConfigMap ``web/name`` belongs to (None when it is gone)."""
    with Cluster(Target(name="t", kubeconfig=kubeconfig)) as cluster:
        live = cluster.get(cluster.resource("v1", "ConfigMap"), "web", name)
    if live is None:
        return None
    return str(live["metadata"].get("labels", {}).get(PART_OF_LABEL))


def set_of(app: str) -> str:
    return ApplySet.for_app(app, "web").id


def apps_of(result: Any) -> dict[str, dict[str, Any]]:
    return {app["name"]: app for app in json.loads(result.stdout)["apps"]}


def names(app: dict[str, Any], change: str) -> list[str]:
    return sorted(o["name"] for o in app[change])


@pytest.fixture
def moved(tmp_path: Path, kubeconfig: Path) -> tuple[Path, str]:
    """Two apps deployed; then one commit moves ConfigMap ``shared`` from app a to app b."""
    repo = new_repo(tmp_path / "repo")
    first = commit(
        repo,
        {
            ".gitops.yaml": TWO_APPS,
            "a/ns.yaml": NAMESPACE,
            "a/shared.yaml": configmap("shared", "1"),
            "b/own.yaml": configmap("own", "1"),
        },
        "two apps",
    )
    assert run_apply(repo, kubeconfig, "--ref", first).exit_code == EXIT_OK
    assert part_of(kubeconfig, "shared") == set_of("a")
    (repo / "a/shared.yaml").rename(repo / "b/shared.yaml")
    return repo, commit(repo, {}, "move shared from a to b")


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")], ids=["old-owner-first", "new-first"])
def test_an_object_moved_between_apps_moves_in_either_order(
    moved: tuple[Path, str], kubeconfig: Path, order: tuple[str, str]
) -> None:
    repo, sha = moved
    # the previews of both apps say what the deploys will do: no deletion, no conflict
    previews = {
        app: apps_of(run_apply(repo, kubeconfig, "--ref", sha, "--app", app, "--dry-run"))[app]
        for app in ("a", "b")
    }
    assert previews["a"]["errors"] == [] and previews["a"]["deleted"] == []
    assert any("moves to app 'b'" in n for n in previews["a"]["notes"]), previews["a"]["notes"]
    assert previews["b"]["errors"] == [] and names(previews["b"], "updated") == ["shared"]
    assert any("taken over from app 'a'" in n for n in previews["b"]["notes"])

    for app in order:
        result = run_apply(repo, kubeconfig, "--ref", sha, "--app", app)
        assert result.exit_code == EXIT_OK, result.output
        report = apps_of(result)[app]
        assert report["deleted"] == []  # the old owner never deletes what b declares now
        if app == "a" and order[0] == "a":
            assert any("moves to app 'b'" in n for n in report["notes"])
            assert part_of(kubeconfig, "shared") == set_of("a")  # released, untouched
        if app == "b":
            assert names(report, "updated") == ["shared"]
            assert any("taken over from app 'a'" in n for n in report["notes"])
    assert part_of(kubeconfig, "shared") == set_of("b")

    # and afterwards each app deploys cleanly again, without a note about the object
    for app in ("a", "b"):
        again = apps_of(run_apply(repo, kubeconfig, "--ref", sha, "--app", app))[app]
        assert again["errors"] == [] and again["deleted"] == []
        assert not [n for n in again["notes"] if "shared" in n], again["notes"]
    # a's parent no longer lists ConfigMaps once nothing of that kind is left in its set
    with Cluster(Target(name="t", kubeconfig=kubeconfig)) as cluster:
        parent = cluster.get(cluster.resource("v1", "Secret"), "web", "gitops-bot.a")
    assert "ConfigMap" not in parent["metadata"]["annotations"][
        "applyset.kubernetes.io/contains-group-kinds"
    ].split(",")


def test_a_whole_run_moves_the_object_too(moved: tuple[Path, str], kubeconfig: Path) -> None:
    repo, sha = moved
    result = run_apply(repo, kubeconfig, "--ref", sha)
    assert result.exit_code == EXIT_OK, result.output
    apps = apps_of(result)
    assert apps["a"]["deleted"] == [] and names(apps["b"], "updated") == ["shared"]
    assert part_of(kubeconfig, "shared") == set_of("b")


def test_a_renamed_app_takes_its_objects_over(tmp_path: Path, kubeconfig: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    old = "version: 1\napps:\n- name: old\n  path: web\n  namespace: web\n"
    first = commit(
        repo,
        {".gitops.yaml": old, "web/ns.yaml": NAMESPACE, "web/x.yaml": configmap("x", "1")},
        "app old",
    )
    assert run_apply(repo, kubeconfig, "--ref", first).exit_code == EXIT_OK
    assert part_of(kubeconfig, "x") == ApplySet.for_app("old", "web").id
    renamed = commit(repo, {".gitops.yaml": old.replace("old", "new")}, "rename old to new")

    dry = run_apply(repo, kubeconfig, "--ref", renamed, "--dry-run")
    assert dry.exit_code == EXIT_OK, dry.output
    preview = apps_of(dry)["new"]
    assert names(preview, "updated") == ["web", "x"] and preview["errors"] == []
    note = "taken over from app 'old', which is not on target 'kubeconfig' in .gitops.yaml"
    assert sum(note in n for n in preview["notes"]) == 2, preview["notes"]

    result = run_apply(repo, kubeconfig, "--ref", renamed)
    assert result.exit_code == EXIT_OK, result.output
    deployed = apps_of(result)["new"]
    assert names(deployed, "updated") == ["web", "x"] and deployed["deleted"] == []
    assert part_of(kubeconfig, "x") == ApplySet.for_app("new", "web").id


def test_another_repositorys_object_is_a_conflict_naming_its_app(
    tmp_path: Path, kubeconfig: Path
) -> None:
    """Two repositories deploying to one cluster: the second never takes the first's object."""
    first_repo = new_repo(tmp_path / "first")
    alpha = "version: 1\napps:\n- name: alpha\n  path: alpha\n  namespace: web\n"
    sha = commit(
        first_repo,
        {".gitops.yaml": alpha, "alpha/ns.yaml": NAMESPACE, "alpha/x.yaml": configmap("x", "1")},
        "alpha",
    )
    assert run_apply(first_repo, kubeconfig, "--ref", sha).exit_code == EXIT_OK

    second_repo = new_repo(tmp_path / "second")
    beta = "version: 1\napps:\n- name: beta\n  path: beta\n  namespace: web\n"
    other = commit(
        second_repo,
        {
            ".gitops.yaml": beta,
            "beta/x.yaml": configmap("x", "2"),
            "beta/y.yaml": configmap("y", "2"),
        },
        "beta declares alpha's ConfigMap",
    )
    for extra in (("--dry-run",), ()):
        result = run_apply(second_repo, kubeconfig, "--ref", other, *extra)
        assert result.exit_code == EXIT_ERRORS, result.output
        app = apps_of(result)["beta"]
        (error,) = app["errors"]
        assert error["reason"] == REASON and error["object"]["name"] == "x"
        assert error["file"] == "beta/x.yaml"
        assert "belongs to app 'alpha'" in error["message"]
        assert "not in this repository's history" in error["message"]
        assert "x" not in names(app, "updated")
    assert part_of(kubeconfig, "x") == set_of("alpha")
    with Cluster(Target(name="t", kubeconfig=kubeconfig)) as cluster:
        x = cluster.get(cluster.resource("v1", "ConfigMap"), "web", "x")
    assert x["data"] == {"value": "1"}


# -- the engine's own calls ------------------------------------------------------------------


def two_apps(a_text: str, b_text: str) -> tuple[list[Manifest], list[Manifest], Declarations]:
    """Manifests of apps a and b on target "test", and the declarations of that commit."""

    class Rendered:
        def __init__(self, name: str, text: str) -> None:
            self.spec = spec(name)
            self.manifests = manifests(text, app=name)
            self.errors: list[Any] = []
            self.notes: list[str] = []

    a, b = Rendered("a", a_text), Rendered("b", b_text)
    declared = Declarations.of([a, b], specs=[a.spec, b.spec], one_target="test")
    return a.manifests, b.manifests, declared


@pytest.fixture
def cluster(kubeconfig: Path) -> Any:
    with Cluster(Target(name="test", kubeconfig=Path(kubeconfig))) as c:
        c.apply(
            c.resource("v1", "Namespace"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
            field_manager="setup",
        )
        yield c


def test_without_declarations_every_object_of_another_set_is_a_conflict(cluster: Cluster) -> None:
    assert not apply_app(cluster, spec("a"), manifests(cm("shared"), app="a"), commit="c1").errors
    _a, b_objects, declared = two_apps("", cm("shared"))
    refused = apply_app(cluster, spec("b"), b_objects, commit="c2")
    (error,) = refused.errors
    assert error.reason == REASON and "belongs to app 'a'" in error.message
    assert "without the declarations of this commit" in error.message
    # with them (a no longer declares it): taken over
    taken = apply_app(cluster, spec("b"), b_objects, commit="c2", declared=declared)
    assert not taken.errors and any("taken over from app 'a'" in n for n in taken.notes)


def test_an_owner_that_did_not_render_keeps_its_object(cluster: Cluster) -> None:
    assert not apply_app(cluster, spec("a"), manifests(cm("shared"), app="a"), commit="c1").errors
    _a, b_objects, declared = two_apps("", cm("shared"))
    broken = Declarations(
        apps={**declared.apps, "a": dataclasses.replace(declared.apps["a"], complete=False)},
        objects=declared.objects,
        sets=declared.sets,
    )
    result = preview_app(cluster, spec("b"), b_objects, commit="c2", declared=broken)
    (error,) = result.errors
    assert "did not render cleanly" in error.message and error.ref == ObjectRef(
        "v1", "ConfigMap", "web", "shared"
    )


def test_an_object_of_a_set_whose_parent_is_gone_is_a_conflict(cluster: Cluster) -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "orphan",
            "namespace": "web",
            "labels": {PART_OF_LABEL: "applyset-gone-v1"},
        },
    }
    cluster.apply(cluster.resource("v1", "ConfigMap"), obj, field_manager="someone")
    _a, b_objects, declared = two_apps("", cm("orphan"))
    result = preview_app(cluster, spec("b"), b_objects, commit="c", declared=declared)
    (error,) = result.errors
    assert error.reason == REASON and "applyset-gone-v1" in error.message
    assert "whose parent was not found" in error.message


def test_kubectls_applyset_is_never_taken_over(cluster: Cluster, kubectl: Kubectl) -> None:
    kubectl.ok(
        "apply",
        "--server-side",
        "--prune",
        "--applyset=by-hand",
        "-n",
        "web",
        "-f",
        "-",
        stdin=cm("k"),
    )
    _a, b_objects, declared = two_apps("", cm("k"))
    result = apply_app(cluster, spec("b"), b_objects, commit="c", declared=declared)
    (error,) = result.errors
    assert error.reason == REASON and "an ApplySet of 'kubectl/" in error.message
    assert "Secret web/by-hand" in error.message
    assert not [c for c in result.changes if c.ref.name == "k"]


def test_the_declarations_index_every_app_on_each_target() -> None:
    _a, _b, declared = two_apps(cm("one"), cm("shared") + cm("two"))
    key = ObjectRef("v1", "ConfigMap", "web", "shared").key
    assert declared.declarers("test", key) == ("b",)
    assert declared.declarers("elsewhere", key) == ()
    owner = declared.app_of_set("test", set_of("a"))
    assert owner is not None and owner.name == "a" and owner.complete
    assert declared.app_of_set("test", ApplySet.for_app("a", "other").id) is None
