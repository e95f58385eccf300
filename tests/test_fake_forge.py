"""The fake GitHub refuses what GitHub refuses: requests outside GitHub's OpenAPI description,
values outside its enums, bad JSON web tokens, git without credentials. A fake that accepted
them would prove nothing about the bot."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

from tests.fake_forge.contract import Contract
from tests.fake_forge.github import FakeGitHub

REPO = "acme/app"


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.create_repo(REPO)
    fake_github.set_permission(REPO, "gitops-bot", "write")
    return fake_github


def call(gh: FakeGitHub, method: str, path: str, **kwargs: object) -> requests.Response:
    headers = {"Authorization": f"token {gh.bot_token}"}
    return requests.request(method, gh.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def head(gh: FakeGitHub) -> str:
    return call(gh, "GET", f"/repos/{REPO}/branches/main").json()["commit"]["sha"]


def test_the_shipped_schemas_name_their_source() -> None:
    contract = Contract()
    assert contract.version.startswith("npm @octokit/openapi@")
    assert len(contract.operations) >= 20


def test_a_status_state_outside_the_enum_is_422(gh: FakeGitHub) -> None:
    answer = call(gh, "POST", f"/repos/{REPO}/statuses/{head(gh)}", json={"state": "done"})
    assert answer.status_code == 422
    assert "is not one of" in answer.json()["message"]
    assert gh.contract.violations  # the fixture would fail the test: clear on purpose
    gh.contract.violations.clear()


def test_a_description_over_140_characters_is_422(gh: FakeGitHub) -> None:
    answer = call(
        gh,
        "POST",
        f"/repos/{REPO}/statuses/{head(gh)}",
        json={"state": "success", "description": "x" * 141},
    )
    assert answer.status_code == 422
    assert (
        answer.json()["errors"][0]["message"]
        == "description is too long (maximum is 140 characters)"
    )


def test_a_comment_over_65536_characters_is_422(gh: FakeGitHub) -> None:
    gh.commit(REPO, "f", {"a": "1"})
    number = gh.open_pull_request(REPO, head="f")
    answer = call(gh, "POST", f"/repos/{REPO}/issues/{number}/comments", json={"body": "x" * 65537})
    assert answer.status_code == 422
    assert (
        call(
            gh, "POST", f"/repos/{REPO}/issues/{number}/comments", json={"body": "x" * 65536}
        ).status_code
        == 201
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/repos/acme/app/nonsense", None, 404),
        ("PUT", "/repos/acme/app", None, 404),
        ("POST", "/repos/acme/app/issues", b"{not json", 400),
        ("POST", "/repos/acme/app/issues", {"body": "no title"}, 422),
        ("POST", "/repos/acme/app/issues/comments/1/reactions", {"content": "party"}, 422),
        ("GET", "/repos/acme/app/pulls?state=merged", None, 422),
        ("GET", "/repos/acme/app/pulls/abc", None, 404),
    ],
)
def test_requests_outside_the_contract_are_refused_and_recorded(
    gh: FakeGitHub, method: str, path: str, body: object, status: int
) -> None:
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    assert call(gh, method, path, **kwargs).status_code == status
    assert len(gh.contract.violations) == 1
    gh.contract.violations.clear()


def test_unauthenticated_and_unknown_tokens_are_401(gh: FakeGitHub) -> None:
    assert requests.get(f"{gh.url}/repos/{REPO}", timeout=10).status_code == 401
    bad = requests.get(
        f"{gh.url}/repos/{REPO}", headers={"Authorization": "token nope"}, timeout=10
    )
    assert bad.status_code == 401 and bad.json()["message"] == "Bad credentials"


def test_app_endpoints_need_a_valid_jwt(gh: FakeGitHub) -> None:
    app = gh.create_app("gitops")
    installation = gh.install(app, [REPO])
    url = f"{gh.url}/app/installations/{installation}/access_tokens"
    now = int(time.time())

    def post(token: str) -> requests.Response:
        return requests.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    good = jwt.encode(
        {"iat": now - 60, "exp": now + 300, "iss": str(app.id)}, app.private_key_pem, "RS256"
    )
    answer = post(good)
    assert answer.status_code == 201 and answer.json()["token"].startswith("ghs_")
    expired = jwt.encode(
        {"iat": now - 700, "exp": now - 60, "iss": str(app.id)}, app.private_key_pem, "RS256"
    )
    assert post(expired).status_code == 401
    too_long = jwt.encode(
        {"iat": now, "exp": now + 3600, "iss": str(app.id)}, app.private_key_pem, "RS256"
    )
    assert post(too_long).status_code == 401
    other = gh.create_app("other")
    forged = jwt.encode(
        {"iat": now, "exp": now + 300, "iss": str(app.id)}, other.private_key_pem, "RS256"
    )
    assert post(forged).status_code == 401
    assert post("not-a-jwt").status_code == 401


def test_installation_tokens_expire(gh: FakeGitHub) -> None:
    from datetime import timedelta

    app = gh.create_app("gitops")
    installation = gh.install(app, [REPO])
    gh.token_ttl = timedelta(seconds=1)
    now = int(time.time())
    token = jwt.encode(
        {"iat": now - 60, "exp": now + 300, "iss": str(app.id)}, app.private_key_pem, "RS256"
    )
    value = requests.post(
        f"{gh.url}/app/installations/{installation}/access_tokens",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()["token"]
    auth = {"Authorization": f"token {value}"}
    assert requests.get(f"{gh.url}/repos/{REPO}", headers=auth, timeout=10).status_code == 200
    time.sleep(1.1)
    assert requests.get(f"{gh.url}/repos/{REPO}", headers=auth, timeout=10).status_code == 401


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


def test_git_needs_the_token(gh: FakeGitHub, tmp_path: Path) -> None:
    url = f"{gh.url}/{REPO}.git"
    anonymous = subprocess.run(
        ["git", "ls-remote", url], capture_output=True, env=git_env(), timeout=60
    )
    assert anonymous.returncode != 0
    import base64

    header = base64.b64encode(f"x-access-token:{gh.bot_token}".encode()).decode()
    ok = subprocess.run(
        [
            "git",
            "-c",
            f"http.extraHeader=Authorization: Basic {header}",
            "clone",
            "--bare",
            "-q",
            url,
            str(tmp_path / "clone.git"),
        ],
        capture_output=True,
        env=git_env(),
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    push = subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path / "clone.git"),
            "-c",
            f"http.extraHeader=Authorization: Basic {header}",
            "push",
            "-q",
            url,
            "HEAD:refs/heads/x",
        ],
        capture_output=True,
        env=git_env(),
        timeout=60,
    )
    assert push.returncode != 0  # the fake serves fetches only


def test_faults_and_latency(gh: FakeGitHub) -> None:
    gh.fail(503, times=1, retry_after=7)
    answer = call(gh, "GET", f"/repos/{REPO}")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "7"
    gh.fail(403, kind="secondary", retry_after=1)
    limited = call(gh, "GET", f"/repos/{REPO}")
    assert limited.status_code == 403 and "secondary rate limit" in limited.json()["message"]
    gh.fail(403, kind="primary")
    primary = call(gh, "GET", f"/repos/{REPO}")
    assert primary.headers["X-RateLimit-Remaining"] == "0"
    assert call(gh, "GET", f"/repos/{REPO}").status_code == 200


def test_a_client_gone_before_the_answer_is_not_a_crash_of_the_fake(gh: FakeGitHub) -> None:
    """A client that timed out and hung up (a bot's request timeout, a benchmark stopping) is
    not a fake-forge crash: no violation recorded, no traceback, the next request answered."""
    gh.fail(503, times=1, delay=0.3)
    host, port = gh.url.removeprefix("http://").split(":")[0], int(gh.url.rsplit(":", 1)[1])
    client = socket.create_connection((host, port))
    client.sendall(f"GET /repos/{REPO} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset: the fake's answer finds the connection gone
    time.sleep(0.6)
    assert gh.violations == []
    assert call(gh, "GET", f"/repos/{REPO}").status_code == 200


def test_standalone(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_forge",
            "--port",
            "0",
            "--repo",
            REPO,
            "--data",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert proc.stdout is not None
        lines = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(2))
        answer = requests.get(
            f"{lines['GITHUB_API_URL']}/repos/{REPO}",
            headers={"Authorization": f"token {lines['GITHUB_TOKEN']}"},
            timeout=10,
        )
        assert answer.json()["full_name"] == REPO
    finally:
        proc.terminate()
        proc.wait(timeout=10)
