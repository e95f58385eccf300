"""Git plumbing (checkout, resolve, changed files) and changed-app detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.manifests import (
    AppSpec,
    GitError,
    Selection,
    affected_apps,
    changed_files,
    checkout,
    checkouts,
    load_config,
    render_app,
    render_apps,
    resolve_commit,
    select_apps,
)
from tests.fixtures.repos.builder import commit, git, make_repo

HELM_APP = """\
  - name: demo
    path: charts/demo
    render:
      helm:
        valuesFiles: [../../values/demo-prod.yaml]
"""


def affected(repo: Path, base: str, head: str) -> list[str]:
    with checkout(repo, base) as old, checkout(repo, head) as new:
        return affected_apps(
            config_old=load_config(old),
            config_new=load_config(new),
            changed_files=changed_files(repo, base, head),
            base_root=old,
            head_root=new,
        )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path, "basic")


def test_resolve_commit(repo: Path) -> None:
    sha = resolve_commit(repo, "main")
    assert len(sha) == 40 and sha == git(repo, "rev-parse", "HEAD")
    assert resolve_commit(repo, sha[:10]) == sha
    with pytest.raises(GitError, match="not a commit"):
        resolve_commit(repo, "no-such-branch")
    with pytest.raises(GitError):
        resolve_commit(repo, "--output=/tmp/x")


def test_checkout_is_a_clean_copy_and_is_removed(repo: Path) -> None:
    first = resolve_commit(repo, "HEAD")
    commit(repo, {"apps/web/new.yaml": "x: 1\n"})
    (repo / "untracked.yaml").write_text("y: 1\n")
    with checkout(repo, first) as tree:
        assert (tree / ".gitops.yaml").is_file()
        assert (tree / "apps/web/list.yaml").is_file()
        assert not (tree / "apps/web/new.yaml").exists()
        assert not (tree / "untracked.yaml").exists()
        assert not (tree / ".git").exists()
    assert not tree.exists()
    assert git(repo, "status", "--porcelain") == "?? untracked.yaml"  # index untouched


def test_checkout_keeps_symlinks_as_symlinks(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "app").mkdir()
    (repo / "app" / "leak.yaml").symlink_to("/etc/passwd")
    commit(repo, {})
    with checkout(repo, "HEAD") as tree:
        assert (tree / "app" / "leak.yaml").is_symlink()
        app = render_app(tree, AppSpec(name="app", path="app"))
    assert app.manifests == []
    assert "symlink leading outside the repository" in app.errors[0].message


def test_changed_files_lists_both_sides_of_a_rename(repo: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    git(repo, "mv", "apps/web/list.yaml", "apps/cluster/list.yaml")
    head = commit(repo, {"apps/web/deployment.yaml": "# edited\n"})
    assert changed_files(repo, base, head) == [
        "apps/cluster/list.yaml",
        "apps/web/deployment.yaml",
        "apps/web/list.yaml",
    ]
    assert set(affected(repo, base, head)) == {"web", "cluster"}


def test_kustomize_base_patch_component_and_generator_files(repo: Path) -> None:
    for path in (
        "base/deployment.yaml",
        "components/team/kustomization.yaml",
        "apps/kz/replicas-patch.yaml",
        "apps/kz/app.properties",
    ):
        base = resolve_commit(repo, "HEAD")
        head = commit(repo, {path: (repo / path).read_text() + "# touched\n"})
        assert affected(repo, base, head) == ["kz"], path


def test_unrelated_files_affect_nothing(repo: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    head = commit(
        repo,
        {
            "README.md": "docs\n",
            "charts/demo/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.2.0\n",
        },
    )
    assert affected(repo, base, head) == []


def test_new_reference_counts_at_head(repo: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    head = commit(
        repo,
        {
            "shared/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n",
            "apps/kz/kustomization.yaml": (repo / "apps/kz/kustomization.yaml")
            .read_text()
            .replace("  - ../../base\n", "  - ../../base\n  - ../../shared/cm.yaml\n"),
        },
    )
    assert affected(repo, base, head) == ["kz"]
    later = commit(
        repo, {"shared/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared2}\n"}
    )
    assert affected(repo, head, later) == ["kz"]


def test_helm_values_file_outside_the_chart(repo: Path) -> None:
    config = (repo / ".gitops.yaml").read_text() + HELM_APP
    base = commit(repo, {".gitops.yaml": config, "values/demo-prod.yaml": "replicas: 1\n"})
    head = commit(repo, {"values/demo-prod.yaml": "replicas: 2\n"})
    assert affected(repo, base, head) == ["demo"]
    other = commit(repo, {"values/other.yaml": "x: 1\n"})
    assert affected(repo, head, other) == []


def test_gitops_yaml_change_affects_exactly_the_changed_entries(repo: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    text = (repo / ".gitops.yaml").read_text()
    text = text.replace("target: production", "target: staging")  # cluster changes
    text = "# a comment changes nothing\n" + text.replace("  - name: kz\n", "\n  - name: kz\n")
    text += "  - name: fresh\n    path: apps/fresh\n"
    head = commit(repo, {".gitops.yaml": text})
    assert affected(repo, base, head) == ["cluster", "fresh"]
    removed = commit(
        repo, {".gitops.yaml": text.replace("  - name: fresh\n    path: apps/fresh\n", "")}
    )
    assert affected(repo, head, removed) == ["fresh"]


def test_rendered_inputs_can_be_passed_instead_of_roots(repo: Path) -> None:
    with checkout(repo, "HEAD") as tree:
        config = load_config(tree)
        rendered = render_apps(tree, config)
    assert affected_apps(
        config_old=config,
        config_new=config,
        changed_files=["base/deployment.yaml", "apps/web/x.yaml"],
        rendered=rendered,
    ) == ["web", "kz"]


def test_unreadable_base_config_affects_everything(repo: Path) -> None:
    config = load_config(make_repo(repo.parent, "basic", name="copy"))
    assert affected_apps(config_old=None, config_new=config, changed_files=[]) == [
        "web",
        "cluster",
        "kz",
    ]


def test_checkouts_of_several_commits(repo: Path) -> None:
    first = resolve_commit(repo, "HEAD")
    second = commit(repo, {"apps/web/new.yaml": "x: 1\n"})
    with checkouts(repo, first, second, first) as trees:
        assert len(trees) == 3 and len(set(trees)) == 3
        assert not (trees[0] / "apps/web/new.yaml").exists()
        assert (trees[1] / "apps/web/new.yaml").read_text() == "x: 1\n"
    assert not any(t.exists() for t in trees)


def selection(repo: Path, base: str, head: str, apps: list[str] | None = None) -> Selection:
    with checkout(repo, base) as old, checkout(repo, head) as new:
        return select_apps(
            config_old=load_config(old),
            config_new=load_config(new),
            changed_files=changed_files(repo, base, head),
            base_root=old,
            head_root=new,
            apps=apps,
        )


def test_changed_files_no_app_reads_are_listed(repo: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    head = commit(
        repo,
        {
            "README.md": "docs\n",
            "charts/demo/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.2.0\n",
            "base/deployment.yaml": (repo / "base/deployment.yaml").read_text() + "# kz reads it\n",
            "apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n",
            ".gitops.yaml": (repo / ".gitops.yaml").read_text()
            + "  - {name: new, path: apps/web/extra}\n",
        },
    )
    found = selection(repo, base, head)
    assert found.names == ["web", "kz", "new"]
    # .gitops.yaml is not listed: its changes affect the apps whose entries changed
    assert found.unowned_files == ["README.md", "charts/demo/Chart.yaml"]
    assert found.errors == []


def test_a_file_only_an_app_at_base_read_is_owned(repo: Path) -> None:
    base = resolve_commit(repo, "HEAD")
    config = (
        (repo / ".gitops.yaml")
        .read_text()
        .replace("  - name: cluster\n    path: apps/cluster\n    target: production\n", "")
    )
    head = commit(repo, {".gitops.yaml": config, "apps/cluster/all.yaml": None})
    found = selection(repo, base, head)
    assert found.names == ["cluster"]
    assert found.unowned_files == []


def test_unknown_app_names_list_the_known_ones(repo: Path) -> None:
    found = selection(repo, "HEAD", "HEAD", apps=["kz", "nope", "kz"])
    assert found.names == ["kz"]
    (error,) = found.errors
    assert error.message == (
        "unknown app 'nope': not in the configuration at base or head (known: cluster, kz, web)"
    )
    assert error.reason == "UnknownApp"
