"""The fake GitLab refuses what GitLab refuses, in GitLab's words: requests outside the API
description or documentation, values outside GitLab's lists, a note too long, a status moved
where GitLab's state machine does not go, a missing role or token scope, git without
credentials; and it answers as GitLab does: pagination headers, throttling, URL-encoded paths.
A fake that accepted what GitLab refuses would prove nothing about the bot."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fake_forge.contract import Contract
from tests.fake_forge.gitlab import DEVELOPER, GUEST, REPORTER, ROUTES, FakeGitLab
from tests.fake_forge.gitlab_contract import DOCUMENTED, gitlab_contract

REPO = "acme/app"
API = "/api/v4/projects/acme%2Fapp"


@pytest.fixture
def gl(fake_gitlab: FakeGitLab) -> FakeGitLab:
    fake_gitlab.create_project(REPO)
    fake_gitlab.add_member("acme", "gitops-bot", DEVELOPER)
    fake_gitlab.commit(REPO, "feature", {"a.yaml": "a: 1\n"})
    fake_gitlab.open_merge_request(REPO, source_branch="feature")
    return fake_gitlab


def call(gl: FakeGitLab, method: str, path: str, **kwargs: object) -> requests.Response:
    headers = {"PRIVATE-TOKEN": gl.bot_token or "", "Content-Type": "application/json"}
    return requests.request(method, gl.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def head(gl: FakeGitLab) -> str:
    return gl.project(REPO).mrs[1].head_sha


def test_the_contract_names_its_sources() -> None:
    contract = gitlab_contract()
    assert contract.version.startswith("gitlabhq/gitlabhq@0338625c")
    assert contract.version.endswith("doc/api/openapi/openapi_v2.yaml")
    from_spec = [op for op in contract.operations if not op.documented_at]
    documented = [op for op in contract.operations if op.documented_at]
    assert len(from_spec) >= 6 and all(
        op.documented_at.startswith("https://docs.gitlab.com/api/") for op in documented
    )
    # Each operation is checked once, the description winning over the documentation.
    keys = [(op.method, op.path) for op in contract.operations]
    assert len(keys) == len(set(keys))
    spec_keys = {(op.method, op.path) for op in from_spec}
    assert ("POST", "/api/v4/projects/{id}/statuses/{sha}") in spec_keys


def test_every_operation_has_a_route_and_every_route_an_operation() -> None:
    contract = gitlab_contract()
    assert {(op.method, op.path) for op in contract.operations} == set(ROUTES)
    documented = {(m.upper(), p) for p, ms in DOCUMENTED.items() for m in ms}
    assert set(ROUTES) <= documented  # the documentation pages cover every operation too


def test_a_status_state_outside_gitlabs_list_is_refused_as_gitlab_refuses_it(
    gl: FakeGitLab,
) -> None:
    answer = call(gl, "POST", f"{API}/statuses/{head(gl)}", json={"state": "error"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "state does not have a valid value"}
    assert gl.contract.violations  # the fixture would fail the test: cleared on purpose
    gl.contract.violations.clear()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "answer"),
    [
        ("GET", "/api/v4/projects/acme%2Fapp/nonsense", None, 404, {"error": "404 Not Found"}),
        ("POST", "/api/v4/projects/acme%2Fapp/issues", {}, 400, {"error": "title is missing"}),
        (
            "POST",
            "/api/v4/projects/acme%2Fapp/merge_requests/1/notes",
            b"{not json",
            400,
            {"error": "message body does not match declared format"},
        ),
        (
            "GET",
            "/api/v4/projects/acme%2Fapp/merge_requests?state=draft",
            None,
            400,
            {"error": "state does not have a valid value"},
        ),
        (
            "GET",
            "/api/v4/projects/acme%2Fapp/merge_requests?per_page=many",
            None,
            400,
            {"error": "per_page is invalid"},
        ),
        (
            "GET",
            "/api/v4/projects/acme%2Fapp/merge_requests/abc",
            None,
            404,
            {"error": "404 Not Found"},
        ),
        ("PATCH", "/api/v4/projects/acme%2Fapp", {}, 405, {"error": "405 Method Not Allowed"}),
    ],
)
def test_requests_outside_the_contract_are_refused_and_recorded(
    gl: FakeGitLab, method: str, path: str, body: object, status: int, answer: object
) -> None:
    if isinstance(body, bytes):
        response = call(gl, method, path, data=body)  # sent as JSON, but not JSON
    else:
        response = call(gl, method, path, json=body)
    assert (response.status_code, response.json()) == (status, answer)
    assert len(gl.contract.violations) == 1
    gl.contract.violations.clear()


def test_unknown_parameters_are_ignored_as_gitlab_does_but_recorded(gl: FakeGitLab) -> None:
    answer = call(gl, "POST", f"{API}/merge_requests/1/notes", json={"body": "x", "bdy": "y"})
    assert answer.status_code == 201
    assert gl.contract.violations == [
        "POST /api/v4/projects/acme%2Fapp/merge_requests/1/notes: unknown body parameter 'bdy' "
        "(the forge ignores it)"
    ]
    gl.contract.violations.clear()


def test_authentication_by_header_or_bearer(gl: FakeGitLab) -> None:
    token = gl.bot_token or ""
    by_header = requests.get(f"{gl.url}/api/v4/user", headers={"PRIVATE-TOKEN": token}, timeout=10)
    bearer = requests.get(
        f"{gl.url}/api/v4/user", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert by_header.json()["username"] == bearer.json()["username"] == "gitops-bot"
    wrong = requests.get(f"{gl.url}/api/v4/user", headers={"PRIVATE-TOKEN": "nope"}, timeout=10)
    assert (wrong.status_code, wrong.json()) == (401, {"message": "401 Unauthorized"})
    anonymous = requests.get(f"{gl.url}/api/v4/user", timeout=10)
    assert anonymous.status_code == 401
    # GitLab hides a private project from those who may not see it.
    hidden = requests.get(f"{gl.url}{API}", timeout=10)
    assert (hidden.status_code, hidden.json()) == (404, {"message": "404 Project Not Found"})


def test_token_scopes(gl: FakeGitLab) -> None:
    reader = gl.token_for("gitops-bot", scopes=("read_api",))
    headers = {"PRIVATE-TOKEN": reader}
    assert requests.get(f"{gl.url}{API}", headers=headers, timeout=10).status_code == 200
    write = requests.post(
        f"{gl.url}{API}/merge_requests/1/notes", json={"body": "x"}, headers=headers, timeout=10
    )
    assert write.status_code == 403 and write.json()["error"] == "insufficient_scope"


def test_roles(gl: FakeGitLab) -> None:
    gl.add_member(REPO, "rita", REPORTER)
    gl.add_member(REPO, "gus", GUEST)
    rita = {"PRIVATE-TOKEN": gl.token_for("rita")}
    gus = {"PRIVATE-TOKEN": gl.token_for("gus")}
    status = requests.post(
        f"{gl.url}{API}/statuses/{head(gl)}", json={"state": "success"}, headers=rita, timeout=10
    )
    assert (status.status_code, status.json()) == (403, {"message": "403 Forbidden"})
    assert (
        requests.get(f"{gl.url}{API}/merge_requests/1", headers=gus, timeout=10).status_code == 403
    )
    assert requests.get(f"{gl.url}{API}", headers=gus, timeout=10).status_code == 200
    note = call(gl, "POST", f"{API}/merge_requests/1/notes", json={"body": "bot's"}).json()
    edit = requests.put(
        f"{gl.url}{API}/merge_requests/1/notes/{note['id']}",
        json={"body": "rita's now"},
        headers=rita,
        timeout=10,
    )
    assert edit.status_code == 403  # only the author or a Maintainer


def test_a_note_over_the_limit_is_refused(gl: FakeGitLab) -> None:
    gl.note_limit = 10
    answer = call(gl, "POST", f"{API}/merge_requests/1/notes", json={"body": "x" * 11})
    assert answer.status_code == 400
    assert answer.json()["message"].startswith('400 Bad request - Note {:note=>["is too long')
    assert (
        call(gl, "POST", f"{API}/merge_requests/1/notes", json={"body": "x" * 10}).status_code
        == 201
    )


def test_status_transitions_follow_gitlabs_state_machine(gl: FakeGitLab) -> None:
    url = f"{API}/statuses/{head(gl)}"
    first = call(gl, "POST", url, json={"state": "running", "name": "gitops/preview"})
    assert first.status_code == 201 and first.json()["ref"] == "feature"
    again = call(gl, "POST", url, json={"state": "running", "name": "gitops/preview"})
    assert (again.status_code, again.json()) == (
        400,
        {
            "message": "Cannot transition status via :run from :running (Reason(s): Status "
            'cannot transition via "run")'
        },
    )
    back = call(gl, "POST", url, json={"state": "pending", "name": "gitops/preview"})
    assert back.status_code == 400 and ":enqueue from :running" in back.json()["message"]
    done = call(gl, "POST", url, json={"state": "success", "name": "gitops/preview"})
    assert done.status_code == 201 and done.json()["id"] == first.json()["id"]
    rerun = call(gl, "POST", url, json={"state": "pending", "name": "gitops/preview"})
    assert rerun.status_code == 201 and rerun.json()["id"] != first.json()["id"]
    listed = call(gl, "GET", f"{API}/repository/commits/{head(gl)}/statuses").json()
    assert [s["status"] for s in listed] == ["success", "pending"]


def test_a_status_needs_a_commit_a_branch_holds(gl: FakeGitLab) -> None:
    fork = gl.fork_project(REPO, "mallory")
    sha = gl.commit(fork.path, "evil", {"x": "1"}, pusher="mallory")
    iid = gl.open_merge_request(REPO, source_branch="evil", source_project=fork.path)
    url = f"{API}/statuses/{sha}"
    refused = call(gl, "POST", url, json={"state": "success"})
    assert (refused.status_code, refused.json()) == (
        404,
        {"message": "404 References for commit Not Found"},
    )
    ok = call(gl, "POST", url, json={"state": "success", "ref": f"refs/merge-requests/{iid}/head"})
    assert ok.status_code == 201
    unknown = call(gl, "POST", f"{API}/statuses/{'f' * 40}", json={"state": "success"})
    assert (unknown.status_code, unknown.json()) == (404, {"message": "404 Commit Not Found"})


def test_pagination_headers_as_gitlab_sends_them(gl: FakeGitLab) -> None:
    for _ in range(4):
        gl.open_merge_request(REPO, source_branch="feature")
    page = call(gl, "GET", f"{API}/merge_requests?per_page=2&page=2&state=opened")
    assert [mr["iid"] for mr in page.json()] == [3, 2]  # newest first by default
    h = page.headers
    assert (h["X-Page"], h["X-Per-Page"], h["X-Total"], h["X-Total-Pages"]) == ("2", "2", "5", "3")
    assert (h["X-Next-Page"], h["X-Prev-Page"]) == ("3", "1")
    links = requests.utils.parse_header_links(h["Link"])
    rels = {link["rel"]: link["url"] for link in links}
    assert set(rels) == {"prev", "next", "first", "last"}
    assert rels["next"].startswith(f"{gl.url}{API}/merge_requests?")
    assert "page=3" in rels["next"] and "per_page=2" in rels["next"]
    last = call(gl, "GET", f"{API}/merge_requests?per_page=100&page=1")
    assert last.headers["X-Next-Page"] == "" and len(last.json()) == 5
    capped = call(gl, "GET", f"{API}/merge_requests?per_page=1000")
    assert capped.headers["X-Per-Page"] == "100"


def test_merge_request_refs_as_gitlab_keeps_them(gl: FakeGitLab) -> None:
    project = gl.project(REPO)
    from tests.fake_forge import gitstore

    assert gitstore.rev(project.git_dir, "refs/merge-requests/1/head") == head(gl)
    merge = gitstore.rev(project.git_dir, "refs/merge-requests/1/merge")
    assert merge == project.mrs[1].test_merge_sha
    single = call(gl, "GET", f"{API}/merge_requests/1").json()
    assert single["diff_refs"]["head_sha"] == head(gl)
    assert single["diff_refs"]["start_sha"] == gitstore.rev(project.git_dir, "refs/heads/main")
    gl.commit(REPO, "main", {"a.yaml": "conflict\n"})  # the MR now conflicts
    assert gitstore.rev(project.git_dir, "refs/merge-requests/1/merge") is None
    assert call(gl, "GET", f"{API}/merge_requests/1").json()["has_conflicts"]


def test_a_push_to_the_source_branch_adds_a_system_note(gl: FakeGitLab) -> None:
    gl.commit(REPO, "feature", {"b.yaml": "b: 1\n"})
    notes = call(gl, "GET", f"{API}/merge_requests/1/notes").json()
    assert [n["system"] for n in notes] == [True]
    assert notes[0]["body"].startswith("added 1 commit")


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


def test_git_needs_a_token_and_a_role(gl: FakeGitLab, tmp_path: Path) -> None:
    url = f"{gl.url}/{REPO}.git"

    def ls_remote(user: str, token: str) -> subprocess.CompletedProcess[bytes]:
        header = base64.b64encode(f"{user}:{token}".encode()).decode()
        return subprocess.run(
            ["git", "-c", f"http.extraHeader=Authorization: Basic {header}", "ls-remote", url],
            capture_output=True,
            env=git_env(),
            timeout=60,
        )

    anonymous = subprocess.run(
        ["git", "ls-remote", url], capture_output=True, env=git_env(), timeout=60
    )
    assert anonymous.returncode != 0
    ok = ls_remote("oauth2", gl.bot_token or "")
    assert ok.returncode == 0, ok.stderr
    refs = ok.stdout.decode()
    assert "refs/merge-requests/1/head" in refs and "refs/merge-requests/1/merge" in refs
    assert ls_remote("oauth2", "wrong").returncode != 0
    gl.add_member(REPO, "gus", GUEST)
    assert ls_remote("gus", gl.token_for("gus")).returncode != 0  # guests cannot read code


def test_faults_speak_gitlab(gl: FakeGitLab) -> None:
    gl.fail(429, retry_after=7)
    throttled = call(gl, "GET", API)
    assert throttled.status_code == 429 and throttled.text == "Retry later\n"
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.headers["RateLimit-Remaining"] == "0"
    gl.fail(429)
    assert call(gl, "GET", API).headers["Retry-After"] == "60"
    gl.fail(502)
    assert call(gl, "GET", API).headers["Content-Type"] == "text/html"
    gl.fail(500)
    assert call(gl, "GET", API).json() == {"message": "500 Internal Server Error"}
    assert call(gl, "GET", API).status_code == 200


def test_the_shipped_description_is_what_the_trim_script_makes(tmp_path: Path) -> None:
    """``trim_gitlab_openapi.py`` run on a file holding the described operations writes the
    shipped JSON's operations (corrections included)."""
    import json

    import yaml

    from tests.fake_forge import trim_gitlab_openapi as trim

    shipped = json.loads(trim.OUT.read_text())
    spec = {"swagger": "2.0", "info": {"version": "v4"}, "paths": {}, "definitions": {}}
    for path, methods in shipped["paths"].items():
        for method, op in methods.items():
            params = [
                {"in": p["in"], "name": p["name"], "required": p["required"], **p["schema"]}
                for p in op["parameters"]
            ]
            if "requestBody" in op:
                spec["definitions"][op["operationId"]] = op["requestBody"]["schema"]
                params.append(
                    {
                        "in": "body",
                        "name": op["operationId"],
                        "required": op["requestBody"]["required"],
                        "schema": {"$ref": f"#/definitions/{op['operationId']}"},
                    }
                )
            spec["paths"].setdefault(path, {})[method] = {
                "operationId": op["operationId"],
                "parameters": params,
            }
    again = trim.trim(yaml.safe_load(yaml.safe_dump(spec)), "x")
    assert again["paths"] == shipped["paths"]


def test_standalone(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_forge",
            "--gitlab",
            "--port",
            "0",
            "--repo",
            "acme/platform/app",
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
            f"{lines['GITLAB_URL']}/api/v4/projects/acme%2Fplatform%2Fapp",
            headers={"PRIVATE-TOKEN": lines["GITLAB_TOKEN"]},
            timeout=10,
        )
        assert answer.json()["path_with_namespace"] == "acme/platform/app"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_github_contract_keeps_its_dialect() -> None:
    assert Contract().dialect.decode_path_params is False
