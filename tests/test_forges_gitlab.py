"""The GitLab adapter driven through real python-gitlab against the fake GitLab: every protocol
method, retries with ``Retry-After``, one clear permanent error per refusal, and no credential
anywhere it does not belong."""

from __future__ import annotations

import base64
import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.errors import (
    ForgeAccessDenied,
    ForgeHostRefused,
    ForgeNotConfigured,
    ForgePermanentError,
    ForgeRefused,
    ForgeUnavailable,
    PermanentError,
    SettingsError,
    TransientError,
)
from bot.events import Repository
from bot.forges import (
    Forge,
    Marker,
    Permission,
    PullState,
    StatusState,
    connect,
    connect_by_name,
    startup_warnings,
)
from bot.forges import gitlab as gitlab_forge
from bot.forges.gitlab import GitLabConfig, GitLabForge, access_level_permission
from bot.forges.sticky import part_limit, reconcile
from bot.settings import Settings
from tests.fake_forge import gitstore
from tests.fake_forge.gitlab import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    OWNER,
    PLANNER,
    REPORTER,
    FakeGitLab,
)

REPO = "acme/platform/app"  # a subgroup, as GitLab projects often live


@pytest.fixture
def gl(fake_gitlab: FakeGitLab) -> FakeGitLab:
    fake_gitlab.create_project(REPO, files={"app/cm.yaml": "a: 1\n", "README.md": "hi\n"})
    fake_gitlab.add_member("acme", "gitops-bot", DEVELOPER)  # inherited by acme/platform/app
    fake_gitlab.commit(REPO, "feature", {"app/cm.yaml": "a: 2\n"})
    fake_gitlab.open_merge_request(REPO, source_branch="feature", author="alice", title="Bump a")
    return fake_gitlab


def fast(config: GitLabConfig) -> GitLabConfig:
    """A small retry budget, so tests of an outage stay fast (python-gitlab backs off
    0.1 s, 0.2 s, ... without ``Retry-After``)."""
    return replace(config, max_retries=3)


@pytest.fixture
def forge(gl: FakeGitLab, gitlab_settings: Settings) -> GitLabForge:
    return GitLabForge(fast(GitLabConfig.from_settings(gitlab_settings)), REPO)


def event_repository(api_url: str, full_name: str = REPO) -> Repository:
    return Repository(
        provider="gitlab",
        full_name=full_name,
        id=1,
        default_branch="main",
        clone_url=f"https://example.com/{full_name}.git",
        web_url=f"https://example.com/{full_name}",
        api_url=api_url,
    )


def head_of(gl: FakeGitLab, iid: int = 1) -> str:
    return gl.project(REPO).mrs[iid].head_sha


# --- every protocol method --------------------------------------------------------------------


def test_the_adapter_satisfies_the_protocol(forge: GitLabForge) -> None:
    assert isinstance(forge, Forge)
    assert (forge.provider, forge.comment_limit) == ("gitlab", 1_000_000)


def test_identity_is_asked_once_per_process(forge: GitLabForge, gl: FakeGitLab) -> None:
    assert forge.identity().login == "gitops-bot"
    assert not forge.identity().is_app
    other = GitLabForge(forge.config, REPO)
    assert other.identity().login == "gitops-bot"
    assert [r.path for r in gl.api_requests()].count("/api/v4/user") == 1


def test_repository_info_comes_from_the_api(forge: GitLabForge, gl: FakeGitLab) -> None:
    info = forge.repository_info()
    assert info.full_name == REPO
    assert info.default_branch == "main"
    assert info.clone_url == f"{gl.url}/{REPO}.git"
    assert info.web_url == f"{gl.url}/{REPO}"
    assert info.default_branch_sha == gitstore.rev(gl.project(REPO).git_dir, "refs/heads/main")
    assert info.private
    # python-gitlab names the project by its URL-encoded path.
    assert any(r.path == "/api/v4/projects/acme%2Fplatform%2Fapp" for r in gl.api_requests())


