"""The git cache against the fake GitHub's real git smart HTTP: what a PR preview renders is the
merge result, fetched incrementally, shared under a lock, with no credential on disk."""

from __future__ import annotations

import base64
import concurrent.futures
import multiprocessing
from pathlib import Path

import pytest

from bot.checkouts import CacheBusy, CheckoutError, FetchFailed, RepoCache
from bot.forges.base import GitAccess, PullRequest, PullState
from bot.forges.github import GitHubConfig, GitHubForge
from bot.manifests import gitrepo
from bot.settings import Settings
from tests.fake_forge import gitstore
from tests.fake_forge.github import FakeGitHub

REPO = "acme/app"


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.create_repo(REPO, files={"app/a.yaml": "a: 1\n", "app/b.yaml": "b: 1\n"})
    fake_github.set_permission(REPO, "gitops-bot", "write")
    fake_github.commit(REPO, "feature", {"app/a.yaml": "a: 2\n"})
    fake_github.open_pull_request(REPO, head="feature")
    return fake_github


@pytest.fixture
def forge(gh: FakeGitHub, github_settings: Settings) -> GitHubForge:
    return GitHubForge(GitHubConfig.from_settings(github_settings), REPO)


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "repos")


def prepare(cache: RepoCache, forge: GitHubForge, number: int = 1) -> tuple[Path, object]:
    return cache.prepare_pull_request(
        "github", REPO, forge.git_access(), forge.pull_request(number)
    )


def test_an_up_to_date_merge_ref_is_used(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub
) -> None:
    repo, merge = cache.prepare_pull_request(
        "github", REPO, forge.git_access(), forge.pull_request(1)
    )
    pull = gh.repo(REPO).pulls[1]
    assert merge.source == "forge" and merge.sha == pull.test_merge_sha
    assert merge.head_sha == pull.head_sha
    assert repo == cache.path("github", REPO) and (repo / "HEAD").exists()
    assert merge.sha is not None
    with gitrepo.checkout(repo, merge.sha) as tree:  # a clean tree from the bare cache
        assert (tree / "app/a.yaml").read_text() == "a: 2\n"
        assert (tree / "app/b.yaml").read_text() == "b: 1\n"
    assert gitrepo.changed_files(repo, merge.base_sha, merge.sha) == ["app/a.yaml"]


def test_a_base_that_moved_is_merged_locally(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub, tmp_path: Path
) -> None:
    gh.merge_refs_stale = True  # GitHub recomputes merge refs lazily
    new_base = gh.commit(REPO, "main", {"app/b.yaml": "b: 2\n"})
    repo, merge = cache.prepare_pull_request(
        "github", REPO, forge.git_access(), forge.pull_request(1)
    )
    assert merge.source == "local" and merge.base_sha == new_base
    assert merge.sha is not None
    parents = gitstore.git(repo, "rev-list", "--parents", "-n1", merge.sha).split()[1:]
    assert parents == [new_base, merge.head_sha]
    with gitrepo.checkout(repo, merge.sha) as tree:
        # Both the PR's change and what landed on the base since: not a revert of the latter.
        assert (tree / "app/a.yaml").read_text() == "a: 2\n"
        assert (tree / "app/b.yaml").read_text() == "b: 2\n"
    assert gitrepo.changed_files(repo, merge.base_sha, merge.sha) == ["app/a.yaml"]
    # Deterministic: another worker's cache writes the same merge commit.
    other = RepoCache(tmp_path / "other")
    _, again = other.prepare_pull_request("github", REPO, forge.git_access(), forge.pull_request(1))
    assert again.sha == merge.sha


def test_a_conflict_names_the_files(cache: RepoCache, forge: GitHubForge, gh: FakeGitHub) -> None:
    gh.commit(REPO, "main", {"app/a.yaml": "a: 3\n", "app/b.yaml": "b: 3\n"})
    assert gh.repo(REPO).pulls[1].test_merge_sha is None  # GitHub drops the merge ref
    _, merge = cache.prepare_pull_request("github", REPO, forge.git_access(), forge.pull_request(1))
    assert merge.conflicted and merge.sha is None and merge.source is None
    assert merge.conflicts == ("app/a.yaml",)


def test_a_fork_pull_request_is_fetched_from_the_base_repository(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub
) -> None:
    gh.commit(REPO, "fork-tmp", {"app/c.yaml": "c: 1\n"})
    number = gh.open_pull_request(REPO, head="fork-tmp", author="mallory", fork_owner="mallory")
    gitstore.git(gh.repo(REPO).git_dir, "update-ref", "-d", "refs/heads/fork-tmp")
    pr = forge.pull_request(number)
    assert pr.from_fork
    repo, merge = cache.prepare_pull_request("github", REPO, forge.git_access(), pr)
    assert merge.sha is not None
    assert gitrepo.changed_files(repo, merge.base_sha, merge.sha) == ["app/c.yaml"]


def test_an_older_head_is_fetched_by_sha(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub
) -> None:
    old = forge.pull_request(1)
    gh.commit(REPO, "feature", {"app/a.yaml": "a: 9\n"})  # the PR moved on meanwhile
    repo, merge = cache.prepare_pull_request("github", REPO, forge.git_access(), old)
    assert merge.head_sha == old.head_sha and merge.source == "local"
    assert merge.sha is not None
    with gitrepo.checkout(repo, merge.sha) as tree:
        assert (tree / "app/a.yaml").read_text() == "a: 2\n"


