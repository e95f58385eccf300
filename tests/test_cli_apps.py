"""`gitops-bot apps`: the apps of a repository, configured or discovered; and a fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from tests.fixtures.repos.builder import HERE, commit, make_repo


def apps(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["apps", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_discovered_apps_of_argocd_example_apps() -> None:
    code, out, _ = apps("--repo", str(HERE / "argocd-example-apps"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("5 apps discovered (no .gitops.yaml")
    assert lines[1].split() == ["NAME", "PATH", "TARGET", "NAMESPACE", "RENDERER"]
    assert lines[3].split() == ["guestbook", "guestbook", "default", "-", "plain"]
    code, out, _ = apps("--repo", str(HERE / "argocd-example-apps"), "--format", "json")
    data = json.loads(out)
    assert data["source"] == "discovered" and data["errors"] == []
    assert {(a["name"], a["renderer"]) for a in data["apps"]} == {
        ("apps", "helm"),
        ("guestbook", "plain"),
        ("helm-guestbook", "helm"),
        ("helm-hooks", "plain"),
        ("kustomize-guestbook", "kustomize"),
    }


def test_configured_apps_with_target_and_namespace() -> None:
    code, out, _ = apps("--repo", str(HERE / "basic"), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["source"] == ".gitops.yaml"
    assert data["apps"][0] == {
        "name": "web",
        "path": "apps/web",
        "target": "default",
        "namespace": "web",
        "renderer": "plain",
    }
    assert [(a["name"], a["target"], a["renderer"]) for a in data["apps"][1:]] == [
        ("cluster", "production", "plain"),
        ("kz", "default", "kustomize"),
    ]


def test_broken_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "basic")
    text = (repo / ".gitops.yaml").read_text().replace("path: apps/kz", "path: apps/kzz")
    (repo / ".gitops.yaml").write_text(text + "  - {name: web, path: apps/web}\n")
    code, out, err = apps("--repo", str(repo))
    assert code == 2 and out == ""
    assert ".gitops.yaml:11: app path 'apps/kzz' does not exist" in err
    assert ".gitops.yaml:14: app name 'web' is used twice" in err
    code, out, _ = apps("--repo", str(repo), "--format", "json")
    assert code == 2
    assert [e["line"] for e in json.loads(out)["errors"]] == [11, 14]
    # the committed tree is still fine
    code, out, _ = apps("--repo", str(repo), "--ref", "HEAD", "--format", "json")
    assert code == 0 and len(json.loads(out)["apps"]) == 3
    commit(repo, {})
    code, _, err = apps("--repo", str(repo), "--ref", "nope")
    assert code == 2 and "'nope' is not a commit" in err


def test_help_imports_no_heavy_library() -> None:
    """`gitops-bot --help` must start fast: no Kubernetes client, Celery, Redis, schema or YAML
    library is imported to list the commands (bench/cli.py measures the time)."""
    probe = (
        "import sys, io, contextlib\n"
        "sys.argv = ['gitops-bot', '--help']\n"
        "from bot.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('kubernetes', 'celery', 'redis', 'jsonschema', 'yaml', 'flask', 'bot.cluster')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print('apply' in out.getvalue() and 'apps' in out.getvalue())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.split("\n")[:2] == ["[]", "True"], proc.stdout + proc.stderr


def test_an_unexpected_failure_is_still_a_report_with_exit_code_2() -> None:
    from bot.cli import EXIT_ERRORS, error_result, exit_code
    from bot.model import Mode

    result = error_result(Mode.DEPLOY, ValueError("boom"))
    (error,) = result.errors
    assert error.reason == "Internal" and "ValueError: boom" in error.message
    assert exit_code(result) == EXIT_ERRORS
