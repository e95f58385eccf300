"""``gitops-bot apply`` end to end: a real git repository, the real CLI, the emulator."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.cli.apply import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_UNHEALTHY,
    ProgressBars,
    ProgressLines,
    exit_code,
)
from bot.model import AppResult, Health, Mode, ObjectError, ObjectHealth, ObjectRef, RunResult

pytestmark = pytest.mark.realcluster

GITOPS_YAML = """version: 1
apps:
- name: web
  path: web
  namespace: web
  healthTimeout: 20
"""

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    return path


def configmap(name: str, value: str) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value!r}\n"
    )


def run_apply(repo: Path, kubeconfig: Path, *extra: str) -> Any:
    runner = CliRunner()
    return runner.invoke(
        main,
        ["apply", "--repo", str(repo), "--kubeconfig", str(kubeconfig), "--format", "json", *extra],
        catch_exceptions=False,
    )


def test_apply_deploys_prunes_and_exits_zero(repo: Path, kubeconfig: Path) -> None:
    first = commit(
        repo,
        {
            ".gitops.yaml": GITOPS_YAML,
            "web/ns.yaml": NAMESPACE,
            "web/a.yaml": configmap("a", "1"),
            "web/b.yaml": configmap("b", "1"),
        },
        "first",
    )
    result = run_apply(repo, kubeconfig, "--ref", first)
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads(result.stdout)
    [app] = report["apps"]
    assert app["commit"] == first
    assert sorted(o["name"] for o in app["created"]) == ["a", "b", "web"]

    (repo / "web/b.yaml").unlink()
    second = commit(repo, {"web/a.yaml": configmap("a", "2")}, "second")
    dry = run_apply(repo, kubeconfig, "--ref", second, "--dry-run")
    assert dry.exit_code == EXIT_OK, dry.output
    assert json.loads(dry.stdout)["dryRun"] is True
    assert json.loads(dry.stdout)["title"].endswith("(deploy, dry run: nothing was changed)")
    dry_app = json.loads(dry.stdout)["apps"][0]
    assert [o["name"] for o in dry_app["updated"]] == ["a"]
    assert [o["name"] for o in dry_app["deleted"]] == ["b"]

    result = run_apply(repo, kubeconfig, "--ref", second)
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout)["dryRun"] is False
    assert json.loads(result.stdout)["title"].endswith("(deploy)")
    app = json.loads(result.stdout)["apps"][0]
    assert [o["name"] for o in app["updated"]] == ["a"]
    assert [o["name"] for o in app["deleted"]] == ["b"]

    # going back to the first commit is refused: it is older than what is deployed
    back = run_apply(repo, kubeconfig, "--ref", first)
    assert back.exit_code == EXIT_ERRORS
    errors = json.loads(back.stdout)["apps"][0]["errors"]
    assert errors[0]["reason"] == "OlderCommit"


def test_apply_exits_two_on_errors_and_names_unknown_apps(repo: Path, kubeconfig: Path) -> None:
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"
    sha = commit(
        repo, {".gitops.yaml": GITOPS_YAML, "web/ns.yaml": NAMESPACE, "web/bad.yaml": bad}, "bad"
    )
    result = run_apply(repo, kubeconfig, "--ref", sha)
    assert result.exit_code == EXIT_ERRORS
    runner = CliRunner()
    unknown = runner.invoke(
        main, ["apply", "--repo", str(repo), "--kubeconfig", str(kubeconfig), "--app", "nope"]
    )
    assert unknown.exit_code == 2 and "unknown app(s): nope" in unknown.output


def test_exit_code_rules() -> None:
    ref = ObjectRef("apps/v1", "Deployment", "web", "d")
    healthy = AppResult(name="a", target="t", health=[ObjectHealth(ref, Health.HEALTHY)])
    degraded = AppResult(name="a", target="t", health=[ObjectHealth(ref, Health.DEGRADED)])
    failed = AppResult(name="a", target="t", errors=[ObjectError("boom")])
    assert exit_code(RunResult(Mode.DEPLOY, [healthy])) == EXIT_OK
    assert exit_code(RunResult(Mode.DEPLOY, [healthy, degraded])) == EXIT_UNHEALTHY
    assert exit_code(RunResult(Mode.DEPLOY, [degraded, failed])) == EXIT_ERRORS


SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  token: {value}
"""


