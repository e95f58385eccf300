"""``gitops-bot doctor`` against real parts: the fake GitHub and GitLab (tokens, Apps, roles), the
local API server with its restricted users (SelfSubjectAccessReviews answered by the same rules
as every request), and real Redis servers with and without an append-only file.

Each test says what an operator would see: which check, its status, and the fix.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bot import doctor
from bot.checks import Check, Status
from bot.cli import main
from bot.embedded_redis import redis_server_binary
from bot.forges import github as github_forge
from bot.forges import gitlab as gitlab_forge
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.gitlab import DEVELOPER, REPORTER, FakeGitLab

SECRET = "a-webhook-secret-long-enough"

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {a: b}
"""
API = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: api}
data: {a: b}
"""
CLUSTER = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: platform-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
"""
CONFIG = """\
version: 1
apps:
  - {name: web, path: apps/web, namespace: web}
  - {name: api, path: apps/api, namespace: api, prune: false}
  - {name: docs, path: apps/docs, namespace: docs, createNamespace: true}
  - {name: platform, path: apps/platform}
"""


def make_repo(root: Path, *, origin: str | None = None, config: str = CONFIG) -> Path:
    files = {
        ".gitops.yaml": config,
        "apps/web/web.yaml": WEB,
        "apps/api/api.yaml": API,
        "apps/docs/cm.yaml": API.replace("name: api", "name: docs"),
        "apps/platform/role.yaml": CLUSTER,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    if origin:
        subprocess.run(["git", "-C", str(root), "remote", "add", "origin", origin], check=True)
    return root


def by_name(checks: list[Check]) -> dict[tuple[str, str], Check]:
    return {(c.area, c.name): c for c in checks}


def statuses(checks: list[Check], area: str) -> dict[str, Status]:
    return {c.name: c.status for c in checks if c.area == area}


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GITOPS_DATA_DIR": str(tmp_path / "data"), "GITOPS_FORGE_WRITE_INTERVAL": "0", **extra}


def clusters_file(tmp_path: Path, kubeconfig: str, **target: Any) -> str:
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({"targets": {"default": {"kubeconfig": kubeconfig, **target}}}))
    return str(path)


@pytest.fixture(autouse=True)
def _no_ambient_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # The default target reads KUBECONFIG and ~/.kube/config: neither may leak in from outside.
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    github_forge.clear_caches()
    gitlab_forge.clear_caches()
    yield
    github_forge.clear_caches()
    gitlab_forge.clear_caches()


# --- nothing configured, settings ------------------------------------------------------------------


def test_with_nothing_configured_it_names_what_is_missing(tmp_path: Path) -> None:
    checks = doctor.diagnose(doctor.Options(), base_env(tmp_path))
    found = by_name(checks)
    forges = found[("forges", "credentials")]
    assert forges.status is Status.FAIL
    assert "GITHUB_TOKEN" in forges.fix and "GITLAB_TOKEN" in forges.fix
    assert "/setup/github-app" in forges.fix
    cluster = found[("cluster default", "credentials")]
    assert cluster.status is Status.FAIL and "KUBECONFIG" in cluster.fix
    assert found[("redis", "REDIS_URL")].status is Status.PASS  # serve embeds one
    assert doctor.exit_code(checks) == doctor.EXIT_FAILED
    assert not (tmp_path / "data").exists()  # doctor creates nothing


def test_a_malformed_setting_stops_with_its_name(tmp_path: Path) -> None:
    checks = doctor.diagnose(doctor.Options(), base_env(tmp_path, GITOPS_JOB_TIMEOUT="soon"))
    assert [(c.area, c.status) for c in checks] == [("settings", Status.FAIL)]
    assert "GITOPS_JOB_TIMEOUT" in checks[0].detail


def test_a_broken_clusters_file_is_a_failure_and_the_rest_still_runs(tmp_path: Path) -> None:
    broken = tmp_path / "clusters.yaml"
    broken.write_text("targets: {prod: {in_cluster: true, kubeconfig: x}}\n")
    checks = doctor.diagnose(doctor.Options(), base_env(tmp_path, GITOPS_CLUSTERS_FILE=str(broken)))
    found = by_name(checks)
    assert found[("settings", "GITOPS_CLUSTERS_FILE")].status is Status.FAIL
    assert ("forges", "credentials") in found  # the other checks ran
    assert not any(c.area.startswith("cluster") for c in checks)


