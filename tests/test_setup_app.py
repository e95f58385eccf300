"""``/setup/github-app`` end to end against the fake GitHub: the key in the log, the page and its
form, the form post to GitHub, GitHub's redirect with a code, the one conversion, the files (or
the Kubernetes Secret) written, and the route gone once an App is there.

The browser is played by ``requests`` (the form post to the fake, whose "create" answers with
GitHub's redirect) and Flask's test client (the bot's pages); one test runs ``gitops-bot serve``
for real. The fake is the real thing for the bot: the credentials the conversion hands over
authenticate as the new App afterwards.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import redis
import requests
from flask.testing import FlaskClient

from bot.app import create_app
from bot.app_credentials import Store
from bot.forges import github as github_forge
from bot.settings import Settings
from tests.fake_forge.github import FakeGitHub

PUBLIC = "https://gitops-bot.example.com"


class Forms(HTMLParser):
    """The forms of a page: action, method and their inputs' values."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({**values, "inputs": {}})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][values.get("name")] = values.get("value") or ""


def settings_for(fake: FakeGitHub, redis_url: str, data_dir: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "GITHUB_API_URL": fake.url,
            "REDIS_URL": redis_url,
            "GITOPS_DATA_DIR": str(data_dir),
            "GITOPS_PUBLIC_URL": PUBLIC,
            **extra,
        }
    )


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGitHub]:
    github_forge.clear_caches()
    with FakeGitHub(tmp_path / "fake") as gh:
        yield gh
    github_forge.clear_caches()
    assert gh.contract.violations == []