def test_preview_with_kubeconfig_diffs_head_against_the_live_cluster(
    repo: Path, kubeconfig: Path
) -> None:
    first = commit(
        repo,
        {
            ".gitops.yaml": GITOPS_YAML,
            "web/ns.yaml": NAMESPACE,
            "web/a.yaml": configmap("a", "1"),
            "web/b.yaml": configmap("b", "1"),
            "web/s.yaml": SECRET.format(value="s3cr3t-one"),
        },
        "first",
    )
    assert run_apply(repo, kubeconfig, "--ref", first).exit_code == EXIT_OK
    (repo / "web/b.yaml").unlink()
    second = commit(
        repo,
        {"web/a.yaml": configmap("a", "2"), "web/s.yaml": SECRET.format(value="s3cr3t-two")},
        "second",
    )
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "preview",
            "--repo",
            str(repo),
            "--base",
            first,
            "--head",
            second,
            "--kubeconfig",
            str(kubeconfig),
            "--format",
            "json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mode"] == "live" and report["head"] == second
    [app] = report["apps"]
    assert sorted(o["name"] for o in app["updated"]) == ["a", "creds"]
    assert [o["name"] for o in app["deleted"]] == ["b"]
    for value in ("s3cr3t-one", "s3cr3t-two"):
        assert value not in result.output
    # the cluster is untouched by a preview
    text = runner.invoke(
        main,
        [
            "preview",
            "--repo",
            str(repo),
            "--base",
            first,
            "--head",
            second,
            "--kubeconfig",
            str(kubeconfig),
            "--format",
            "markdown",
        ],
    )
    assert "s3cr3t" not in text.output and "<redacted" in text.output


def test_apply_output_never_contains_secret_values(repo: Path, kubeconfig: Path) -> None:
    sha = commit(
        repo,
        {
            ".gitops.yaml": GITOPS_YAML,
            "web/ns.yaml": NAMESPACE,
            "web/s.yaml": SECRET.format(value="p4ssw0rd-xyz"),
        },
        "s",
    )
    for fmt in ("json", "text", "markdown"):
        result = CliRunner().invoke(
            main,
            [
                "apply",
                "--repo",
                str(repo),
                "--ref",
                sha,
                "--kubeconfig",
                str(kubeconfig),
                "--format",
                fmt,
            ],
        )
        assert result.exit_code == EXIT_OK, result.output
        assert "p4ssw0rd" not in result.output
        assert "cDRzc3cwcmQteHl6" not in result.output  # base64 of the value


def test_drift_is_measured_against_the_deployed_commit(repo: Path, kubeconfig: Path) -> None:
    from bot.cluster import Cluster, Target, Targets
    from bot.jobs.drift import drift_report

    first = commit(
        repo,
        {
            ".gitops.yaml": GITOPS_YAML,
            "web/ns.yaml": NAMESPACE,
            "web/a.yaml": configmap("a", "1"),
            "web/b.yaml": configmap("b", "1"),
        },
        "first",
    )
    targets = Targets({"default": Target(name="default", kubeconfig=Path(kubeconfig))})
    never = drift_report(repo, targets=targets)
    assert "no deployed commit" in never.apps[0].notes[0]
    assert run_apply(repo, kubeconfig, "--ref", first).exit_code == EXIT_OK
    # a newer commit that is not deployed yet must not count as drift
    commit(repo, {"web/b.yaml": configmap("b", "2")}, "second, not deployed")
    with Cluster(Target(name="t", kubeconfig=Path(kubeconfig))) as cluster:
        res = cluster.resource("v1", "ConfigMap")
        cluster.request(
            "PATCH",
            res.path("web", "a"),
            query=[("fieldManager", "kubectl-edit")],
            body={"data": {"value": "by hand"}},
            content_type="application/merge-patch+json",
        )
    report = drift_report(repo, targets=targets)
    [app] = report.apps
    assert app.commit == first and not app.errors
    changes = {c.ref.name: c.change.value for c in app.changes}
    assert changes == {"web": "unchanged", "a": "updated", "b": "unchanged"}


def test_removed_app_is_previewed_as_the_deploy_treats_it(repo: Path, kubeconfig: Path) -> None:
    """Removing an app from .gitops.yaml deletes nothing; the live preview must not say so."""
    two_apps = GITOPS_YAML + "- name: old\n  path: old\n  namespace: web\n"
    first = commit(
        repo,
        {
            ".gitops.yaml": two_apps,
            "web/ns.yaml": NAMESPACE,
            "web/a.yaml": configmap("a", "1"),
            "old/gone.yaml": configmap("gone", "1"),
        },
        "two apps",
    )
    assert run_apply(repo, kubeconfig, "--ref", first).exit_code == EXIT_OK
    second = commit(repo, {".gitops.yaml": GITOPS_YAML}, "remove the app old")
    preview = CliRunner().invoke(
        main,
        [
            "preview",
            "--repo",
            str(repo),
            "--base",
            first,
            "--head",
            second,
            "--kubeconfig",
            str(kubeconfig),
            "--format",
            "json",
        ],
        catch_exceptions=False,
    )
    apps = {app["name"]: app for app in json.loads(preview.stdout)["apps"]}
    assert apps["old"]["deleted"] == []
    assert "stay in the cluster" in apps["old"]["notes"][0]
    assert run_apply(repo, kubeconfig, "--ref", second).exit_code == EXIT_OK
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("kubectl")),
            "--kubeconfig",
            str(kubeconfig),
            "get",
            "configmap",
            "gone",
            "-n",
            "web",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0  # still there, as previewed