def test_a_webhook_secret_without_credentials_and_credentials_without_secret(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    found = by_name(
        doctor.diagnose(doctor.Options(), base_env(tmp_path, GITHUB_WEBHOOK_SECRET="x" * 20))
    )
    assert found[("github", "credentials")].status is Status.FAIL
    assert "GITHUB_TOKEN" in found[("github", "credentials")].fix
    found = by_name(
        doctor.diagnose(
            doctor.Options(),
            base_env(
                tmp_path, GITHUB_API_URL=fake_github.url, GITHUB_TOKEN=fake_github.bot_token or ""
            ),
        )
    )
    secret = found[("webhooks", "GITHUB_WEBHOOK_SECRET")]
    assert secret.status is Status.FAIL and "404" in secret.detail
    short = by_name(
        doctor.webhook_checks(
            doctor.Settings.from_env({"GITHUB_TOKEN": "t", "GITHUB_WEBHOOK_SECRET": "short"})
        )
    )
    assert short[("webhooks", "GITHUB_WEBHOOK_SECRET")].status is Status.WARN


# --- GitHub ----------------------------------------------------------------------------------------


def github_env(fake: FakeGitHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_API_URL": fake.url,
        "GITHUB_TOKEN": fake.bot_token or "",
        "GITHUB_WEBHOOK_SECRET": SECRET,
        **extra,
    }
    return base_env(tmp_path, **env)


def test_a_token_is_probed_on_the_repository_of_the_clone(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake_github.create_repo("acme/app")
    fake_github.set_permission("acme/app", "gitops-bot", "write")
    repo = make_repo(tmp_path / "clone", origin=f"{fake_github.url}/acme/app.git")
    checks = doctor.diagnose(doctor.Options(repo=repo), github_env(fake_github, tmp_path))
    found = by_name(checks)
    assert found[("github", "token")].status is Status.PASS
    assert "gitops-bot" in found[("github", "token")].detail
    assert found[("github", "token scopes")].status is Status.SKIP  # fine-grained: no scopes
    assert statuses(checks, "github acme/app") == {
        "read the repository": Status.PASS,
        "read pull requests": Status.PASS,
        "read issues": Status.PASS,
        "fetch with git": Status.PASS,
        # the role allows writing, but a fine-grained token's own permissions are not reported
        "comment, set statuses": Status.WARN,
    }
    assert found[("repository", "GITOPS_REPOSITORIES")].status is Status.PASS
    # Only reads: doctor never writes to find out.
    assert {r.method for r in fake_github.api_requests()} == {"GET"}


def test_a_reader_token_fails_with_the_role_to_give(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake_github.create_repo("acme/app")
    fake_github.set_permission("acme/app", "gitops-bot", "read")
    checks = doctor.diagnose(
        doctor.Options(repositories=("acme/app",)), github_env(fake_github, tmp_path)
    )
    write = by_name(checks)[("github acme/app", "comment, set statuses")]
    assert write.status is Status.FAIL
    assert "give gitops-bot the Write role on acme/app" in write.fix
    assert doctor.exit_code(checks) == doctor.EXIT_FAILED


def test_a_repository_the_token_cannot_see(fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake_github.create_repo("acme/secret")
    checks = doctor.diagnose(
        doctor.Options(repositories=("acme/secret",)), github_env(fake_github, tmp_path)
    )
    read = by_name(checks)[("github acme/secret", "read the repository")]
    assert read.status is Status.FAIL and "cannot read acme/secret" in read.detail


def test_a_wrong_token(fake_github: FakeGitHub, tmp_path: Path) -> None:
    checks = doctor.diagnose(
        doctor.Options(), github_env(fake_github, tmp_path, GITHUB_TOKEN="ghp_wrong")
    )
    token = by_name(checks)[("github", "token")]
    assert token.status is Status.FAIL and "401" in token.detail
    assert "wrong, expired or revoked" in token.fix
    assert "ghp_wrong" not in json.dumps([c.to_json() for c in checks])


def app_env(fake: FakeGitHub, tmp_path: Path, app: Any) -> dict[str, str]:
    return base_env(
        tmp_path,
        GITHUB_API_URL=fake.url,
        GITHUB_APP_ID=str(app.id),
        GITHUB_APP_PRIVATE_KEY=app.private_key_pem,
        GITHUB_WEBHOOK_SECRET=SECRET,
    )


def test_a_github_app_installed_with_what_the_bot_needs(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake_github.create_repo("acme/app")
    app = fake_github.create_app("gitops")
    fake_github.install(app, ["acme/app"])
    checks = doctor.diagnose(
        doctor.Options(repositories=("acme/app",)), app_env(fake_github, tmp_path, app)
    )
    github = [c for c in checks if c.area.startswith("github")]
    assert all(c.status is Status.PASS for c in github), github
    assert by_name(checks)[("github", "installation on acme")].status is Status.PASS


def test_a_github_app_missing_a_permission_and_an_installation(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    fake_github.create_repo("acme/app")
    fake_github.create_repo("acme/other")
    app = fake_github.create_app(
        "thin",
        permissions={"metadata": "read", "contents": "read", "pull_requests": "write"},
        events=["pull_request", "push"],
    )
    fake_github.install(app, ["acme/app"])
    checks = doctor.diagnose(
        doctor.Options(repositories=("acme/app", "acme/other")),
        app_env(fake_github, tmp_path, app),
    )
    found = by_name(checks)
    lacking = found[("github", "App permissions and events")]
    assert lacking.status is Status.FAIL
    for need in ("Issues: write", "Commit statuses: write", "the Issue comment event"):
        assert need in lacking.detail
    assert f"{fake_github.url}/apps/thin" in lacking.fix
    assert found[("github", "installation on acme")].status is Status.FAIL
    other = found[("github acme/other", "installation")]
    assert other.status is Status.FAIL and "not installed on acme/other" in other.detail
    assert found[("github acme/app", "read issues")].status is Status.FAIL


def test_a_github_app_installed_nowhere_and_a_wrong_key(
    fake_github: FakeGitHub, tmp_path: Path
) -> None:
    app = fake_github.create_app("lonely")
    found = by_name(doctor.diagnose(doctor.Options(), app_env(fake_github, tmp_path, app)))
    nowhere = found[("github", "installations")]
    assert nowhere.status is Status.FAIL and nowhere.fix.endswith("/apps/lonely/installations/new")
    other = fake_github.create_app("other")
    env = app_env(fake_github, tmp_path, app) | {"GITHUB_APP_PRIVATE_KEY": other.private_key_pem}
    github_forge.clear_caches()
    wrong = by_name(doctor.diagnose(doctor.Options(), env))[("github", "GitHub App")]
    assert wrong.status is Status.FAIL and "private key" in wrong.fix


# --- GitLab ------------------------------------------------------------------------------------------


def gitlab_env(fake: FakeGitLab, tmp_path: Path, token: str) -> dict[str, str]:
    return base_env(tmp_path, GITLAB_URL=fake.url, GITLAB_TOKEN=token, GITLAB_WEBHOOK_SECRET=SECRET)


def test_gitlab_token_scopes_role_and_project(fake_gitlab: FakeGitLab, tmp_path: Path) -> None:
    fake_gitlab.create_project("acme/app")
    fake_gitlab.add_member("acme", "gitops-bot", DEVELOPER)
    checks = doctor.diagnose(
        doctor.Options(repositories=("gitlab:acme/app",)),
        gitlab_env(fake_gitlab, tmp_path, fake_gitlab.bot_token or ""),
    )
    gitlab = [c for c in checks if c.area.startswith("gitlab")]
    assert all(c.status is Status.PASS for c in gitlab), gitlab
    assert by_name(checks)[("gitlab acme/app", "role")].detail == "gitops-bot is Developer"
    assert by_name(checks)[("github", "credentials")].status is Status.SKIP


def test_gitlab_read_api_token_a_reporter_and_an_expiry(
    fake_gitlab: FakeGitLab, tmp_path: Path
) -> None:
    fake_gitlab.create_project("acme/app")
    fake_gitlab.add_member("acme", "reader", REPORTER)
    token = fake_gitlab.token_for("reader", scopes=("read_api", "read_repository"))
    found = by_name(
        doctor.diagnose(
            doctor.Options(repositories=("acme/app",)), gitlab_env(fake_gitlab, tmp_path, token)
        )
    )
    scopes = found[("gitlab", "token scopes")]
    assert scopes.status is Status.FAIL and "api scope" in scopes.fix
    role = found[("gitlab acme/app", "role")]
    assert role.status is Status.FAIL and "Developer" in role.fix
    soon = fake_gitlab.token_for("gitops-bot", expires_at=datetime.now(UTC) + timedelta(days=3))
    gitlab_forge.clear_caches()
    expiring = by_name(doctor.diagnose(doctor.Options(), gitlab_env(fake_gitlab, tmp_path, soon)))
    assert expiring[("gitlab", "token scopes")].status is Status.WARN


# --- Redis -------------------------------------------------------------------------------------------


class RedisServer:
    """A redis-server with the given options on a unix socket (the bundled binary)."""

    def __init__(self, directory: Path, *options: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = directory / "redis.sock"
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--dir",
                str(directory),
                "--save",
                "",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"unix://{self.socket}"
        for _ in range(500):
            if self._accepts():
                return
            assert self.process.poll() is None, "redis-server exited"
            time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def _accepts(self) -> bool:
        # The socket file appears at bind(), a moment before listen(): a connection in between
        # is refused (seen under load), so wait for one to be accepted.
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[RedisServer] = []

    def make(*options: str) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", *options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def redis_found(url: str, tmp_path: Path) -> dict[tuple[str, str], Check]:
    settings = doctor.Settings.from_env(base_env(tmp_path, REDIS_URL=url))
    return by_name(doctor.redis_checks(settings))


def test_redis_with_an_append_only_file_passes(redis_url: str, tmp_path: Path) -> None:
    found = redis_found(redis_url, tmp_path)
    assert found[("redis", "reachable")].status is Status.PASS
    assert found[("redis", "persistent (append-only file)")].status is Status.PASS
    assert found[("redis", "eviction")].status is Status.PASS


def test_redis_without_an_append_only_file_fails(redis_factory: Any, tmp_path: Path) -> None:
    server = redis_factory("--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    found = redis_found(server.url, tmp_path)
    aof = found[("redis", "persistent (append-only file)")]
    assert aof.status is Status.FAIL and "appendonly yes" in aof.fix
    assert found[("redis", "eviction")].status is Status.FAIL


def test_a_redis_refusing_config_is_unknown_not_fine(redis_factory: Any, tmp_path: Path) -> None:
    server = redis_factory("--appendonly", "yes", "--rename-command", "CONFIG", "")
    found = redis_found(server.url, tmp_path)
    assert found[("redis", "reachable")].status is Status.PASS
    unknown = found[("redis", "persistent (append-only file)")]
    assert unknown.status is Status.WARN and "cannot tell" in unknown.detail


def test_an_unreachable_redis_and_a_wrong_password(redis_factory: Any, tmp_path: Path) -> None:
    gone = redis_found(f"unix://{tmp_path}/nothing.sock", tmp_path)[("redis", "reachable")]
    assert gone.status is Status.FAIL
    server = redis_factory("--requirepass", "right")
    url = f"unix://:wrong@{server.socket}"
    refused = redis_found(url, tmp_path)[("redis", "reachable")]
    assert refused.status is Status.FAIL and "password" in refused.detail
    assert "wrong" not in refused.detail


# --- clusters ----------------------------------------------------------------------------------------


def cluster_checks(
    tmp_path: Path, kubeconfig: str, repo: Path | None, **target: Any
) -> list[Check]:
    env = base_env(tmp_path, GITOPS_CLUSTERS_FILE=clusters_file(tmp_path, kubeconfig, **target))
    return [
        c
        for c in doctor.diagnose(doctor.Options(repo=repo), env)
        if c.area.startswith(("cluster", "repository"))
    ]


def test_the_admin_may_do_everything_the_repository_needs(kubeconfig: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "clone")
    checks = cluster_checks(tmp_path, kubeconfig, repo)
    assert all(c.status is Status.PASS for c in checks), [
        c for c in checks if c.status is not Status.PASS
    ]
    found = by_name(checks)
    assert found[("cluster default", "reachable")].detail.startswith("Kubernetes v")
    titles = {c.name for c in checks if c.area == "cluster default"}
    assert "get, list, create, patch, delete deployments.apps -n web" in titles
    assert "get, list, create, patch configmaps -n api" in titles  # prune: false, no delete
    assert "get, create, patch namespaces/docs" in titles  # createNamespace, by name
    assert "get, create, patch secrets/gitops-bot.web -n web" in titles  # ApplySet parent
    assert "list pods -n web" in titles and "list replicasets.apps -n web" in titles
    assert "get, list, create, patch, delete clusterroles.rbac.authorization.k8s.io" in titles


def test_a_namespace_restricted_identity_fails_outside_its_namespace(
    kube_emulator: Any, tmp_path: Path
) -> None:
    kubeconfig = kube_emulator.write_kubeconfig(
        str(tmp_path / "web.kubeconfig"), user="namespace-web"
    )
    repo = make_repo(tmp_path / "clone")
    checks = cluster_checks(tmp_path, kubeconfig, repo)
    area = statuses(checks, "cluster default")
    assert area["get, list, create, patch, delete deployments.apps -n web"] is Status.PASS
    assert area["list pods -n web"] is Status.PASS
    assert area["get, list, create, patch configmaps -n api"] is Status.FAIL
    assert area["get, create, patch namespaces/docs"] is Status.FAIL
    assert (
        area["get, list, create, patch, delete clusterroles.rbac.authorization.k8s.io"]
        is Status.FAIL
    )
    denied = by_name(checks)[("cluster default", "get, list, create, patch configmaps -n api")]
    assert denied.detail.startswith("denied: get, list, create, patch (apps api)")
    assert "--rbac" in denied.fix and "kubectl auth can-i get configmaps -n api" in denied.fix


def test_a_read_only_identity_may_read_but_not_write(kube_emulator: Any, tmp_path: Path) -> None:
    kubeconfig = kube_emulator.write_kubeconfig(str(tmp_path / "ro.kubeconfig"), user="readonly")
    checks = cluster_checks(tmp_path, kubeconfig, make_repo(tmp_path / "clone"))
    denied = by_name(checks)[
        ("cluster default", "get, list, create, patch, delete deployments.apps -n web")
    ]
    assert denied.status is Status.FAIL
    assert denied.detail.startswith("denied: create, patch, delete")
    # Listing pods for the health wait is allowed: passes.
    assert statuses(checks, "cluster default")["list pods -n web"] is Status.PASS


def test_the_allowlist_of_the_target(kubeconfig: str, tmp_path: Path) -> None:
    checks = cluster_checks(
        tmp_path, kubeconfig, make_repo(tmp_path / "clone"), namespaces=["web", "docs"]
    )
    refusals = [c for c in checks if c.name == "allowlist"]
    assert all(c.status is Status.FAIL for c in refusals)
    text = " ".join(c.detail for c in refusals)
    assert "'api' is not allowed on target 'default'" in text
    assert "cluster-scoped" in text and "platform" in text


def test_an_app_naming_an_unknown_target(kubeconfig: str, tmp_path: Path) -> None:
    config = CONFIG + "  - {name: prod, path: apps/api, target: production}\n"
    checks = cluster_checks(tmp_path, kubeconfig, make_repo(tmp_path / "clone", config=config))
    unknown = by_name(checks)[("repository", "target production")]
    assert unknown.status is Status.FAIL and "prod" in unknown.detail


def test_the_repositories_a_target_admits(kubeconfig: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "clone", origin="https://github.example.com/acme/app.git")
    env = base_env(tmp_path, GITHUB_API_URL="https://github.example.com/api/v3")
    found = {}
    for allowed in ("acme/other-*", "acme/*"):
        env["GITOPS_CLUSTERS_FILE"] = clusters_file(tmp_path, kubeconfig, repositories=[allowed])
        checks = doctor.diagnose(doctor.Options(repo=repo), env)
        found[allowed] = by_name(checks)[("repository", "target default")]
    refused = found["acme/other-*"]
    assert refused.status is Status.FAIL
    assert "acme/app may not use target 'default'" in refused.detail
    assert "add acme/app to the target's repositories" in refused.fix
    assert found["acme/*"].status is Status.PASS


def test_without_repo_the_rights_are_skipped_and_reachability_checked(
    kubeconfig: str, tmp_path: Path
) -> None:
    found = by_name(cluster_checks(tmp_path, kubeconfig, None))
    assert found[("cluster default", "reachable")].status is Status.PASS
    assert found[("cluster default", "rights")].status is Status.SKIP


def test_an_unreachable_cluster(kube_emulator: Any, tmp_path: Path) -> None:
    kubeconfig = yaml.safe_load(
        Path(kube_emulator.write_kubeconfig(str(tmp_path / "k"), user="admin")).read_text()
    )
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "gone.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    found = by_name(cluster_checks(tmp_path, str(path), None))
    assert found[("cluster default", "reachable")].status is Status.FAIL


# --- --rbac and the command ----------------------------------------------------------------------------


def test_rbac_prints_roles_the_api_server_accepts(kubectl: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "clone")
    text = doctor.rbac_text(repo, service_account=("gitops-bot", "gitops-bot"))
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = [(d["kind"], d["metadata"].get("namespace")) for d in docs]
    assert ("Role", "web") in kinds and ("RoleBinding", "api") in kinds
    assert ("ClusterRole", None) in kinds and ("ClusterRoleBinding", None) in kinds
    roles = {
        d["metadata"].get("namespace"): d["rules"]
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    web = {(r["apiGroups"][0], tuple(r["resources"])): r for r in roles["web"]}
    assert web[("apps", ("deployments",))]["verbs"] == ["get", "list", "create", "patch", "delete"]
    assert web[("", ("secrets",))] == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["gitops-bot.web"],
        "verbs": ["get", "create", "patch"],
    }
    api = {tuple(r["resources"]): r["verbs"] for r in roles["api"] if not r.get("resourceNames")}
    assert api[("configmaps",)] == ["get", "list", "create", "patch"]  # prune: false
    cluster = roles[None]
    assert {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "resourceNames": ["docs"],
        "verbs": ["get", "create", "patch"],
    } in cluster
    assert "createNamespace makes this namespace" in text
    for doc in docs:
        subjects = doc.get("subjects")
        if subjects:
            assert subjects == [
                {"kind": "ServiceAccount", "name": "gitops-bot", "namespace": "gitops-bot"}
            ]
    for namespace in ("web", "api", "docs", "default", "gitops-bot"):
        kubectl("create", "namespace", namespace)
    kubectl.ok("apply", "--dry-run=server", "-f", "-", stdin=text)


def test_the_command_prints_json_and_exits_by_the_worst_check(
    fake_github: FakeGitHub, redis_url: str, kubeconfig: str, tmp_path: Path
) -> None:
    fake_github.create_repo("acme/app")
    fake_github.set_permission("acme/app", "gitops-bot", "write")
    app = fake_github.create_app("gitops")
    fake_github.install(app, ["acme/app"])
    env = app_env(fake_github, tmp_path, app) | {
        "REDIS_URL": redis_url,
        "GITOPS_CLUSTERS_FILE": clusters_file(tmp_path, kubeconfig),
    }
    repo = make_repo(tmp_path / "clone", origin=f"{fake_github.url}/acme/app.git")
    runner = CliRunner()
    result = runner.invoke(main, ["doctor", "--repo", str(repo), "--format", "json"], env=env)
    report = json.loads(result.output)
    assert report["status"] == "pass", [c for c in report["checks"] if c["status"] != "pass"]
    assert result.exit_code == 0
    assert report["ok"] is True and report["summary"]["fail"] == 0
    text = runner.invoke(main, ["doctor", "--repo", str(repo)], env=env)
    assert text.exit_code == 0
    assert text.output.splitlines()[0].split() == ["STATUS", "AREA", "CHECK", "RESULT"]
    assert "everything the bot needs is in place" in text.output
    assert app.private_key_pem.splitlines()[1] not in text.output + result.output
    failing = runner.invoke(main, ["doctor"], env=env | {"REDIS_URL": f"unix://{tmp_path}/x.sock"})
    assert failing.exit_code == 2
    assert "fix: check REDIS_URL" in failing.output
    rbac = runner.invoke(
        main, ["doctor", "--repo", str(repo), "--rbac", "--service-account", "bots:gitops"], env=env
    )
    assert rbac.exit_code == 0 and "name: gitops" in rbac.output
    assert runner.invoke(main, ["doctor", "--rbac"], env=env).exit_code == 2  # needs --repo
    wrong = runner.invoke(
        main, ["doctor", "--repo", str(repo), "--rbac", "--target", "prod"], env=env
    )
    assert wrong.exit_code == 2 and "no app deploys to target 'prod'" in wrong.output