def setup_key(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> str:
    """What the operator does first: open the page, find the link in the log."""
    with caplog.at_level(logging.WARNING, logger="gitops_bot.setup"):
        answer = client.get("/setup/github-app")
    assert answer.status_code == 403, answer.text
    assert "GitHub App setup:" in answer.text  # where to look
    found = re.search(r"GitHub App setup: open (\S+)\?key=(\S+) ", caplog.text)
    assert found, caplog.text
    assert found.group(1) == f"{PUBLIC}/setup/github-app"  # never the visitor's Host
    return found.group(2)


def start(client: FlaskClient, key: str, org: str | None = None) -> dict[str, Any]:
    answer = client.get(
        "/setup/github-app", query_string={"key": key, **({"org": org} if org else {})}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"
    form = Forms(answer.text).forms[0]
    assert form["method"] == "post"
    return form


def post_to_github(form: dict[str, Any]) -> str:
    """The browser posts the manifest form; GitHub (the fake) answers with its redirect."""
    answer = requests.post(
        form["action"],
        data={"manifest": form["inputs"]["manifest"]},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def back_to_the_bot(client: FlaskClient, location: str) -> Any:
    parts = urlsplit(location)
    assert parts.path == "/setup/github-app/callback"
    return client.get(parts.path, query_string=dict(parse_qsl(parts.query)))


def conversions(fake: FakeGitHub) -> list[Any]:
    return [r for r in fake.requests if r.path.startswith("/app-manifests/")]


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_one_click_app_with_the_file_store(
    fake: FakeGitHub, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    settings = settings_for(fake, redis_url, data_dir)
    client = create_app(settings).test_client()
    key = setup_key(client, caplog)
    form = start(client, key)

    action = urlsplit(form["action"])
    assert f"{action.scheme}://{action.netloc}" == fake.url  # GitHub's web root for this API
    assert action.path == "/settings/apps/new"
    state = dict(parse_qsl(action.query))["state"]
    manifest = json.loads(form["inputs"]["manifest"])
    assert manifest["hook_attributes"] == {"url": f"{PUBLIC}/webhooks/github", "active": True}
    assert manifest["redirect_url"] == "http://localhost/setup/github-app/callback"
    assert manifest["default_permissions"] == {
        "contents": "read",
        "metadata": "read",
        "pull_requests": "write",
        "issues": "write",
        "statuses": "write",
    }
    assert manifest["default_events"] == ["pull_request", "issue_comment", "push"]
    assert manifest["public"] is False

    location = post_to_github(form)
    assert dict(parse_qsl(urlsplit(location).query))["state"] == state
    with caplog.at_level(logging.INFO):
        done = back_to_the_bot(client, location)
    assert done.status_code == 200, done.text
    assert len(conversions(fake)) == 1
    app = next(iter(fake.apps.values()))
    registration = fake.manifests.registrations[app.id]
    assert app.owner == fake.manifests.signed_in
    assert f"{app.slug}" in done.text and f"{app.id}" in done.text
    assert "/installations/new" in done.text

    store = Store.from_settings(settings)
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    for path in (store.env_file, store.key_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = env_file_values(store.env_file)
    assert values["GITHUB_APP_ID"] == str(app.id)
    assert values["GITHUB_WEBHOOK_SECRET"] == registration.webhook_secret
    assert values["GITHUB_API_URL"] == fake.url
    assert Path(values["GITHUB_APP_PRIVATE_KEY_FILE"]).read_text() == app.private_key_pem
    # The secrets never reach a page or a log line.
    pem_body = app.private_key_pem.splitlines()[1]
    for text in (done.text, caplog.text):
        assert registration.webhook_secret not in text
        assert pem_body not in text
        assert registration.client_secret not in text

    # The route is gone, for this process and for any other started with the same settings.
    for answer in (
        client.get("/setup/github-app", query_string={"key": key}),
        create_app(settings).test_client().get("/setup/github-app"),
        back_to_the_bot(client, location),
    ):
        assert answer.status_code == 404
        assert "already set up" in answer.json["error"]
    assert len(conversions(fake)) == 1

    # The settings written are the bot's: it now authenticates as the new App.
    loaded = Settings.from_env({**values, "GITOPS_FORGE_WRITE_INTERVAL": "0"})
    config = github_forge.GitHubConfig.from_settings(loaded)
    assert github_forge.identity(config).login == f"{app.slug}[bot]"


def test_an_organization_owns_the_app_when_asked(
    fake: FakeGitHub, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_user("acme", type="Organization")
    client = create_app(settings_for(fake, redis_url, tmp_path / "data")).test_client()
    key = setup_key(client, caplog)
    form = start(client, key, org="acme")
    assert urlsplit(form["action"]).path == "/organizations/acme/settings/apps/new"
    assert back_to_the_bot(client, post_to_github(form)).status_code == 200
    assert next(iter(fake.apps.values())).owner == "acme"
    bad = client.get("/setup/github-app", query_string={"key": key, "org": "no/such"})
    assert bad.status_code == 404  # the App is set up now: closed before anything else


def test_a_wrong_key_opens_nothing(
    fake: FakeGitHub, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = create_app(settings_for(fake, redis_url, tmp_path / "data")).test_client()
    key = setup_key(client, caplog)
    answer = client.get("/setup/github-app", query_string={"key": key[:-1] + "x"})
    assert answer.status_code == 403
    assert "<form" not in answer.text
    assert setup_key(client, caplog) == key  # the same key, logged again for the operator


def test_a_redirect_the_bot_did_not_start_makes_no_forge_call(
    fake: FakeGitHub, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    client = create_app(settings_for(fake, redis_url, data_dir)).test_client()
    key = setup_key(client, caplog)
    location = post_to_github(start(client, key))
    code = dict(parse_qsl(urlsplit(location).query))["code"]
    # Cross-site request forgery: a real code with a state this bot never issued.
    forged = client.get("/setup/github-app/callback", query_string={"code": code, "state": "x"})
    assert forged.status_code == 400
    missing = client.get("/setup/github-app/callback", query_string={"code": code})
    assert missing.status_code == 400
    assert conversions(fake) == []
    assert not Store.from_settings(settings_for(fake, redis_url, data_dir)).env_file.exists()
    # The real redirect still works, once; its state cannot be replayed.
    assert back_to_the_bot(client, location).status_code == 200
    assert len(conversions(fake)) == 1


def test_an_expired_code_is_reported_and_nothing_is_written(
    fake: FakeGitHub, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    settings = settings_for(fake, redis_url, data_dir)
    client = create_app(settings).test_client()
    key = setup_key(client, caplog)
    location = post_to_github(start(client, key))
    fake.manifests.code_ttl = 0  # an hour went by
    answer = back_to_the_bot(client, location)
    assert answer.status_code == 502
    assert "more than an hour old" in answer.text
    assert not Store.from_settings(settings).directory.exists()
    # Not closed: the operator starts again with the same key.
    fake.manifests.code_ttl = 3600
    assert back_to_the_bot(client, post_to_github(start(client, key))).status_code == 200


def test_an_app_left_on_disk_is_never_overwritten(
    fake: FakeGitHub, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(fake, redis_url, tmp_path / "data")
    store = Store.from_settings(settings)
    store.directory.mkdir(parents=True)
    store.key_file.write_text("an older key\n")
    client = create_app(settings).test_client()
    location = post_to_github(start(client, setup_key(client, caplog)))
    answer = back_to_the_bot(client, location)
    assert answer.status_code == 500
    assert "could not store it" in answer.text and "Delete the App on GitHub" in answer.text
    assert store.key_file.read_text() == "an older key\n"
    assert not store.env_file.exists()


def test_closed_when_an_app_is_configured(fake: FakeGitHub, redis_url: str, tmp_path: Path) -> None:
    app = fake.create_app("existing")
    settings = settings_for(
        fake,
        redis_url,
        tmp_path / "data",
        GITHUB_APP_ID=str(app.id),
        GITHUB_APP_PRIVATE_KEY=app.private_key_pem,
        GITHUB_WEBHOOK_SECRET="a-secret-of-enough-length",
    )
    client = create_app(settings).test_client()
    assert client.get("/setup/github-app").status_code == 404
    assert client.get("/setup/github-app/callback?code=c&state=s").status_code == 404
    assert redis.Redis.from_url(redis_url).get("gitops:setup:github-app:key") is None


def test_the_secret_store_creates_a_kubernetes_secret(
    fake: FakeGitHub,
    redis_url: str,
    tmp_path: Path,
    kubeconfig: str,
    kubectl: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    kubectl.ok("create", "namespace", "gitops-bot")
    settings = settings_for(
        fake,
        redis_url,
        tmp_path / "data",
        GITOPS_GITHUB_APP_STORE="secret:gitops-bot/gitops-bot-github-app",
    )
    client = create_app(settings).test_client()
    key = setup_key(client, caplog)
    page = client.get("/setup/github-app", query_string={"key": key})
    assert "Kubernetes Secret gitops-bot/gitops-bot-github-app" in page.text
    form = start(client, key)
    done = back_to_the_bot(client, post_to_github(form))
    assert done.status_code == 200, done.text
    assert "rollout restart" in done.text
    app = next(iter(fake.apps.values()))
    secret = kubectl.get("secret", "gitops-bot-github-app", "-n", "gitops-bot")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["GITHUB_APP_ID"] == str(app.id)
    assert data["GITHUB_APP_PRIVATE_KEY"] == app.private_key_pem
    assert data["GITHUB_WEBHOOK_SECRET"] == fake.manifests.registrations[app.id].webhook_secret
    assert not (tmp_path / "data" / "github-app").exists()
    # Gone, even for a process whose Redis forgot: the Secret itself closes the route.
    redis.Redis.from_url(redis_url).flushall()
    assert create_app(settings).test_client().get("/setup/github-app").status_code == 404


@pytest.mark.slow
def test_serve_offers_the_setup_without_any_secret(
    fake: FakeGitHub, redis_url: str, tmp_path: Path
) -> None:
    """`gitops-bot serve --url` with nothing configured: it starts, serves the setup page (the
    link in its log), creates the App, and closes the page."""
    from tests.test_serve import free_port, wait_until

    data_dir = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_"))}
    env.update(
        GITHUB_API_URL=fake.url,
        REDIS_URL=redis_url,
        GITOPS_DATA_DIR=str(data_dir),
        GITOPS_WEB_WORKERS="2",
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gitops-bot")),
                "serve",
                "--no-workers",
                "--port",
                str(port),
                "--url",
                PUBLIC,
            ],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return requests.get(f"{base}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, "serve answering")
        assert "no webhook secret is set" in log.read_text()
        # Deliveries are refused as before: the setup route weakens nothing.
        assert requests.post(f"{base}/webhooks/github", data=b"{}", timeout=5).status_code == 404
        assert requests.get(f"{base}/setup/github-app", timeout=5).status_code == 403
        wait_until(lambda: "GitHub App setup: open" in log.read_text(), "the link in the log")
        key = re.search(r"\?key=(\S+)", log.read_text())
        assert key
        session = requests.Session()
        page = session.get(f"{base}/setup/github-app", params={"key": key.group(1)}, timeout=5)
        assert page.status_code == 200, page.text
        location = post_to_github(Forms(page.text).forms[0])
        assert location.startswith(f"{base}/setup/github-app/callback?")
        done = session.get(location, timeout=30)
        assert done.status_code == 200, done.text
        assert Store.from_settings(
            Settings.from_env({"GITOPS_DATA_DIR": str(data_dir)})
        ).env_file.exists()
        for _ in range(4):  # every gunicorn worker knows
            assert requests.get(f"{base}/setup/github-app", timeout=5).status_code == 404
        assert "GitHub App" in log.read_text() and "created and stored" in log.read_text()
        app = next(iter(fake.apps.values()))
        assert fake.manifests.registrations[app.id].webhook_secret not in log.read_text()
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_the_fake_refuses_a_manifest_github_would_refuse(fake: FakeGitHub) -> None:
    """The fake's form is held to GitHub's rules, so a bad manifest from the bot would show."""
    web = f"{fake.url}/settings/apps/new?state=s"
    cases = {
        "not json": "{",
        "no url": json.dumps({"name": "x"}),
        "hook without url": json.dumps({"url": "https://x", "hook_attributes": {}}),
        "event without permission": json.dumps(
            {"url": "https://x", "default_events": ["push"], "default_permissions": {}}
        ),
        "bad level": json.dumps({"url": "https://x", "default_permissions": {"issues": "all"}}),
    }
    for case, manifest in cases.items():
        answer = requests.post(web, data={"manifest": manifest}, allow_redirects=False, timeout=5)
        assert answer.status_code == 422, case
    missing_org = f"{fake.url}/organizations/nobody/settings/apps/new"
    ok = json.dumps({"url": "https://x"})
    assert requests.post(missing_org, data={"manifest": ok}, timeout=5).status_code == 404
    assert fake.apps == {}
    answer = requests.post(web, data={"manifest": ok}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("https://x?code=")
    code = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))["code"]
    first = requests.post(f"{fake.url}/app-manifests/{code}/conversions", timeout=5)
    assert first.status_code == 201 and "pem" in first.json()
    again = requests.post(f"{fake.url}/app-manifests/{code}/conversions", timeout=5)
    assert again.status_code == 404  # a code works once
