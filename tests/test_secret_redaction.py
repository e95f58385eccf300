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