def test_apply_errors_before_any_app_are_reports_in_the_chosen_format(
    repo: Path, tmp_path: Path
) -> None:
    """A broken .gitops.yaml, an unknown ref or app and bad settings all exit 2 with a report
    (they used to exit 1 with a bare message)."""
    sha = commit(
        repo, {".gitops.yaml": "version: 2\napps:\n  - {name: Web_App, path: web}\n"}, "broken"
    )
    kubeconfig = tmp_path / "kubeconfig"  # never read: nothing gets that far
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    runner = CliRunner()

    def apply(*args: str) -> Any:
        return runner.invoke(
            main, ["apply", "--repo", str(repo), "--kubeconfig", str(kubeconfig), *args]
        )

    result = apply("--format", "json")
    assert result.exit_code == EXIT_ERRORS
    report = json.loads(result.stdout)
    assert report["head"] == sha and report["apps"] == []
    assert [(e["line"], e["reason"]) for e in report["errors"]] == [
        (1, "ConfigError"),
        (3, "ConfigError"),
        (3, "ConfigError"),
    ]  # version, missing path and app name: every problem in one run
    result = apply("--ref", "no-such-ref")
    assert result.exit_code == EXIT_ERRORS
    assert "'no-such-ref' is not a commit" in result.stdout
    assert not result.stderr
    commit(repo, {".gitops.yaml": GITOPS_YAML, "web/ns.yaml": NAMESPACE}, "fixed")
    result = apply("--app", "nope", "--format", "markdown")
    assert result.exit_code == EXIT_ERRORS
    assert "unknown app(s): nope (known: web)" in result.stdout
    bad_settings = runner.invoke(
        main,
        ["apply", "--repo", str(repo), "--kubeconfig", str(kubeconfig), "--format", "json"],
        env={"GITOPS_KUBE_CONCURRENCY": "many"},
    )
    assert bad_settings.exit_code == EXIT_ERRORS
    assert "GITOPS_KUBE_CONCURRENCY" in json.loads(bad_settings.stdout)["errors"][0]["message"]


def test_two_apps_declaring_one_object_are_both_refused(repo: Path, kubeconfig: Path) -> None:
    two = GITOPS_YAML + "- name: copy\n  path: copy\n  namespace: web\n"
    sha = commit(
        repo,
        {
            ".gitops.yaml": two,
            "web/ns.yaml": NAMESPACE,
            "web/a.yaml": configmap("a", "1"),
            "copy/a.yaml": configmap("a", "2"),
            "copy/b.yaml": configmap("b", "2"),
        },
        "two apps, one ConfigMap",
    )
    result = run_apply(repo, kubeconfig, "--ref", sha)
    assert result.exit_code == EXIT_ERRORS
    apps = {a["name"]: a for a in json.loads(result.stdout)["apps"]}
    for name in ("web", "copy"):
        assert apps[name]["created"] == [] and apps[name]["updated"] == []
        (error,) = apps[name]["errors"]
        assert error["reason"] == "SharedObject" and error["object"]["name"] == "a"
    # `--app web` alone on one cluster: sent alone, it is the only owner there
    alone = run_apply(repo, kubeconfig, "--ref", sha, "--app", "web")
    assert alone.exit_code == EXIT_OK, alone.output
    assert sorted(o["name"] for o in json.loads(alone.stdout)["apps"][0]["created"]) == ["a", "web"]


def test_apply_prints_progress_lines_when_stderr_is_not_a_terminal(
    repo: Path, kubeconfig: Path
) -> None:
    sha = commit(
        repo,
        {".gitops.yaml": GITOPS_YAML, "web/ns.yaml": NAMESPACE, "web/a.yaml": configmap("a", "1")},
        "first",
    )
    result = run_apply(repo, kubeconfig, "--ref", sha)
    assert result.exit_code == EXIT_OK, result.output
    lines = result.stderr.splitlines()
    assert any(line.startswith("[web] applying") for line in lines), lines
    assert all(line.startswith("[web] ") for line in lines), lines


def test_progress_lines_every_step_and_every_interval() -> None:
    now = [0.0]
    written: list[str] = []
    lines = ProgressLines(written.append, interval=10.0, clock=lambda: now[0])
    web, api = lines("web"), lines("api")
    web("applying namespaced objects", 0, 3)
    web("applying namespaced objects", 2, 3)  # too soon for a line
    web("applying namespaced objects", 3, 3)  # the step completes: a line
    web("waiting for health", 0, 2)
    for second in range(1, 26):
        now[0] = float(second)
        web("waiting for health", 0, 2)
        if second == 5:
            api("pruning", 0, 1)
    web("waiting for health", 2, 2)
    assert written == [
        "[web] applying namespaced objects: 0/3",
        "[web] applying namespaced objects: 3/3",
        "[web] waiting for health: 0/2",
        "[api] pruning: 0/1",
        "[web] waiting for health: 0/2 (10 s)",
        "[web] waiting for health: 0/2 (20 s)",
        "[web] waiting for health: 2/2 (25 s)",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_on_a_terminal() -> None:
    stream = _Terminal()
    bars = ProgressBars(stream)
    web = bars("web")
    web("applying namespaced objects", 0, 4)
    web("applying namespaced objects", 4, 4)
    web("waiting for health", 1, 2)
    bars.close()
    text = stream.getvalue()
    assert "[web] applying namespaced objects" in text and "4/4" in text
    assert "[web] waiting for health" in text and "1/2" in text
