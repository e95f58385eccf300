"""`gitops-bot preview`: offline diff of two commits, JSON structure, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from tests.fixtures.repos.builder import commit, make_repo

SECRET_VALUE = "s3cr3t-fixture-value"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path, "basic")


def preview(repo: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["preview", "--repo", str(repo), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def as_json(repo: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = preview(repo, "--format", "json", *args)
    return code, json.loads(out)


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['namespace']}/{o['name']}" for o in objects]


def test_json_structure_and_only_affected_apps(repo: Path) -> None:
    cm = (repo / "apps/web/list.yaml").read_text().replace("data: {k: a}", "data: {k: changed}")
    commit(
        repo,
        {
            "apps/web/list.yaml": cm,
            "apps/web/extra/config.json": None,
            "apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: brand-new}\n",
        },
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    assert data["mode"] == "offline"
    assert len(data["base"]) == 40 and len(data["head"]) == 40
    (app,) = data["apps"]
    assert {"name", "target", "created", "updated", "deleted", "unchanged", "errors"} <= set(app)
    assert (app["name"], app["target"]) == ("web", "default")
    assert names(app["created"]) == ["ConfigMap/web/brand-new"]
    assert names(app["updated"]) == ["ConfigMap/web/from-list-a"]
    assert names(app["deleted"]) == ["ConfigMap/web/json-cm"]
    assert len(app["unchanged"]) == 4
    assert app["errors"] == []
    updated = app["updated"][0]
    assert {"apiVersion", "kind", "namespace", "name"} <= set(updated)
    assert updated["apiVersion"] == "v1"
    assert "-  k: a" in updated["diff"] and "+  k: changed" in updated["diff"]
    assert updated["source"] == {"file": "apps/web/list.yaml", "document": 0, "line": 4}


def test_cluster_scoped_objects_have_null_namespace(repo: Path) -> None:
    code, data = as_json(repo, "--base", "HEAD", "--app", "cluster")
    assert code == 0
    (app,) = data["apps"]
    assert app["target"] == "production"
    by_kind = {o["kind"]: o["namespace"] for o in app["unchanged"]}
    assert by_kind["Namespace"] is None and by_kind["Gadget"] == "default"


def test_exit_codes(repo: Path) -> None:
    commit(repo, {"README.md": "docs only\n"})
    assert preview(repo, "--base", "HEAD~1", "--exit-code")[0] == 0
    commit(repo, {"apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n"})
    assert preview(repo, "--base", "HEAD~1")[0] == 0
    assert preview(repo, "--base", "HEAD~1", "--exit-code")[0] == 1
    commit(repo, {"apps/web/broken.yaml": "apiVersion: v1\nkind: [\n"})
    for flags in ([], ["--exit-code"]):
        code, data = as_json(repo, "--base", "HEAD~1", *flags)
        assert code == 2
        (error,) = data["apps"][0]["errors"]
        assert error["file"] == "apps/web/broken.yaml" and error["line"] == 3
        assert "invalid YAML" in error["message"]
        assert set(error) >= {"message", "file", "line", "object"}


def test_validation_error_names_the_object(repo: Path) -> None:
    commit(
        repo, {"apps/web/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n"}
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 2
    (error,) = data["apps"][0]["errors"]
    assert error["object"]["name"] == "Bad_Name" and error["object"]["namespace"] == "web"


def test_bad_config_is_a_run_error_with_line(repo: Path) -> None:
    text = (
        (repo / ".gitops.yaml").read_text().replace("prune: false", "prune: false\n    prnue: true")
    )
    commit(repo, {".gitops.yaml": text})
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 2
    assert data["apps"] == []
    (error,) = data["errors"]
    assert error["file"] == ".gitops.yaml" and error["line"] == 14
    assert "did you mean 'prune'" in error["message"]


def test_app_only_at_head_or_base(repo: Path) -> None:
    config = (repo / ".gitops.yaml").read_text()
    commit(
        repo,
        {
            ".gitops.yaml": config.replace(
                "  - name: web\n    path: apps/web\n    namespace: web\n", ""
            )
        },
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    (app,) = data["apps"]
    # the deploy never deletes the objects of an app removed from .gitops.yaml: neither does
    # the preview, which says so
    assert app["name"] == "web" and not app["deleted"] and not app["created"]
    assert "stay in the cluster" in app["notes"][0]
    code, data = as_json(repo, "--base", "HEAD", "--head", "HEAD~1")
    (app,) = data["apps"]
    assert len(app["created"]) == 6 and not app["deleted"]


def test_removed_app_without_prune_leaves_objects(repo: Path) -> None:
    config = (repo / ".gitops.yaml").read_text()
    commit(repo, {".gitops.yaml": config[: config.index("  - name: kz")]})
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    (app,) = data["apps"]
    assert app["name"] == "kz" and app["deleted"] == []
    assert len(app["notes"]) == 1
    assert "app 'kz' was removed from .gitops.yaml: its 2 object(s) stay" in app["notes"][0]


def test_object_removed_from_app_without_prune_is_not_deleted(repo: Path) -> None:
    commit(
        repo,
        {
            "apps/kz/app.properties": None,
            "apps/kz/kustomization.yaml": (repo / "apps/kz/kustomization.yaml")
            .read_text()
            .split("configMapGenerator")[0],
        },
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    (app,) = data["apps"]
    assert app["deleted"] == []
    assert any("settings" in note for note in app["notes"])


def test_app_option_and_unknown_app(repo: Path) -> None:
    code, data = as_json(repo, "--base", "HEAD", "--app", "kz", "--app", "web")
    assert code == 0
    assert [a["name"] for a in data["apps"]] == ["kz", "web"]
    assert all(not a["created"] and not a["updated"] for a in data["apps"])
    code, data = as_json(repo, "--base", "HEAD", "--app", "nope")
    assert code == 2
    assert "unknown app 'nope'" in data["errors"][0]["message"]
    assert "(known: cluster, kz, web)" in data["errors"][0]["message"]


def test_unknown_ref_exits_2_with_the_error_in_the_chosen_format(repo: Path) -> None:
    code, out, err = preview(repo, "--base", "does-not-exist")
    assert code == 2
    assert "'does-not-exist' is not a commit" in out  # the text report, not a bare message
    assert err == ""
    code, data = as_json(repo, "--base", "does-not-exist")
    assert code == 2
    (error,) = data["errors"]
    assert "'does-not-exist' is not a commit" in error["message"]
    assert error["reason"] == "GitError"
    code, out, _ = preview(repo, "--base", "does-not-exist", "--format", "markdown")
    assert code == 2 and "does-not-exist" in out and "is not a commit" in out


def test_secret_values_never_printed(repo: Path) -> None:
    secret = (repo / "apps/web/extra/secret.yaml").read_text()
    commit(
        repo,
        {
            "apps/web/extra/secret.yaml": secret.replace(SECRET_VALUE, "an0ther-s3cret-value")
            + "  extra: also-secret-value\n"
        },
    )
    for fmt in ("json", "markdown", "text"):
        code, out, err = preview(repo, "--base", "HEAD~1", "--format", fmt)
        assert code == 0
        for value in (SECRET_VALUE, "an0ther-s3cret-value", "also-secret-value"):
            assert value not in out and value not in err
    code, data = as_json(repo, "--base", "HEAD~1")
    (change,) = data["apps"][0]["updated"]
    assert change["kind"] == "Secret"
    assert "password" in change["diff"] and "extra" in change["diff"]


def test_no_progress_when_stderr_is_not_a_terminal(repo: Path) -> None:
    commit(repo, {"apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n"})
    _, _, err = preview(repo, "--base", "HEAD~1")
    assert err == ""


@pytest.mark.slow
def test_real_subprocess(repo: Path) -> None:
    commit(
        repo,
        {
            "base/deployment.yaml": (repo / "base/deployment.yaml")
            .read_text()
            .replace("api:1.0", "api:1.1")
        },
    )
    exe = Path(sys.executable).parent / "gitops-bot"
    proc = subprocess.run(
        [
            str(exe),
            "preview",
            "--repo",
            str(repo),
            "--base",
            "HEAD~1",
            "--format",
            "json",
            "--exit-code",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    (app,) = json.loads(proc.stdout)["apps"]
    assert app["name"] == "kz"
    assert names(app["updated"]) == ["Deployment/kz/api"]
    assert "+      - image: example/api:1.1" in app["updated"][0]["diff"]


def test_target_change_creates_on_new_target(repo: Path) -> None:
    config = (repo / ".gitops.yaml").read_text().replace("target: production", "target: staging")
    commit(repo, {".gitops.yaml": config})
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    (app,) = data["apps"]
    assert (app["name"], app["target"]) == ("cluster", "staging")
    assert len(app["created"]) == 5 and not app["unchanged"]
    assert any("'production'" in note for note in app["notes"])


def test_schema_command_prints_the_shipped_schema() -> None:
    from bot.manifests import schema

    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema()


@pytest.mark.slow
def test_progress_on_a_terminal(repo: Path) -> None:
    import os
    import pty

    commit(repo, {"apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n"})
    leader, follower = pty.openpty()
    exe = Path(sys.executable).parent / "gitops-bot"
    try:
        proc = subprocess.run(
            [str(exe), "preview", "--repo", str(repo), "--base", "HEAD~1", "--format", "json"],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            check=False,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO once the terminal has no writer left
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    progress = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "rendering 1 app(s) at head" in progress
    assert json.loads(proc.stdout)["apps"][0]["name"] == "web"  # stdout holds only the report


def test_broken_file_does_not_show_its_objects_as_deleted(repo: Path) -> None:
    commit(repo, {"apps/web/list.yaml": "apiVersion: v1\nkind: List\nitems: [\n"})
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 2
    (app,) = data["apps"]
    assert app["deleted"] == [] and app["created"] == [] and app["updated"] == []
    assert app["errors"][0]["file"] == "apps/web/list.yaml"
    # the deploy applies nothing of an app that does not render cleanly; the preview agrees
    assert any("does not render cleanly" in note for note in app["notes"])


def test_namespace_change_does_not_preview_deletions_the_deploy_would_not_make(
    repo: Path,
) -> None:
    config = (repo / ".gitops.yaml").read_text()
    commit(repo, {".gitops.yaml": config.replace("namespace: web\n", "namespace: web2\n", 1)})
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    (app,) = data["apps"]
    assert app["deleted"] == []
    assert app["created"]  # the objects that take the new namespace
    assert any("namespace changed from 'web' to 'web2'" in note for note in app["notes"])


def test_create_namespace_is_previewed_as_a_creation(repo: Path) -> None:
    config = (repo / ".gitops.yaml").read_text()
    commit(
        repo,
        {
            ".gitops.yaml": config.replace(
                "namespace: kz\n", "namespace: kz\n    createNamespace: true\n"
            )
        },
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0
    (app,) = data["apps"]
    assert app["name"] == "kz"
    (created,) = app["created"]
    assert (created["kind"], created["name"], created["namespace"]) == ("Namespace", "kz", None)
    assert created["source"]["file"] == ".gitops.yaml"
    assert "kind: Namespace" in created["diff"]
    # once the base has it too, it is unchanged; an app declaring the Namespace itself keeps its own
    commit(
        repo, {"apps/kz/app.properties": (repo / "apps/kz/app.properties").read_text() + "x=1\n"}
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    (app,) = data["apps"]
    assert not app["created"]
    assert any(o["kind"] == "Namespace" for o in app["unchanged"])


def test_invalid_base64_in_a_secret_fails_the_preview_without_its_value(repo: Path) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  token: {v}\n"
    commit(repo, {"apps/web/creds.yaml": secret.format(v="plain-text-s3cret")})
    for fmt in ("json", "text", "markdown"):
        code, out, _ = preview(repo, "--base", "HEAD~1", "--format", fmt)
        assert code == 2
        assert "plain-text-s3cret" not in out
        assert "data.token is not valid base64" in out
    code, data = as_json(repo, "--base", "HEAD~1")
    (error,) = data["apps"][0]["errors"]
    assert (error["file"], error["line"]) == ("apps/web/creds.yaml", 1)


def test_changed_files_of_no_app_are_named(repo: Path) -> None:
    from bot.jobs.compare import preview_commits

    commit(
        repo,
        {
            "README.md": "docs\n",
            "apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n",
        },
    )
    result = preview_commits(repo, "HEAD~1", "HEAD")
    assert [a.name for a in result.apps] == ["web"]
    assert result.unowned_files == ["README.md"]
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0 and data["unownedFiles"] == ["README.md"]
    code, out, _ = preview(repo, "--base", "HEAD~1")
    assert "README.md" in out


def test_argocd_example_apps_guestbook_change_is_previewed(tmp_path: Path) -> None:
    """Without .gitops.yaml, a change in the top-level `guestbook/` previews the guestbook app
    (it used to preview nothing: plain YAML was looked for only under deploy/, manifests/, k8s/)."""
    from bot.jobs.compare import preview_commits

    repo = make_repo(tmp_path, "argocd-example-apps")
    deployment = (repo / "guestbook/guestbook-ui-deployment.yaml").read_text()
    commit(
        repo,
        {
            "guestbook/guestbook-ui-deployment.yaml": deployment.replace(
                "replicas: 1", "replicas: 2"
            ),
            "jsonnet-guestbook/guestbook-ui.jsonnet": "[]\n",
        },
    )
    code, data = as_json(repo, "--base", "HEAD~1")
    assert code == 0, data
    (app,) = data["apps"]
    assert app["name"] == "guestbook"
    assert [o["name"] for o in app["updated"]] == ["guestbook-ui"]
    result = preview_commits(repo, "HEAD~1", "HEAD")
    assert result.unowned_files == ["jsonnet-guestbook/guestbook-ui.jsonnet"]


def test_merge_previews_the_head_merged_into_the_base_as_the_bot_does(repo: Path) -> None:
    """A branch behind its base: without --merge its diff reverts what landed on the base since;
    with --merge it shows only the branch's own change (what merging would deploy)."""
    from tests.fixtures.repos.builder import git

    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, {"apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n"})
    git(repo, "checkout", "-q", "main")
    commit(repo, {"apps/kz/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
    code, plain = as_json(repo, "--base", "main", "--head", "feature")
    assert code == 0 and sorted(a["name"] for a in plain["apps"]) == ["kz", "web"]
    code, merged = as_json(repo, "--base", "main", "--head", "feature", "--merge")
    assert code == 0
    (app,) = merged["apps"]
    assert app["name"] == "web" and names(app["created"]) == ["ConfigMap/web/n"]
    assert merged["base"] == git(repo, "rev-parse", "main") != base
    # a conflict is an error naming the files, exit code 2
    commit(repo, {"apps/web/new.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n"})
    code, conflict = as_json(repo, "--base", "main", "--head", "feature", "--merge")
    assert code == 2
    (error,) = conflict["errors"]
    assert error["reason"] == "MergeConflict" and "apps/web/new.yaml" in error["message"]
