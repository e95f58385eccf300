"""The git cache against the fake GitLab's real git smart HTTP, through the GitLab adapter: what
an MR preview renders is the MR merged into its target's head (GitLab's merge ref when it is up
to date, a local merge when it is stale or missing), fork MRs come from the target project's
``refs/merge-requests/<iid>/head``, and no credential reaches the disk."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bot.checkouts import CheckoutError, RepoCache
from bot.forges.base import GitAccess
from bot.forges.gitlab import GitLabConfig, GitLabForge
from bot.manifests import gitrepo
from bot.settings import Settings
from tests.fake_forge import gitstore
from tests.fake_forge.gitlab import DEVELOPER, FakeGitLab

REPO = "acme/platform/app"


@pytest.fixture
def gl(fake_gitlab: FakeGitLab) -> FakeGitLab:
    fake_gitlab.create_project(REPO, files={"app/a.yaml": "a: 1\n", "app/b.yaml": "b: 1\n"})
    fake_gitlab.add_member("acme", "gitops-bot", DEVELOPER)
    fake_gitlab.commit(REPO, "feature", {"app/a.yaml": "a: 2\n"})
    fake_gitlab.open_merge_request(REPO, source_branch="feature")
    return fake_gitlab


@pytest.fixture
def forge(gl: FakeGitLab, gitlab_settings: Settings) -> GitLabForge:
    return GitLabForge(GitLabConfig.from_settings(gitlab_settings), REPO)


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "repos")


def test_an_up_to_date_merge_ref_is_used(
    cache: RepoCache, forge: GitLabForge, gl: FakeGitLab
) -> None:
    repo, merge = cache.prepare_pull_request(
        "gitlab", REPO, forge.git_access(), forge.pull_request(1)
    )
    mr = gl.project(REPO).mrs[1]
    assert merge.source == "forge" and merge.sha == mr.test_merge_sha
    assert repo == cache.path("gitlab", REPO) and repo.name == "app.git"
    assert merge.sha is not None
    with gitrepo.checkout(repo, merge.sha) as tree:
        assert (tree / "app/a.yaml").read_text() == "a: 2\n"
    assert gitrepo.changed_files(repo, merge.base_sha, merge.sha) == ["app/a.yaml"]


def test_a_stale_merge_ref_is_merged_locally(
    cache: RepoCache, forge: GitLabForge, gl: FakeGitLab
) -> None:
    gl.merge_refs_stale = True  # GitLab refreshes merge refs when it rechecks mergeability
    new_base = gl.commit(REPO, "main", {"app/b.yaml": "b: 2\n"})
    stale = gitstore.rev(gl.project(REPO).git_dir, "refs/merge-requests/1/merge")
    repo, merge = cache.prepare_pull_request(
        "gitlab", REPO, forge.git_access(), forge.pull_request(1)
    )
    assert merge.source == "local" and merge.base_sha == new_base and merge.sha != stale
    assert merge.sha is not None
    with gitrepo.checkout(repo, merge.sha) as tree:
        # The MR's change and what landed on the target since: not a revert of the latter.
        assert (tree / "app/a.yaml").read_text() == "a: 2\n"
        assert (tree / "app/b.yaml").read_text() == "b: 2\n"


def test_a_missing_merge_ref_is_merged_locally(
    cache: RepoCache, forge: GitLabForge, gl: FakeGitLab
) -> None:
    gitstore.git(gl.project(REPO).git_dir, "update-ref", "-d", "refs/merge-requests/1/merge")
    _, merge = cache.prepare_pull_request("gitlab", REPO, forge.git_access(), forge.pull_request(1))
    assert merge.source == "local" and merge.sha is not None


def test_a_conflict_names_the_files(cache: RepoCache, forge: GitLabForge, gl: FakeGitLab) -> None:
    gl.commit(REPO, "main", {"app/a.yaml": "a: 3\n"})
    assert gl.project(REPO).mrs[1].test_merge_sha is None  # no merge ref for a conflict
    _, merge = cache.prepare_pull_request("gitlab", REPO, forge.git_access(), forge.pull_request(1))
    assert merge.conflicted and merge.conflicts == ("app/a.yaml",)


def test_a_fork_merge_request_comes_from_the_target_project(
    cache: RepoCache, forge: GitLabForge, gl: FakeGitLab
) -> None:
    fork = gl.fork_project(REPO, "mallory")
    gl.commit(fork.path, "evil", {"app/c.yaml": "c: 1\n"}, pusher="mallory")
    iid = gl.open_merge_request(REPO, source_branch="evil", source_project=fork.path)
    pr = forge.pull_request(iid)
    assert pr.from_fork
    repo, merge = cache.prepare_pull_request("gitlab", REPO, forge.git_access(), pr)
    assert merge.source == "forge" and merge.sha is not None
    assert gitrepo.changed_files(repo, merge.base_sha, merge.sha) == ["app/c.yaml"]
    # Every git request went to the target project, never to the fork.
    assert all(r.path.startswith(f"/{REPO}.git/") for r in gl.git_requests())


def test_no_credential_on_disk_or_in_requests(
    cache: RepoCache, forge: GitLabForge, gl: FakeGitLab
) -> None:
    token = gl.bot_token or ""
    encoded = base64.b64encode(f"oauth2:{token}".encode()).decode()
    repo, _ = cache.prepare_pull_request("gitlab", REPO, forge.git_access(), forge.pull_request(1))
    config = (repo / "config").read_text()
    assert "url" not in config and "extraHeader" not in config and "credential" not in config
    for path in cache.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data and encoded.encode() not in data, path
    for request in gl.git_requests():
        assert token not in request.path + request.query
        assert request.headers["authorization"] == f"Basic {encoded}"
    wrong = GitAccess(
        forge.git_access().clone_url,
        {
            **forge.git_access().env,
            "GIT_CONFIG_VALUE_0": "Authorization: Basic "
            + base64.b64encode(b"oauth2:glpat-wrong").decode(),
        },
    )
    with pytest.raises(CheckoutError, match="refused the bot's credentials") as caught:
        cache.fetch_branch("gitlab", REPO, wrong, "main")
    assert "glpat-wrong" not in str(caught.value) and token not in str(caught.value)