def test_merge_request(forge: GitLabForge, gl: FakeGitLab) -> None:
    pr = forge.pull_request(1)
    mr = gl.project(REPO).mrs[1]
    assert (pr.number, pr.state, pr.head_sha, pr.head_ref) == (
        1,
        PullState.OPEN,
        mr.head_sha,
        "feature",
    )
    assert (pr.base_ref, pr.base_sha) == ("main", mr.start_sha)
    assert (pr.author, pr.draft, pr.from_fork, pr.title) == ("alice", False, False, "Bump a")
    assert (pr.head_fetch_ref, pr.merge_ref) == (
        "refs/merge-requests/1/head",
        "refs/merge-requests/1/merge",
    )
    assert pr.web_url == f"{gl.url}/{REPO}/-/merge_requests/1"


def test_fork_draft_merged_closed_and_locked_merge_requests(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    fork = gl.fork_project(REPO, "mallory")
    gl.commit(fork.path, "evil", {"x.yaml": "x: 1\n"}, pusher="mallory")
    forked = gl.open_merge_request(
        REPO, source_branch="evil", source_project=fork.path, author="mallory"
    )
    gl.commit(REPO, "wip", {"y.yaml": "y: 1\n"})
    draft = gl.open_merge_request(REPO, source_branch="wip", draft=True)
    gl.commit(REPO, "other", {"z.yaml": "z: 1\n"})
    locked = gl.open_merge_request(REPO, source_branch="other")
    assert forge.pull_request(forked).from_fork
    assert forge.pull_request(draft).draft
    gl.project(REPO).mrs[locked].state = "locked"  # GitLab is merging it right now
    assert forge.pull_request(locked).state is PullState.OPEN
    gl.merge_merge_request(REPO, 1)
    gl.close_merge_request(REPO, draft)
    assert forge.pull_request(1).state is PullState.MERGED
    assert forge.pull_request(draft).state is PullState.CLOSED
    gl.project(REPO).mrs[locked].state = "opened"
    assert [p.number for p in forge.open_pull_requests()] == [forked, locked]


def test_open_merge_requests_are_paginated_oldest_first(forge: GitLabForge, gl: FakeGitLab) -> None:
    for _ in range(104):
        gl.open_merge_request(REPO, source_branch="feature")
    merge_requests = forge.open_pull_requests()
    assert [p.number for p in merge_requests] == list(range(1, 106))
    assert {p.base_sha for p in merge_requests} == {gl.project(REPO).mrs[1].start_sha}
    pages = [r for r in gl.api_requests() if r.path.endswith("/merge_requests")]
    assert len(pages) == 2  # per_page=100, following GitLab's Link header


def test_merge_requests_for_a_commit(forge: GitLabForge, gl: FakeGitLab) -> None:
    assert [p.number for p in forge.pull_requests_for_commit(head_of(gl))] == [1]
    merge = gl.merge_merge_request(REPO, 1)
    assert [p.number for p in forge.pull_requests_for_commit(merge)] == [1]
    assert forge.pull_requests_for_commit(merge)[0].state is PullState.MERGED


def test_notes_create_edit_delete_and_award(forge: GitLabForge, gl: FakeGitLab) -> None:
    gl.comment_as("alice", REPO, 1, "/sync")
    gl.add_system_note(REPO, 1, "changed the description")
    made = forge.create_comment(1, "hello")
    assert made.author == "gitops-bot" and not made.author_is_bot
    edited = forge.edit_comment(1, made.id, "hello again")
    assert edited.body == "hello again" and edited.id == made.id
    listed = forge.comments(1)
    # Oldest first; the system notes (GitLab's own "added 1 commit", ...) are left out.
    assert [(c.author, c.body) for c in listed] == [
        ("alice", "/sync"),
        ("gitops-bot", "hello again"),
    ]
    forge.react(1, listed[0].id, "eyes")
    forge.react(1, listed[0].id, "eyes")  # twice is fine
    note = gl.notes(REPO, 1)[0]
    assert [(gl.users_by_id[a.user_id].username, a.name) for a in note.awards] == [
        ("gitops-bot", "eyes")
    ]
    forge.react(1, listed[0].id, "+1")
    assert [a.name for a in gl.notes(REPO, 1)[0].awards] == ["eyes", "thumbsup"]
    forge.delete_comment(1, made.id)
    forge.delete_comment(1, made.id)  # already gone is fine
    assert [n.body for n in gl.notes(REPO, 1)] == ["/sync"]


def test_access_token_bots_are_marked(forge: GitLabForge, gl: FakeGitLab) -> None:
    bot, _ = gl.project_access_token(REPO)
    gl.comment_as(bot.username, REPO, 1, "beep")
    gl.comment_as("alice", REPO, 1, "hi")
    assert [c.author_is_bot for c in forge.comments(1)] == [True, False]


def test_a_missing_note_or_merge_request_is_named(forge: GitLabForge) -> None:
    with pytest.raises(
        ForgeRefused, match=r"merge request !99 does not exist on acme/platform/app"
    ):
        forge.pull_request(99)
    with pytest.raises(ForgeRefused, match=r"note 12345 on !1 does not exist"):
        forge.edit_comment(1, 12345, "x")
    with pytest.raises(ForgeRefused, match=r"note 12345 on !1 does not exist"):
        forge.react(1, 12345)


def test_a_note_over_the_limit_is_refused_before_sending(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    with pytest.raises(ForgeRefused, match="1000000"):
        forge.create_comment(1, "x" * 1_000_001)
    assert not any(r.method == "POST" for r in gl.api_requests())
    at_the_limit = forge.create_comment(1, "y" * 1_000_000)
    assert len(gl.notes(REPO, 1)[-1].body) == 1_000_000 and at_the_limit.id


def test_sticky_notes_reconciled_past_the_limit(forge: GitLabForge, gl: FakeGitLab) -> None:
    """The reconciler splits nothing itself; past a (lowered) limit the report comes in parts,
    and re-runs edit, add and delete notes rather than append."""
    gl.note_limit = 5000
    forge.comment_limit = 5000  # this instance only; the class keeps GitLab's 1,000,000
    assert GitLabForge.comment_limit == 1_000_000
    marker = Marker("preview", "prod")
    limit = part_limit(forge)
    parts = [f"part {i}\n" + "x" * (limit - 10) for i in range(1, 4)]
    first = reconcile(forge, 1, marker, parts)
    assert len(first.created) == 3
    assert [n.body.split("\n", 2)[1] for n in gl.notes(REPO, 1)] == ["part 1", "part 2", "part 3"]
    again = reconcile(forge, 1, marker, parts)
    assert (again.created, again.edited, len(again.unchanged)) == ([], [], 3)
    gl.comment_as("alice", REPO, 1, "/sync")
    shorter = reconcile(forge, 1, marker, ["only the summary now"])
    assert len(shorter.edited) == 1 and len(shorter.deleted) == 2
    bodies = [n.body for n in gl.notes(REPO, 1)]
    assert bodies == [marker.tag(part=1) + "\nonly the summary now", "/sync"]
    with pytest.raises(ValueError, match="fit a gitlab comment"):
        reconcile(forge, 1, marker, ["x" * (limit + 1)])


def test_set_status(forge: GitLabForge, gl: FakeGitLab) -> None:
    head = forge.pull_request(1).head_sha  # reading the MR teaches the status its ref
    forge.set_status(
        head,
        state=StatusState.PENDING,
        context="gitops/preview",
        description="x" * 200,
        target_url="https://ci.example.com/1",
    )
    running = gl.latest_status(REPO, head, "gitops/preview")
    assert running is not None and (running.status, running.ref) == ("running", "feature")
    assert len(running.description or "") == 140 and (running.description or "").endswith("…")
    assert running.target_url == "https://ci.example.com/1"
    # A second delivery, a retry: GitLab refuses running → running; the status already says it.
    forge.set_status(head, state=StatusState.PENDING, context="gitops/preview", description="again")
    forge.set_status(head, state=StatusState.SUCCESS, context="gitops/preview", description="ok")
    done = gl.latest_status(REPO, head, "gitops/preview")
    assert done is not None and (done.status, done.description) == ("success", "ok")
    # A re-run after success starts a new status, as on GitLab.
    forge.set_status(head, state=StatusState.PENDING, context="gitops/preview", description="re")
    forge.set_status(head, state=StatusState.ERROR, context="gitops/preview", description="boom")
    assert [s.status for s in gl.statuses(REPO, head)] == ["success", "failed"]
    forge.set_status(head, state=StatusState.FAILURE, context="gitops/other", description="no")
    other = gl.latest_status(REPO, head, "gitops/other")
    assert other is not None and other.status == "failed"


def test_status_on_a_default_branch_commit_and_a_fork_head(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    main = forge.repository_info().default_branch_sha
    forge.set_status(main, state=StatusState.SUCCESS, context="gitops/deploy", description="ok")
    status = gl.latest_status(REPO, main, "gitops/deploy")
    assert status is not None and status.ref == "main"
    fork = gl.fork_project(REPO, "mallory")
    gl.commit(fork.path, "evil", {"x.yaml": "x: 1\n"}, pusher="mallory")
    iid = gl.open_merge_request(REPO, source_branch="evil", source_project=fork.path)
    head = forge.pull_request(iid).head_sha
    forge.set_status(head, state=StatusState.SUCCESS, context="gitops/preview", description="ok")
    status = gl.latest_status(REPO, head, "gitops/preview")
    assert status is not None and status.ref == f"refs/merge-requests/{iid}/head"


def test_status_on_a_commit_no_branch_holds_is_refused_clearly(
    gl: FakeGitLab, gitlab_settings: Settings
) -> None:
    fork = gl.fork_project(REPO, "mallory")
    sha = gl.commit(fork.path, "evil", {"x.yaml": "x: 1\n"}, pusher="mallory")
    gl.open_merge_request(REPO, source_branch="evil", source_project=fork.path)
    fresh = GitLabForge(fast(GitLabConfig.from_settings(gitlab_settings)), REPO)  # read no MR
    with pytest.raises(ForgeRefused, match=f"a branch containing commit {sha} does not exist"):
        fresh.set_status(sha, state=StatusState.SUCCESS, context="gitops/preview", description="")


@pytest.mark.parametrize(
    ("level", "permission"),
    [
        (GUEST, Permission.READ),
        (PLANNER, Permission.READ),
        (REPORTER, Permission.TRIAGE),
        (DEVELOPER, Permission.WRITE),
        (MAINTAINER, Permission.MAINTAIN),
        (OWNER, Permission.ADMIN),
    ],
)
def test_permission_from_access_levels(
    forge: GitLabForge, gl: FakeGitLab, level: int, permission: Permission
) -> None:
    gl.add_member(REPO, "carol", level)  # on the project
    gl.add_member("acme/platform", "dave", level)  # inherited from a subgroup
    assert forge.permission("carol") is permission
    assert forge.permission("dave") is permission
    assert forge.permission("Carol").may_run_commands is (level >= DEVELOPER)


def test_the_highest_of_project_and_group_roles_counts(forge: GitLabForge, gl: FakeGitLab) -> None:
    gl.add_member(REPO, "erin", REPORTER)
    gl.add_member("acme", "erin", MAINTAINER)
    assert forge.permission("erin") is Permission.MAINTAIN


def test_permission_of_strangers_and_unknown_users(forge: GitLabForge, gl: FakeGitLab) -> None:
    gl.add_user("stranger")
    assert forge.permission("stranger") is Permission.NONE
    assert forge.permission("nobody-at-all") is Permission.NONE


def test_access_levels_map_onto_permissions() -> None:
    assert access_level_permission(5) is Permission.NONE  # Minimal access
    assert access_level_permission(60) is Permission.ADMIN


def test_issues_found_by_marker_opened_updated_closed_reopened(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    marker = Marker("drift", "prod")
    assert forge.find_issue(marker) is None
    opened = forge.open_issue(title="Drift", body=f"{marker.tag()}\n2 apps drifted")
    forge.open_issue(title="Other", body=f"{Marker('drift').tag()}\nanother instance")
    found = forge.find_issue(marker)
    assert found is not None and found.number == opened.number and found.open
    assert found.web_url == f"{gl.url}/{REPO}/-/issues/{opened.number}"
    updated = forge.update_issue(
        opened.number, title="Drift (3)", body=f"{marker.tag()}\n3 apps drifted"
    )
    assert updated.title == "Drift (3)" and updated.body.endswith("3 apps drifted")
    forge.close_issue(opened.number, comment="Drift is gone.")
    closed = forge.find_issue(marker)
    assert closed is not None and not closed.open and closed.title == "Drift (3)"
    assert [n.body for n in gl.issue_notes(REPO, opened.number)] == ["Drift is gone."]
    forge.comment_on_issue(opened.number, "Healed web.")
    assert [n.body for n in gl.issue_notes(REPO, opened.number)][-1] == "Healed web."
    forge.reopen_issue(opened.number)
    again = forge.find_issue(marker)
    assert again is not None and again.open


def test_get_issue_is_one_request_and_none_once_the_issue_is_gone(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    opened = forge.open_issue(title="Drift", body=f"{Marker('drift').tag()}\n1 app drifted")
    before = len(gl.api_requests())
    got = forge.get_issue(opened.number)
    assert got is not None and (got.number, got.open, got.title) == (opened.number, True, "Drift")
    assert got.body == opened.body and got.author == "gitops-bot"
    ((method, path),) = [(r.method, r.path) for r in gl.api_requests()[before:]]
    assert method == "GET" and path.endswith(f"/issues/{opened.number}")
    gl.add_member(REPO, "alice", DEVELOPER)
    alice = GitLabForge(replace(forge.config, token=gl.token_for("alice")), REPO)
    theirs = alice.open_issue(title="a bug", body="text")
    found = forge.get_issue(theirs.number)
    assert found is not None and found.author == "alice"
    gl.delete_issue(REPO, opened.number)
    assert forge.get_issue(opened.number) is None  # 404
    assert forge.get_issue(999) is None


def test_get_issue_of_a_project_the_bot_cannot_see_is_an_error(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    gl.create_project("other/secret")
    hidden = GitLabForge(forge.config, "other/secret")
    with pytest.raises(ForgeAccessDenied) as caught:
        hidden.get_issue(1)
    assert caught.value.status == 404


def test_find_issue_ignores_other_authors(
    forge: GitLabForge, gl: FakeGitLab, gitlab_settings: Settings
) -> None:
    marker = Marker("drift")
    gl.add_member(REPO, "alice", DEVELOPER)
    alice = GitLabForge(replace(forge.config, token=gl.token_for("alice")), REPO)
    alice.open_issue(title="fake", body=f"{marker.tag()}\nnot the bot's")
    assert forge.find_issue(marker) is None


def test_git_access_carries_the_token_in_the_environment_only(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    access = forge.git_access()
    token = gl.bot_token or ""
    assert token not in access.clone_url and "@" not in access.clone_url
    assert token not in repr(access)
    header = access.env["GIT_CONFIG_VALUE_0"]
    assert header.startswith("Authorization: Basic ")
    assert base64.b64decode(header.split()[-1]).decode() == f"oauth2:{token}"
    assert access.env["GIT_CONFIG_KEY_0"] == f"http.{access.clone_url}.extraHeader"


# --- errors -------------------------------------------------------------------------------------


def test_a_project_the_bot_is_not_a_member_of_is_one_clear_permanent_error(
    fake_gitlab: FakeGitLab, gitlab_settings: Settings
) -> None:
    fake_gitlab.create_project("other/secret")
    forge = GitLabForge(fast(GitLabConfig.from_settings(gitlab_settings)), "other/secret")
    with pytest.raises(ForgeAccessDenied) as caught:
        forge.pull_request(1)
    assert isinstance(caught.value, PermanentError)
    assert str(caught.value).startswith("the bot is not a member of other/secret")
    assert "api` scope" in str(caught.value) and caught.value.status == 404


def test_a_token_without_the_api_scope_is_named(gl: FakeGitLab, gitlab_settings: Settings) -> None:
    token = gl.token_for("gitops-bot", scopes=("read_api",))
    forge = GitLabForge(
        replace(fast(GitLabConfig.from_settings(gitlab_settings)), token=token), REPO
    )
    assert forge.pull_request(1).number == 1  # reading is allowed
    with pytest.raises(ForgeAccessDenied, match=r"^GITLAB_TOKEN lacks the api scope \(403"):
        forge.create_comment(1, "hi")


def test_a_role_too_low_to_set_statuses_is_named(gl: FakeGitLab, gitlab_settings: Settings) -> None:
    gl.add_member("acme", "gitops-bot", REPORTER)
    forge = GitLabForge(fast(GitLabConfig.from_settings(gitlab_settings)), REPO)
    with pytest.raises(ForgeAccessDenied, match="give it the Developer role"):
        forge.set_status(
            head_of(gl), state=StatusState.SUCCESS, context="gitops/preview", description="ok"
        )


def test_a_bad_or_revoked_token_is_named(gl: FakeGitLab, gitlab_settings: Settings) -> None:
    config = replace(fast(GitLabConfig.from_settings(gitlab_settings)), token="glpat-wrong")
    with pytest.raises(ForgeAccessDenied, match=r"refused GITLAB_TOKEN \(401 401 Unauthorized\)"):
        GitLabForge(config, REPO).pull_request(1)
    gl.revoke(gl.bot_token or "")
    with pytest.raises(ForgeAccessDenied, match="wrong, expired or revoked"):
        GitLabForge(fast(GitLabConfig.from_settings(gitlab_settings)), REPO).identity()


def test_a_wrong_gitlab_url_is_named(gl: FakeGitLab, gitlab_settings: Settings) -> None:
    config = replace(fast(GitLabConfig.from_settings(gitlab_settings)), url=gl.url + "/gitlab")
    with pytest.raises(ForgeAccessDenied, match="is GITLAB_URL the root of a GitLab"):
        GitLabForge(config, REPO).identity()


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(502, None), (500, None), (503, 0), (504, None), (429, 0), (429, 1)],
)
def test_transient_failures_are_retried(
    forge: GitLabForge, gl: FakeGitLab, status: int, retry_after: int | None
) -> None:
    gl.fail(status, times=2, retry_after=retry_after, path="/merge_requests/1")
    assert forge.pull_request(1).number == 1
    statuses = [r.status for r in gl.api_requests() if r.path.endswith("/merge_requests/1")]
    assert statuses == [status, status, 200]


@pytest.mark.parametrize("date", [False, True])
def test_retries_wait_as_long_as_gitlab_asks(
    forge: GitLabForge, gl: FakeGitLab, date: bool
) -> None:
    # Retry-After: 1 s, or an HTTP date 2 s ahead (whole seconds: more than 1 s from now). A
    # lower bound only: a busy machine makes the wait longer, never shorter.
    after: int | str = email.utils.formatdate(time.time() + 2, usegmt=True) if date else 1
    gl.fail(429, times=1, retry_after=after, path="/merge_requests/1")
    forge.pull_request(1)
    first, second = [r.at for r in gl.api_requests() if r.path.endswith("/merge_requests/1")]
    assert second - first >= 0.9


def test_writes_are_retried_too(forge: GitLabForge, gl: FakeGitLab) -> None:
    made = forge.create_comment(1, "a")
    gl.fail(502, times=1, path=f"/notes/{made.id}")
    assert forge.edit_comment(1, made.id, "b").body == "b"
    gl.fail(503, times=1, retry_after=0, path="/statuses/")
    forge.set_status(
        head_of(gl), state=StatusState.SUCCESS, context="gitops/preview", description="ok"
    )
    assert [r.status for r in gl.api_requests() if "/statuses/" in r.path] == [503, 201]


def test_a_forge_that_keeps_failing_is_a_transient_error(
    forge: GitLabForge, gl: FakeGitLab
) -> None:
    gl.fail(502, times=100, path="/merge_requests/1")
    with pytest.raises(ForgeUnavailable) as caught:
        forge.pull_request(1)
    assert isinstance(caught.value, TransientError)
    assert "after retries (502" in str(caught.value)
    assert len([r for r in gl.api_requests() if r.path.endswith("/merge_requests/1")]) == 4


def test_a_wait_longer_than_the_budget_fails_at_once(forge: GitLabForge, gl: FakeGitLab) -> None:
    short = GitLabForge(replace(forge.config, max_wait=5), REPO)
    gl.fail(429, times=1, retry_after=3600, path="/merge_requests/1")
    started = time.monotonic()
    with pytest.raises(ForgeUnavailable, match=r"wait 3600 s .* longer than the job allows"):
        short.pull_request(1)
    assert time.monotonic() - started < 5


def test_an_unreachable_forge_is_transient(gitlab_settings: Settings) -> None:
    config = replace(
        fast(GitLabConfig.from_settings(gitlab_settings)), url="http://127.0.0.1:9", max_retries=1
    )
    with pytest.raises(ForgeUnavailable, match="could not be reached"):
        GitLabForge(config, REPO).pull_request(1)


class _Redirect(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        self.send_response(301)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirecting(gl: FakeGitLab) -> Iterator[str]:
    handler = type("Handler", (_Redirect,), {"target": gl.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_redirect_is_refused_and_the_token_does_not_follow(
    gl: FakeGitLab, gitlab_settings: Settings, redirecting: str
) -> None:
    config = replace(fast(GitLabConfig.from_settings(gitlab_settings)), url=redirecting)
    with pytest.raises(ForgeAccessDenied, match=r"answered with a redirect to http://127\.0\.0\.1"):
        GitLabForge(config, REPO).identity()
    assert gl.requests == []  # nothing reached the redirect's target


# --- configuration and the configured host ---------------------------------------------------------


def test_connect_serves_gitlab(gl: FakeGitLab, gitlab_settings: Settings) -> None:
    forge = connect(gitlab_settings, event_repository(gl.url + "/api/v4"))
    assert isinstance(forge, GitLabForge) and forge.pull_request(1).number == 1
    assert isinstance(connect_by_name(gitlab_settings, "gitlab", REPO), GitLabForge)


def test_a_delivery_naming_another_gitlab_gets_no_request(
    gl: FakeGitLab, gitlab_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ForgeHostRefused, match=r"GITLAB_URL.*no credential is sent there"):
        connect(gitlab_settings, event_repository("https://evil.example.com/api/v4"))
    assert gl.requests == []
    assert "refused to connect" in caplog.text


def test_a_project_outside_gitops_repositories_is_refused(
    gl: FakeGitLab, gitlab_settings: Settings
) -> None:
    settings = replace(gitlab_settings, repositories=("other/*",))
    with pytest.raises(ForgePermanentError, match="not served by this bot"):
        connect(settings, event_repository(gl.url + "/api/v4"))
    assert gl.requests == []


def test_a_webhook_secret_without_a_gitlab_token() -> None:
    settings = Settings.from_env({"GITLAB_WEBHOOK_SECRET": "s"})
    [warning] = startup_warnings(settings)
    assert "GITLAB_TOKEN" in warning and "every GitLab job will fail" in warning
    with pytest.raises(ForgeNotConfigured, match="set GITLAB_TOKEN"):
        connect(settings, event_repository("https://gitlab.com/api/v4"))
    both = Settings.from_env(
        {"GITLAB_WEBHOOK_SECRET": "s", "GITLAB_TOKEN": "t", "GITHUB_WEBHOOK_SECRET": "s"}
    )
    assert [w.split(":")[0] for w in startup_warnings(both)] == [
        "GITHUB_WEBHOOK_SECRET is set but the bot has no GitHub credentials"
    ]


# --- no credential where it does not belong ------------------------------------------------------------


def test_no_token_in_bodies_urls_logs_or_errors(
    gl: FakeGitLab, gitlab_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = gl.bot_token or ""
    forge = GitLabForge(fast(GitLabConfig.from_settings(gitlab_settings)), REPO)
    note = forge.create_comment(1, "hi")
    forge.react(1, note.id)
    forge.set_status(
        head_of(gl), state=StatusState.SUCCESS, context="gitops/preview", description="ok"
    )
    forge.permission("alice")
    forge.open_issue(title="t", body="b")
    gl.fail(502, times=100, path="/merge_requests/1")
    errors = []
    with pytest.raises(ForgeUnavailable) as caught:
        forge.pull_request(1)
    errors += [str(caught.value), repr(caught.value)]
    gl.faults.clear()
    with pytest.raises(ForgeRefused) as refused:
        forge.pull_request(999)
    errors.append(str(refused.value))
    assert token not in repr(forge.config) and token not in repr(gitlab_settings)
    assert token not in repr(forge)
    for request in gl.requests:
        assert token.encode() not in request.body
        assert token not in request.path + request.query
        assert request.headers.get("private-token") == token  # only in its header
    assert token not in caplog.text
    assert all(token not in e for e in errors)


def test_clients_are_kept_per_process(gl: FakeGitLab, gitlab_settings: Settings) -> None:
    config = fast(GitLabConfig.from_settings(gitlab_settings))
    assert gitlab_forge.client(config) is gitlab_forge.client(config)
    assert gitlab_forge.client(replace(config, token="other")) is not gitlab_forge.client(config)


# --- settings and the intake's host check (pure) ---------------------------------------------------


@pytest.mark.parametrize(
    ("gitlab_url", "api_url", "served"),
    [
        (None, "https://gitlab.com/api/v4", True),
        (None, "https://GitLab.com:443/api/v4/", True),
        (None, "https://gitlab.example.com/api/v4", False),
        ("https://example.com/gitlab/", "https://example.com/gitlab/api/v4", True),
        ("https://example.com/gitlab", "https://example.com/api/v4", False),
    ],
)
def test_intake_serves_only_the_configured_gitlab(
    gitlab_url: str | None, api_url: str, served: bool
) -> None:
    from bot.forges import intake_refusal

    env = {"GITLAB_URL": gitlab_url} if gitlab_url else {}
    refusal = intake_refusal(Settings.from_env(env), event_repository(api_url))
    assert (refusal is None) is served
    if not served:
        assert refusal is not None and "GITLAB_URL" in refusal and api_url in refusal


def test_gitlab_settings() -> None:
    settings = Settings.from_env(
        {"GITLAB_TOKEN": "glpat-secret", "GITLAB_URL": "https://g.example/"}
    )
    assert settings.gitlab_url == "https://g.example"
    assert "glpat-secret" not in repr(settings)
    assert Settings.from_env({}).gitlab_url == "https://gitlab.com"
    with pytest.raises(SettingsError, match="GITLAB_URL is malformed"):
        Settings.from_env({"GITLAB_URL": "gitlab.example.com"})
    with pytest.raises(SettingsError, match="without credentials"):
        Settings.from_env({"GITLAB_URL": "https://user:pw@gitlab.example.com"})
    from bot.settings import settings_table

    table = settings_table()
    assert "| `GITLAB_URL` | `https://gitlab.com` |" in table and "`GITLAB_TOKEN`" in table
