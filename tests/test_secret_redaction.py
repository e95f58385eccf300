"""No Secret value is ever printed, even where a message quotes what it was given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.cluster.runner import _run
from bot.manifests import AppSpec, RenderedApp
from bot.model import AppResult, Manifest, Mode, ObjectError, Source
from tests.fixtures.repos.builder import git, make_repo

VALUES = ("987654321", "very-secret-token-value")

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: 987654321
stringData:
  token: [very-secret-token-value]
"""


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_schema_errors_of_a_secret_do_not_quote_its_values(tmp_path: Path, fmt: str) -> None:
    repo = make_repo(tmp_path)
    (repo / "apps" / "a").mkdir(parents=True)
    (repo / "apps" / "a" / "secret.yaml").write_text(SECRET)
    (repo / ".gitops.yaml").write_text(
        "version: 1\napps:\n  - name: a\n    path: apps/a\n    validate: true\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "secret")
    result = CliRunner().invoke(
        main, ["preview", "--repo", str(repo), "--base", "HEAD~1", "--format", fmt]
    )
    assert result.exit_code == 2  # the schema error is reported...
    assert "data.password" in result.stdout  # ...naming the field...
    for value in VALUES:
        assert value not in result.stdout  # ...without its value
    if fmt == "json":
        assert json.loads(result.stdout)["apps"][0]["errors"]


class _Clusters:
    def get(self, name: str) -> object:
        return object()


def test_cluster_errors_quoting_a_secret_value_are_redacted() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "web"},
        "stringData": {"password": "hunter2-but-longer"},
    }
    app = RenderedApp(
        spec=AppSpec(name="a", path="apps/a"),
        manifests=[Manifest(app="a", obj=secret, source=Source("apps/a/s.yaml"))],
    )

    def one(cluster: object, rendered: object) -> AppResult:
        result = AppResult(name="a", target="default")
        result.errors.append(
            ObjectError('Secret "db" is invalid: data[password]: "hunter2-but-longer" is bad')
        )
        return result

    run = _run([app], _Clusters(), Mode.LIVE, one, skip_on_render_errors=False)  # type: ignore[arg-type]
    (error,) = run.apps[0].errors
    assert "hunter2-but-longer" not in error.message
    assert "<redacted>" in error.message


def kustomize_repo(tmp_path: Path, kustomization: str, files: dict[str, str]) -> Path:
    repo = make_repo(tmp_path)
    app = repo / "apps" / "k"
    app.mkdir(parents=True)
    (app / "kustomization.yaml").write_text(kustomization)
    for name, text in files.items():
        (app / name).write_text(text)
    (repo / ".gitops.yaml").write_text("version: 1\napps:\n  - name: k\n    path: apps/k\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "kustomize app")
    return repo


def preview_text(repo: Path) -> str:
    result = CliRunner().invoke(main, ["preview", "--repo", str(repo), "--base", "HEAD~1"])
    assert result.exit_code == 2, result.stdout  # the render failure is reported
    return result.stdout


def test_kustomize_errors_quoting_a_generator_literal_are_scrubbed(tmp_path: Path) -> None:
    repo = kustomize_repo(
        tmp_path,
        "secretGenerator:\n  - name: db\n    literals:\n      - 'PASSWORD: hunter2LEAKKUS'\n",
        {},
    )
    out = preview_text(repo)
    assert "kustomize failed" in out
    assert "hunter2LEAKKUS" not in out


def test_kustomize_errors_echoing_a_patch_are_cut(tmp_path: Path) -> None:
    kustomization = """\
resources: [secret.yaml]
patches:
  - target: {kind: Secret}
    patch: |-
      - op: replace
        path: /stringData
        value: {password: hunter2LEAKPATCH}
      bad
"""
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: x}\n"
    out = preview_text(kustomize_repo(tmp_path, kustomization, {"secret.yaml": secret}))
    assert "kustomize failed" in out
    assert "hunter2LEAKPATCH" not in out


def test_kustomize_errors_quoting_an_env_file_are_scrubbed(tmp_path: Path) -> None:
    """The env file's values are candidates even when kustomize fails on another line."""
    from bot.manifests.render import secret_candidates

    repo = kustomize_repo(
        tmp_path,
        "secretGenerator:\n  - name: db\n    envs: [db.env]\n",
        {"db.env": "PASSWORD=hunter2LEAKENV\n"},
    )
    assert "hunter2LEAKENV" in secret_candidates(
        repo, {"apps/k/kustomization.yaml", "apps/k/db.env"}
    )


@pytest.mark.parametrize(
    "value", ["!!int hunter2LEAKINT", "!!float hunter2LEAKF", "!!binary aGVsbG8gd29ybGQ="]
)
def test_yaml_values_that_do_not_fit_their_tag_are_not_quoted(tmp_path: Path, value: str) -> None:
    repo = make_repo(tmp_path)
    (repo / "apps" / "a").mkdir(parents=True)
    (repo / "apps" / "a" / "s.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData:\n  password: {value}\n"
    )
    (repo / ".gitops.yaml").write_text("version: 1\napps:\n  - name: a\n    path: apps/a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tagged value")
    out = preview_text(repo)
    assert "apps/a/s.yaml:5" in out
    for leak in ("hunter2LEAK", "aGVsbG8gd29ybGQ=", "hello world"):
        assert leak not in out
