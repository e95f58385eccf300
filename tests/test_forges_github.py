"""The GitHub adapter driven through real PyGithub against the fake GitHub: every protocol method,
token and App authentication, retries, clear permanent errors, and no credential anywhere it
does not belong."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.checkouts import RepoCache
from bot.errors import (
    ForgeAccessDenied,
    ForgeHostRefused,
    ForgeNotConfigured,
    ForgePermanentError,
    ForgeRefused,
    ForgeUnavailable,
    PermanentError,
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
from bot.forges import github as github_forge
from bot.forges.github import GitHubConfig, GitHubForge
from bot.settings import Settings
from tests.fake_forge import gitstore
from tests.fake_forge.github import FakeGitHub, IssueRec

REPO = "acme/app"


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.create_repo(REPO, files={"app/cm.yaml": "a: 1\n", "README.md": "hi\n"})
    fake_github.set_permission(REPO, "gitops-bot", "write")
    fake_github.commit(REPO, "feature", {"app/cm.yaml": "a: 2\n"})
    fake_github.open_pull_request(REPO, head="feature", author="alice", title="Bump a")
    return fake_github


def fast(config: GitHubConfig) -> GitHubConfig:
    """Retries without real waiting, so fault tests stay fast."""
    return replace(config, backoff_factor=0.01, secondary_rate_wait=0.2, write_interval=0)


@pytest.fixture
def forge(gh: FakeGitHub, github_settings: Settings) -> GitHubForge:
    return GitHubForge(fast(GitHubConfig.from_settings(github_settings)), REPO)


def event_repository(api_url: str, full_name: str = REPO) -> Repository:
    return Repository(
        provider="github",
        full_name=full_name,
        id=1,
        default_branch="main",
        clone_url=f"https://example.com/{full_name}.git",
        web_url=f"https://example.com/{full_name}",
        api_url=api_url,
    )


# --- every protocol method --------------------------------------------------------------------


def test_the_adapter_satisfies_the_protocol(forge: GitHubForge) -> None:
    assert isinstance(forge, Forge)
    assert forge.comment_limit == 65536


def test_identity_is_asked_once_per_process(forge: GitHubForge, gh: FakeGitHub) -> None:
    assert forge.identity().login == "gitops-bot"
    assert not forge.identity().is_app
    other = GitHubForge(forge.config, REPO)
    assert other.identity().login == "gitops-bot"
    assert [r.path for r in gh.api_requests()].count("/user") == 1


def test_repository_info_comes_from_the_api(forge: GitHubForge, gh: FakeGitHub) -> None:
    info = forge.repository_info()
    assert info.full_name == REPO
    assert info.default_branch == "main"
    assert info.clone_url == f"{gh.url}/{REPO}.git"
    assert info.default_branch_sha == gitstore.rev(gh.repo(REPO).git_dir, "refs/heads/main")


def test_pull_request(forge: GitHubForge, gh: FakeGitHub) -> None:
    pr = forge.pull_request(1)
    pull = gh.repo(REPO).pulls[1]
    assert (pr.number, pr.state, pr.head_sha, pr.head_ref) == (
        1,
        PullState.OPEN,
        pull.head_sha,
        "feature",
    )
    assert pr.base_ref == "main" and len(pr.base_sha) == 40
    assert (pr.author, pr.draft, pr.from_fork) == ("alice", False, False)
    assert (pr.head_fetch_ref, pr.merge_ref) == ("refs/pull/1/head", "refs/pull/1/merge")
    assert pr.title == "Bump a"


def test_fork_draft_merged_and_closed_pull_requests(forge: GitHubForge, gh: FakeGitHub) -> None:
    gh.commit(REPO, "mallory-feature", {"x.yaml": "x: 1\n"})
    fork = gh.open_pull_request(
        REPO, head="mallory-feature", author="mallory", fork_owner="mallory"
    )
    gh.commit(REPO, "wip", {"y.yaml": "y: 1\n"})
    draft = gh.open_pull_request(REPO, head="wip", draft=True)
    assert forge.pull_request(fork).from_fork
    assert forge.pull_request(draft).draft
    gh.merge_pull_request(REPO, 1)
    gh.close_pull_request(REPO, draft)
    assert forge.pull_request(1).state is PullState.MERGED
    assert forge.pull_request(draft).state is PullState.CLOSED
    assert [p.number for p in forge.open_pull_requests()] == [fork]


def test_open_pull_requests_are_paginated_oldest_first(forge: GitHubForge, gh: FakeGitHub) -> None:
    for _ in range(104):
        gh.open_pull_request(REPO, head="feature")
    numbers = [p.number for p in forge.open_pull_requests()]
    assert numbers == list(range(1, 106))


def test_pull_requests_for_commit(forge: GitHubForge, gh: FakeGitHub) -> None:
    head = gh.repo(REPO).pulls[1].head_sha
    assert [p.number for p in forge.pull_requests_for_commit(head)] == [1]
    merge = gh.merge_pull_request(REPO, 1)
    assert [p.number for p in forge.pull_requests_for_commit(merge)] == [1]


def test_comments_create_edit_delete_react(forge: GitHubForge, gh: FakeGitHub) -> None:
    gh.comment_as("alice", REPO, 1, "/sync")
    made = forge.create_comment(1, "hello")
    assert made.author == "gitops-bot"
    edited = forge.edit_comment(1, made.id, "hello again")
    assert edited.body == "hello again"
    listed = forge.comments(1)
    assert [(c.author, c.body) for c in listed] == [
        ("alice", "/sync"),
        ("gitops-bot", "hello again"),
    ]
    forge.react(1, listed[0].id, "eyes")
    forge.react(1, listed[0].id, "eyes")  # twice is fine
    assert gh.comments(REPO, 1)[0].reactions == [("gitops-bot", "eyes")]
    forge.delete_comment(1, made.id)
    forge.delete_comment(1, made.id)  # already gone is fine
    assert [c.body for c in gh.comments(REPO, 1)] == ["/sync"]


def test_bots_comments_are_marked(forge: GitHubForge, gh: FakeGitHub) -> None:
    gh.add_user("renovate[bot]", type="Bot")
    gh.comment_as("renovate[bot]", REPO, 1, "beep")
    assert [c.author_is_bot for c in forge.comments(1)] == [True]


def test_a_comment_over_the_limit_is_refused_before_sending(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    with pytest.raises(ForgeRefused, match="65536"):
        forge.create_comment(1, "x" * 65537)
    assert not any(r.method == "POST" for r in gh.api_requests())


def test_set_status_shortens_the_description(forge: GitHubForge, gh: FakeGitHub) -> None:
    head = gh.repo(REPO).pulls[1].head_sha
    forge.set_status(
        head,
        state=StatusState.PENDING,
        context="gitops/preview",
        description="x" * 200,
        target_url="https://ci.example.com/1",
    )
    forge.set_status(head, state=StatusState.SUCCESS, context="gitops/preview", description="ok")
    status = gh.latest_status(REPO, head, "gitops/preview")
    assert status is not None and (status.state, status.description) == ("success", "ok")
    first = gh.statuses(REPO, head)[0]
    assert len(first.description or "") == 140 and first.description.endswith("…")
    assert first.target_url == "https://ci.example.com/1"


def test_status_on_an_unknown_commit_is_refused(forge: GitHubForge) -> None:
    with pytest.raises(ForgeRefused, match="422"):
        forge.set_status(
            "f" * 40, state=StatusState.ERROR, context="gitops/preview", description=""
        )


@pytest.mark.parametrize("role", ["read", "triage", "write", "maintain", "admin"])
def test_permission_roles(forge: GitHubForge, gh: FakeGitHub, role: str) -> None:
    gh.set_permission(REPO, "carol", role)
    assert forge.permission("carol") is Permission[role.upper()]
    assert forge.permission("carol").may_run_commands is (role in ("write", "maintain", "admin"))


def test_permission_of_strangers_and_unknown_users(forge: GitHubForge, gh: FakeGitHub) -> None:
    gh.add_user("stranger")
    assert forge.permission("stranger") is Permission.NONE
    assert forge.permission("nobody-at-all") is Permission.NONE


def test_issues_found_by_marker_opened_updated_closed_reopened(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    marker = Marker("drift", "prod")
    assert forge.find_issue(marker) is None
    other = gh.token_for("alice")
    assert other
    opened = forge.open_issue(title="Drift", body=f"{marker.tag()}\n2 apps drifted")
    forge.open_issue(title="Other", body=f"{Marker('drift').tag()}\nanother instance")
    found = forge.find_issue(marker)
    assert found is not None and found.number == opened.number and found.open
    forge.update_issue(opened.number, title="Drift (3)", body=f"{marker.tag()}\n3 apps drifted")
    forge.close_issue(opened.number, comment="Drift is gone.")
    closed = forge.find_issue(marker)
    assert closed is not None and not closed.open and closed.title == "Drift (3)"
    assert [c.body for c in gh.comments(REPO, opened.number)] == ["Drift is gone."]
    forge.comment_on_issue(opened.number, "Healed web.")
    assert [c.body for c in gh.comments(REPO, opened.number)][-1] == "Healed web."
    forge.reopen_issue(opened.number)
    again = forge.find_issue(marker)
    assert again is not None and again.open


def test_find_issue_lists_pages_and_fetches_no_issue_it_passes_over(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    marker = Marker("drift")
    opened = forge.open_issue(title="Drift", body=f"{marker.tag()}\n1 app drifted")
    repo = gh.repo(REPO)
    for _ in range(150):  # people's issues, newer than the bot's: a page and a half
        repo.issues[repo.next_number] = IssueRec(repo.next_number, "a bug", "text", "alice")
        repo.next_number += 1
    before = len(gh.api_requests())
    found = forge.find_issue(marker)
    assert found is not None and found.number == opened.number
    made = [(r.method, r.path) for r in gh.api_requests()[before:] if "/issues" in r.path]
    # two pages, then the issue found, fetched to tell it from a pull request
    assert made == [
        ("GET", f"/repos/{REPO}/issues"),
        ("GET", f"/repos/{REPO}/issues"),
        ("GET", f"/repos/{REPO}/issues/{opened.number}"),
    ]


def test_get_issue_is_one_request_and_none_once_the_issue_is_gone(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    opened = forge.open_issue(title="Drift", body=f"{Marker('drift').tag()}\n1 app drifted")
    before = len(gh.api_requests())
    got = forge.get_issue(opened.number)
    assert got is not None and (got.number, got.open, got.title) == (opened.number, True, "Drift")
    assert got.body == opened.body and got.author == "gitops-bot"
    assert [(r.method, r.path) for r in gh.api_requests()[before:]] == [
        ("GET", f"/repos/{REPO}/issues/{opened.number}")
    ]
    alice = GitHubForge(replace(forge.config, token=gh.token_for("alice")), REPO)
    github_forge.clear_caches()
    gh.set_permission(REPO, "alice", "read")
    theirs = alice.open_issue(title="a bug", body="text")
    github_forge.clear_caches()
    found = forge.get_issue(theirs.number)
    assert found is not None and found.author == "alice"
    assert forge.get_issue(1) is None  # pull request #1 (GitHub answers it as an issue)
    gh.delete_issue(REPO, opened.number)
    assert forge.get_issue(opened.number) is None  # 410 Gone
    assert forge.get_issue(999) is None  # 404


def test_get_issue_of_an_issue_transferred_to_another_repository_is_none(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    gh.create_repo("acme/elsewhere")
    gh.set_permission("acme/elsewhere", "gitops-bot", "write")
    opened = forge.open_issue(title="Drift", body=f"{Marker('drift').tag()}\n1 app drifted")
    gh.repo("acme/elsewhere").next_number = opened.number  # the same number over there
    moved = gh.transfer_issue(REPO, opened.number, "acme/elsewhere")
    before = len(gh.api_requests())
    assert forge.get_issue(opened.number) is None
    # GitHub redirects to the issue in its new repository, which PyGithub follows
    assert [(r.status, r.path) for r in gh.api_requests()[before:]] == [
        (301, f"/repos/{REPO}/issues/{opened.number}"),
        (200, f"/repos/acme/elsewhere/issues/{moved}"),
    ]


def test_get_issue_of_a_repository_the_bot_cannot_see_is_an_error(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    gh.create_repo("acme/secret")
    hidden = GitHubForge(forge.config, "acme/secret")
    with pytest.raises(ForgeAccessDenied) as caught:
        hidden.get_issue(1)
    assert caught.value.status == 404


def test_find_issue_ignores_other_authors_and_pull_requests(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    marker = Marker("drift")
    alice = GitHubForge(replace(forge.config, token=gh.token_for("alice")), REPO)
    github_forge.clear_caches()
    gh.set_permission(REPO, "alice", "read")
    alice.open_issue(title="fake", body=f"{marker.tag()}\nnot the bot's")
    github_forge.clear_caches()
    assert forge.find_issue(marker) is None


def test_git_access_carries_the_token_in_the_environment_only(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    access = forge.git_access()
    token = gh.bot_token or ""
    assert token not in access.clone_url and "@" not in access.clone_url
    assert token not in repr(access)
    header = access.env["GIT_CONFIG_VALUE_0"]
    assert header.startswith("Authorization: Basic ")
    assert base64.b64decode(header.split()[-1]).decode() == f"x-access-token:{token}"
    assert access.env["GIT_CONFIG_KEY_0"] == f"http.{access.clone_url}.extraHeader"


# --- errors -------------------------------------------------------------------------------------


def test_a_repository_the_token_cannot_see_is_one_clear_permanent_error(
    fake_github: FakeGitHub, github_settings: Settings
) -> None:
    fake_github.create_repo("acme/secret")
    forge = GitHubForge(fast(GitHubConfig.from_settings(github_settings)), "acme/secret")
    with pytest.raises(ForgeAccessDenied) as caught:
        forge.pull_request(1)
    assert isinstance(caught.value, PermanentError)
    assert str(caught.value).startswith("GITHUB_TOKEN cannot read acme/secret (404")
    assert caught.value.status == 404


def test_a_missing_pull_request_is_named(forge: GitHubForge) -> None:
    with pytest.raises(ForgeRefused, match=r"pull request #99 does not exist on acme/app"):
        forge.pull_request(99)


def test_a_wrong_api_url_is_named(gh: FakeGitHub, github_settings: Settings) -> None:
    config = replace(fast(GitHubConfig.from_settings(github_settings)), api_url=gh.url + "/api/v3")
    with pytest.raises(ForgeAccessDenied, match="is GITHUB_API_URL GitHub's REST API root"):
        GitHubForge(config, REPO).identity()
    gh.contract.violations.clear()  # the fake, like GitHub, has no /api/v3/user


def test_a_bad_token_is_named(gh: FakeGitHub, github_settings: Settings) -> None:
    config = replace(fast(GitHubConfig.from_settings(github_settings)), token="ghp_wrong")
    with pytest.raises(ForgeAccessDenied, match=r"refused GITHUB_TOKEN \(401 Bad credentials"):
        GitHubForge(config, REPO).pull_request(1)


def test_a_reader_token_may_not_set_statuses(gh: FakeGitHub, github_settings: Settings) -> None:
    gh.set_permission(REPO, "gitops-bot", "read")
    forge = GitHubForge(fast(GitHubConfig.from_settings(github_settings)), REPO)
    with pytest.raises(ForgeAccessDenied, match="GITHUB_TOKEN cannot read acme/app"):
        forge.set_status(
            gh.repo(REPO).pulls[1].head_sha,
            state=StatusState.SUCCESS,
            context="gitops/preview",
            description="ok",
        )


@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [
        (502, None, None),
        (503, None, 0),
        (429, None, 0),
        (429, None, None),
        (403, "secondary", 0),
        (403, "secondary", None),
    ],
)
def test_transient_failures_are_retried(
    forge: GitHubForge, gh: FakeGitHub, status: int, kind: str | None, retry_after: int | None
) -> None:
    gh.fail(status, times=2, kind=kind, retry_after=retry_after, path="/pulls/1")
    assert forge.pull_request(1).number == 1
    statuses = [r.status for r in gh.api_requests() if r.path.endswith("/pulls/1")]
    assert statuses == [status, status, 200]


@pytest.mark.parametrize(("status", "kind"), [(429, None), (403, "secondary"), (403, "primary")])
def test_retries_wait_as_long_as_github_asks(
    forge: GitHubForge, gh: FakeGitHub, status: int, kind: str | None
) -> None:
    # Retry-After: 1 (primary limits: X-RateLimit-Reset one second ahead). A lower bound only:
    # a busy machine makes the wait longer, never shorter.
    gh.fail(
        status, times=1, kind=kind, retry_after=None if kind == "primary" else 1, path="/pulls/1"
    )
    forge.pull_request(1)
    first, second = [r.at for r in gh.api_requests() if r.path.endswith("/pulls/1")]
    assert second - first >= 0.9


def test_writes_are_retried_too(forge: GitHubForge, gh: FakeGitHub) -> None:
    made = forge.create_comment(1, "a")
    gh.fail(502, times=1, path=f"/comments/{made.id}")
    assert forge.edit_comment(1, made.id, "b").body == "b"


def test_a_forge_that_keeps_failing_is_a_transient_error(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    gh.fail(502, times=100, path="/pulls/1")
    with pytest.raises(ForgeUnavailable) as caught:
        forge.pull_request(1)
    assert isinstance(caught.value, TransientError)
    assert "after retries" in str(caught.value)


def test_a_rate_limit_longer_than_the_budget_fails_at_once(
    forge: GitHubForge, gh: FakeGitHub
) -> None:
    short = GitHubForge(replace(forge.config, max_wait=0.5, secondary_rate_wait=30), REPO)
    github_forge.clear_caches()
    gh.fail(403, times=1, kind="secondary", path="/pulls/1")
    with pytest.raises(ForgeUnavailable, match="rate limit"):
        short.pull_request(1)


def test_an_unreachable_forge_is_transient(github_settings: Settings) -> None:
    config = replace(
        fast(GitHubConfig.from_settings(github_settings)), api_url="http://127.0.0.1:9", retries=1
    )
    with pytest.raises(ForgeUnavailable, match="could not be reached"):
        GitHubForge(config, REPO).pull_request(1)


# --- the GitHub App ------------------------------------------------------------------------------


@pytest.fixture
def app_settings(gh: FakeGitHub, tmp_path: Path) -> Iterator[tuple[Settings, int]]:
    app = gh.create_app("gitops")
    installation = gh.install(app, [REPO])
    key_file = tmp_path / "app.pem"
    key_file.write_text(app.private_key_pem)
    settings = Settings.from_env(
        {
            "GITHUB_API_URL": gh.url,
            "GITHUB_APP_ID": str(app.id),
            "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
            "GITHUB_WEBHOOK_SECRET": "s",
            "GITOPS_FORGE_WRITE_INTERVAL": "0",
        }
    )
    yield settings, installation


def test_app_identity_and_installation_token(
    gh: FakeGitHub, app_settings: tuple[Settings, int]
) -> None:
    settings, installation = app_settings
    forge = connect(settings, event_repository(gh.url), installation_id=installation)
    assert forge.identity().login == "gitops[bot]"
    forge.create_comment(1, "from the app")
    assert gh.comments(REPO, 1)[0].author == "gitops[bot]"
    paths = [r.path for r in gh.api_requests()]
    assert paths.count(f"/app/installations/{installation}/access_tokens") == 1
    forge.set_status(
        gh.repo(REPO).pulls[1].head_sha,
        state=StatusState.SUCCESS,
        context="gitops/preview",
        description="ok",
    )
    assert [r.path for r in gh.api_requests()].count(
        f"/app/installations/{installation}/access_tokens"
    ) == 1  # cached


def test_app_git_access_uses_the_installation_token(
    gh: FakeGitHub, app_settings: tuple[Settings, int], tmp_path: Path
) -> None:
    settings, installation = app_settings
    forge = connect(settings, event_repository(gh.url), installation_id=installation)
    _, sha = RepoCache(tmp_path / "cache").fetch_branch("github", REPO, forge.git_access(), "main")
    assert sha == forge.repository_info().default_branch_sha
    header = gh.git_requests()[0].headers["authorization"]
    assert base64.b64decode(header.split()[-1]).decode().startswith("x-access-token:ghs_")


def test_the_apps_installations_list_every_repository_the_catch_up_walks(
    gh: FakeGitHub, app_settings: tuple[Settings, int], github_settings: Settings
) -> None:
    from bot.forges import app_installations

    settings, installation = app_settings
    gh.create_repo("other/tool", files={"README.md": "x"})
    app = next(iter(gh.apps.values()))
    elsewhere = gh.install(app, ["other/tool"])
    found = {(r.full_name, i) for r, i in app_installations(settings)}
    assert found == {(REPO, installation), ("other/tool", elsewhere)}
    (repository, _) = next(x for x in app_installations(settings) if x[0].full_name == REPO)
    assert repository.api_url == gh.url and repository.default_branch == "main"
    assert app_installations(github_settings) == []  # a token: the deliveries say which


def test_app_installation_is_looked_up_when_the_event_has_none(
    gh: FakeGitHub, app_settings: tuple[Settings, int]
) -> None:
    settings, installation = app_settings
    forge = connect_by_name(settings, "github", REPO)
    assert isinstance(forge, GitHubForge) and forge.installation_id == installation


def test_app_token_is_renewed_before_it_expires(
    gh: FakeGitHub, app_settings: tuple[Settings, int]
) -> None:
    settings, installation = app_settings
    gh.token_ttl = timedelta(seconds=21)  # PyGithub renews 20 s before expiry
    forge = connect(settings, event_repository(gh.url), installation_id=installation)
    forge.pull_request(1)
    import time

    time.sleep(1.2)
    forge.pull_request(1)
    assert [r.path for r in gh.api_requests()].count(
        f"/app/installations/{installation}/access_tokens"
    ) == 2
    assert all(r.status != 401 for r in gh.api_requests())


def test_app_not_installed_on_the_repository(
    gh: FakeGitHub, app_settings: tuple[Settings, int]
) -> None:
    settings, _ = app_settings
    gh.create_repo("acme/other")
    with pytest.raises(ForgeAccessDenied, match="the GitHub App is not installed on acme/other"):
        connect_by_name(settings, "github", "acme/other")


def test_app_without_a_permission_names_it(gh: FakeGitHub, tmp_path: Path) -> None:
    app = gh.create_app("thin", permissions={"metadata": "read", "pull_requests": "write"})
    installation = gh.install(app, [REPO])
    settings = Settings.from_env(
        {
            "GITHUB_API_URL": gh.url,
            "GITHUB_APP_ID": str(app.id),
            "GITHUB_APP_PRIVATE_KEY": app.private_key_pem,
        }
    )
    forge = GitHubForge(
        fast(GitHubConfig.from_settings(settings)), REPO, installation_id=installation
    )
    with pytest.raises(
        ForgeAccessDenied, match="give the GitHub App the Commit statuses: write permission"
    ):
        forge.set_status(
            gh.repo(REPO).pulls[1].head_sha,
            state=StatusState.SUCCESS,
            context="gitops/preview",
            description="ok",
        )


def test_app_with_a_wrong_key_is_named(gh: FakeGitHub, app_settings: tuple[Settings, int]) -> None:
    settings, installation = app_settings
    other = gh.create_app("impostor")
    wrong = replace(
        settings, github_app_private_key=other.private_key_pem, github_app_private_key_file=None
    )
    with pytest.raises(ForgeAccessDenied, match="refused the GitHub App's credentials"):
        connect(wrong, event_repository(gh.url), installation_id=installation).pull_request(1)


# --- configuration and the configured host ---------------------------------------------------------


def test_a_delivery_naming_another_host_gets_no_request(
    gh: FakeGitHub, github_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ForgeHostRefused, match="no credential is sent there"):
        connect(github_settings, event_repository("https://evil.example.com/api/v3"))
    assert gh.requests == []
    assert "refused to connect" in caplog.text


def test_a_repository_outside_gitops_repositories_is_refused(
    gh: FakeGitHub, github_settings: Settings
) -> None:
    settings = replace(github_settings, repositories=("other/*",))
    with pytest.raises(ForgePermanentError, match="not served by this bot"):
        connect(settings, event_repository(gh.url))


def test_a_webhook_secret_without_credentials(tmp_path: Path) -> None:
    settings = Settings.from_env({"GITHUB_WEBHOOK_SECRET": "s"})
    [warning] = startup_warnings(settings)
    assert "GITHUB_TOKEN" in warning and "GITHUB_APP_ID" in warning
    with pytest.raises(ForgeNotConfigured, match="set GITHUB_TOKEN"):
        connect(settings, event_repository("https://api.github.com"))
    assert (
        startup_warnings(Settings.from_env({"GITHUB_WEBHOOK_SECRET": "s", "GITHUB_TOKEN": "t"}))
        == []
    )
    assert startup_warnings(Settings.from_env({})) == []


def test_app_settings_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(ForgeNotConfigured, match="GITHUB_APP_ID is set without"):
        GitHubConfig.from_settings(Settings.from_env({"GITHUB_APP_ID": "5"}))
    with pytest.raises(ForgeNotConfigured, match="cannot be read"):
        GitHubConfig.from_settings(
            Settings.from_env({"GITHUB_APP_ID": "5", "GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent"})
        )
    with pytest.raises(ForgeNotConfigured, match="not a PEM private key"):
        GitHubConfig.from_settings(
            Settings.from_env({"GITHUB_APP_ID": "5", "GITHUB_APP_PRIVATE_KEY": "hunter2"})
        )


# --- no credential where it does not belong ------------------------------------------------------------


def test_no_token_in_bodies_urls_logs_or_errors(
    gh: FakeGitHub, github_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = gh.bot_token or ""
    forge = GitHubForge(fast(GitHubConfig.from_settings(github_settings)), REPO)
    forge.create_comment(1, "hi")
    forge.set_status(
        gh.repo(REPO).pulls[1].head_sha,
        state=StatusState.SUCCESS,
        context="gitops/preview",
        description="ok",
    )
    gh.fail(502, times=100, path="/pulls/1")
    with pytest.raises(ForgeUnavailable) as caught:
        forge.pull_request(1)
    errors = [str(caught.value), repr(caught.value)]
    gh.faults.clear()
    with pytest.raises(ForgeRefused) as refused:
        forge.pull_request(999)
    errors += [str(refused.value)]
    assert token not in repr(forge.config) and token not in repr(github_settings)
    for request in gh.requests:
        assert token.encode() not in request.body
        assert token not in request.path + request.query
    assert token not in caplog.text
    assert all(token not in e for e in errors)