def test_fetches_are_incremental(cache: RepoCache, forge: GitHubForge, gh: FakeGitHub) -> None:
    access, pr = forge.git_access(), forge.pull_request(1)
    cache.prepare_pull_request("github", REPO, access, pr)
    before = len(gh.git_requests())
    cache.prepare_pull_request("github", REPO, access, pr)
    # Nothing new: one ls-remote (ref advertisement + ls-refs), no fetch.
    assert len(gh.git_requests()) - before == 2
    gh.commit(REPO, "feature", {"app/b.yaml": "b: 5\n"})
    before = len(gh.git_requests())
    _, merge = cache.prepare_pull_request("github", REPO, access, forge.pull_request(1))
    assert merge.source == "forge"
    assert len(gh.git_requests()) - before <= 4  # ls-remote, then a fetch by SHA


def test_deploy_side_fetch_branch_and_commits(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub
) -> None:
    access = forge.git_access()
    repo, head = cache.fetch_branch("github", REPO, access, "main")
    assert head == forge.repository_info().default_branch_sha
    merged = gh.merge_pull_request(REPO, 1)
    assert cache.fetch_commits("github", REPO, access, [merged, head]) == repo
    assert gitrepo.resolve_commit(repo, merged) == merged
    before = len(gh.git_requests())
    cache.fetch_commits("github", REPO, access, [merged])
    assert len(gh.git_requests()) == before  # already there: no request at all
    with pytest.raises(CheckoutError, match="not a full commit SHA"):
        cache.fetch_commits("github", REPO, access, ["HEAD"])
    with pytest.raises(CheckoutError, match="does not exist"):
        cache.fetch_branch("github", REPO, access, "nope")


def test_no_credential_on_disk_or_in_errors(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_TRACE_CURL", "1")  # a worker's stray debug setting must not leak
    token = gh.bot_token or ""
    encoded = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    repo, _ = cache.prepare_pull_request("github", REPO, forge.git_access(), forge.pull_request(1))
    config = (repo / "config").read_text()
    assert "url" not in config and "extraHeader" not in config and "credential" not in config
    for path in cache.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.encode() not in data and encoded.encode() not in data, path
    assert all(token not in r.path + r.query for r in gh.requests)
    wrong = GitAccess(
        forge.git_access().clone_url,
        {
            **forge.git_access().env,
            "GIT_CONFIG_VALUE_0": "Authorization: Basic "
            + base64.b64encode(b"x:ghp_wrong").decode(),
        },
    )
    with pytest.raises(CheckoutError) as caught:
        cache.prepare_pull_request("github", REPO, wrong, forge.pull_request(1))
    assert "ghp_wrong" not in str(caught.value) and token not in str(caught.value)
    assert "the forge refused the bot's credentials for git" in str(caught.value)


def test_an_unreachable_git_server_is_transient(cache: RepoCache) -> None:
    access = GitAccess("http://127.0.0.1:9/acme/app.git", {})
    pr = PullRequest(
        1,
        state=PullState.OPEN,
        head_sha="a" * 40,
        head_ref="f",
        base_sha="b" * 40,
        base_ref="main",
        author="a",
        draft=False,
        from_fork=False,
        head_fetch_ref="refs/pull/1/head",
        merge_ref="refs/pull/1/merge",
    )
    with pytest.raises(FetchFailed):
        cache.prepare_pull_request("github", REPO, access, pr)


def _prepare_in_a_process(root: Path, access: GitAccess, pr: PullRequest) -> str | None:
    return RepoCache(root).prepare_pull_request("github", REPO, access, pr)[1].sha


def test_worker_processes_take_turns_on_one_repository(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub
) -> None:
    access, pr = forge.git_access(), forge.pull_request(1)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        shas = list(pool.map(_prepare_in_a_process, [cache.root] * 4, [access] * 4, [pr] * 4))
    assert len(set(shas)) == 1 and shas[0] == gh.repo(REPO).pulls[1].test_merge_sha
    repo = cache.path("github", REPO)
    assert gitrepo.resolve_commit(repo, "refs/gitops/pull/1/merge") == shas[0]


def test_a_lock_held_too_long_is_a_transient_error(tmp_path: Path) -> None:
    cache = RepoCache(tmp_path, lock_timeout=0.2)
    repo = cache.path("github", REPO)
    other = RepoCache(tmp_path, lock_timeout=0.2)  # flock: one open file per holder
    with cache.locked(repo), pytest.raises(CacheBusy), other.locked(repo):
        pass


@pytest.mark.parametrize("name", ["../etc", "acme/../x", "acme", "acme/app name", "acme/.."])
def test_unsafe_repository_names_never_become_paths(cache: RepoCache, name: str) -> None:
    with pytest.raises(CheckoutError):
        cache.path("github", name)


def test_a_pull_request_changing_10000_files(
    cache: RepoCache, forge: GitHubForge, gh: FakeGitHub
) -> None:
    files = {f"big/f{i:05}.yaml": f"i: {i}\n" for i in range(10_000)}
    gh.commit(REPO, "huge", files)
    number = gh.open_pull_request(REPO, head="huge")
    repo, merge = cache.prepare_pull_request(
        "github", REPO, forge.git_access(), forge.pull_request(number)
    )
    assert merge.sha is not None
    changed = gitrepo.changed_files(repo, merge.base_sha, merge.sha)
    assert len(changed) == 10_000 and changed[0] == "big/f00000.yaml"
