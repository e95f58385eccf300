"""The preview job in-process: a MemoryForge over a real git repository, a real Redis, the kube
emulator (or an unreachable cluster). Each test says what a reviewer sees on the PR.

The scenarios of issue 13.9 that hinge on what the forge answers (supersession, a fork PR, a
repository refused by a target, a report split in parts) run on both :data:`WORLDS`: the
MemoryForge and the real PyGithub adapter against the contract-checked fake GitHub."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from bot.errors import ForgeAccessDenied, ForgeUnavailable
from bot.events import PullRequestEvent, Repository
from bot.forges import GitAccess, StatusState
from bot.jobs import preview as job
from bot.jobs.context import JobContext
from bot.jobs.preview import preview_pull_request, run_preview, summarize
from bot.model import AppResult, Change, Mode, ObjectChange, ObjectError, ObjectRef, RunResult
from bot.state import PullKey
from tests.fake_forge.memory import MemoryForge
from tests.jobs_support import (
    REPO,
    WORLDS,
    Remote,
    World,
    configmap,
    intake_head,
    make_context,
    memory_forge,
    open_world,
    settings_for,
    targets_at,
    unreachable_kubeconfig,
)

CONTEXT = "gitops/preview"


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "remote.git")


@pytest.fixture
def forge(remote: Remote) -> MemoryForge:
    return memory_forge(remote)


#: The MemoryForge's comment limit in the worlds: small, so a report splits in kilobytes (the
#: fake GitHub keeps GitHub's 65,536 characters, so the report there is as large as it takes).
SMALL_COMMENTS = 2500


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    return open_world(request, tmp_path, comment_limit=SMALL_COMMENTS)


def event(ctx: JobContext, number: int, head: str, delivery: str = "d-1") -> PullRequestEvent:
    """A preview delivery as the intake queues it (and records its head)."""
    intake_head(ctx, number, head)
    repository = Repository("github", REPO, 1, "main", "", "", "https://api.github.com")
    return PullRequestEvent(
        delivery_id=delivery,
        repository=repository,
        number=number,
        head_sha=head,
        base_sha="0" * 40,
        base_ref="main",
        head_ref="feature",
        action="synchronize",
        author="alice",
    )


def ours(forge: MemoryForge | World, number: int = 1) -> list[str]:
    if isinstance(forge, MemoryForge):
        return [c.body for c in forge.comments_on(number) if "gitops-bot:preview" in c.body]
    return [body for _, body in forge.comments(number) if "gitops-bot:preview" in body]


def states(forge: MemoryForge, sha: str) -> list[tuple[str, str]]:
    return [(s.state.value, s.description) for s in forge.statuses.get(sha, [])]


def test_a_pr_gets_one_sticky_comment_and_a_pending_then_success_status(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path, kubeconfig: str
) -> None:
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path, targets=targets_at(kubeconfig))
    outcome = preview_pull_request(event(ctx, 1, head), ctx)
    assert outcome.outcome == job.POSTED
    # nothing deployed yet: the live diff creates the app's objects; only `web` is affected
    assert states(forge, head) == [
        ("pending", f"Previewing the merge of {head[:7]} into main…"),
        ("success", "1 app: +2 ~0 -0"),
    ]
    (comment,) = forge.comments_on(1)
    assert comment.body.startswith("<!-- gitops-bot:preview part 1 -->\n")
    assert f"GitOps preview of {head[:7]} merged into main" in comment.body
    assert "Live diff" in comment.body and "ConfigMap web/a" in comment.body
    assert "api" not in comment.body.split("<details>")[0].replace("api/v", "")

    # a second delivery for the same head and base runs no second preview
    again = make_context(forge, redis_url, tmp_path, targets=targets_at(kubeconfig), job_id="j2")
    assert preview_pull_request(event(again, 1, head, "d-2"), again).outcome == job.DUPLICATE
    # the same job redelivered after its worker died carries on, and edits the same comment
    assert preview_pull_request(event(ctx, 1, head), ctx).outcome == job.POSTED
    assert [c.id for c in forge.comments_on(1)] == [comment.id]
    assert "create_comment" in forge.calls and forge.calls.count("create_comment") == 1


def test_a_queued_preview_of_an_older_head_is_skipped(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    old = world.commit("feature", {"web/a.yaml": configmap("a", "2")})
    world.publish(1, "feature")
    ctx = make_context(world.forge, redis_url, tmp_path)
    queued = event(ctx, 1, old)
    new = world.commit("feature", {"web/a.yaml": configmap("a", "3")})
    world.publish(1, "feature")
    intake_head(ctx, 1, new)  # the newer push's delivery
    outcome = preview_pull_request(queued, ctx)
    assert outcome.outcome == job.SUPERSEDED
    assert world.statuses(old) == [] and world.statuses(new) == [] and world.comments(1) == []


def test_a_result_for_an_older_head_never_overwrites_a_newer_one(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    """The older job holds its result while the newer one posts; it then finds it is stale."""
    old = world.commit("feature", {"web/a.yaml": configmap("a", "old")})
    world.publish(1, "feature", from_fork=True)
    ctx = make_context(world.forge, redis_url, tmp_path)
    old_event = event(ctx, 1, old)
    pull = PullKey("github", REPO, 1)
    lock = ctx.state.client.lock(pull.post_lock_key, timeout=60)
    assert lock.acquire()
    outcomes: list[job.PreviewOutcome] = []
    runner = threading.Thread(target=lambda: outcomes.append(preview_pull_request(old_event, ctx)))
    runner.start()
    deadline = time.monotonic() + 60
    while not any(state == "pending" for state, _ in world.statuses(old)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the old job is past its pending status; a newer head arrives and is previewed first
    time.sleep(1.0)  # let it reach the lock (rendering a two-app repository takes less)
    new = world.commit("feature", {"web/a.yaml": configmap("a", "new")})
    world.publish(1, "feature", from_fork=True)
    newer = make_context(world.forge, redis_url, tmp_path, job_id="j-new")
    new_event = event(newer, 1, new, "d-2")  # the intake records the newer head
    lock.release()  # the older job may take the lock first: it finds itself superseded
    assert preview_pull_request(new_event, newer).outcome == job.POSTED
    runner.join(60)
    assert outcomes[0].outcome == job.SUPERSEDED
    (comment,) = ours(world)
    assert "new" in comment and "'old'" not in comment
    assert world.statuses(new)[-1] == ("success", "1 app: +0 ~1 -0 · offline (fork)")
    assert world.statuses(old)[-1] == (
        "error",
        f"Superseded by {new[:7]} before this preview finished: not previewed",
    )


def test_a_base_that_moved_is_previewed_merged_into_its_current_head(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    """Rendering the PR head alone would show a revert of what landed on the base since."""
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", from_fork=True)
    remote.commit("main", {"api/b.yaml": configmap("b", "landed")})  # stale merge ref now
    ctx = make_context(forge, redis_url, tmp_path)
    outcome = preview_pull_request(event(ctx, 1, head), ctx)
    assert outcome.outcome == job.POSTED and outcome.result is not None
    assert [a.name for a in outcome.result.apps] == ["web"]
    assert outcome.result.base == remote.head("main")
    (app,) = outcome.result.apps
    assert [c.ref.name for c in app.updated] == ["a"]


def test_a_merge_conflict_is_reported_with_its_files(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "pr")})
    remote.commit("main", {"web/a.yaml": configmap("a", "main")})
    remote.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path)
    assert preview_pull_request(event(ctx, 1, head), ctx).outcome == job.CONFLICT
    assert states(forge, head)[-1] == ("failure", "Merge conflict with main: web/a.yaml")
    (comment,) = ours(forge)
    assert "does not merge cleanly" in comment and "<code>web/a.yaml</code>" in comment


def test_a_fork_pr_is_previewed_offline_with_no_cluster_credential_used(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    # an unreachable cluster: had the preview tried it, its apps would be labelled unreachable
    targets = targets_at(unreachable_kubeconfig(tmp_path / "kc"))
    head = world.commit("feature", {"web/a.yaml": configmap("a", "2")})
    world.publish(1, "feature", from_fork=True)
    ctx = make_context(world.forge, redis_url, tmp_path, targets=targets)
    outcome = preview_pull_request(event(ctx, 1, head), ctx)
    assert outcome.outcome == job.POSTED and outcome.unreachable == {}
    assert "dry_run" not in outcome.timings and outcome.timings["checkout"] > 0
    assert world.statuses(head)[-1] == ("success", "1 app: +0 ~1 -0 · offline (fork)")
    (comment,) = ours(world)
    assert "offline: pull request from a fork" in comment and "Offline diff" in comment
    # a fork of a repository a target does not allow is refused all the same
    refusing = make_context(
        world.forge,
        redis_url,
        tmp_path,
        targets=targets_at(tmp_path / "kc", repositories=("acme/other",)),
        job_id="j2",
    )
    again = run_preview(refusing, 1, sync_by="alice")
    assert again.result is not None
    assert [e.reason for e in again.result.apps[0].errors] == ["RepositoryNotAllowed"]
    assert world.statuses(head)[-1][0] == "failure"


def test_a_fork_pr_is_previewed_live_when_the_operator_allows_it(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path, kubeconfig: str
) -> None:
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", from_fork=True)
    settings = settings_for(tmp_path, GITOPS_LIVE_PREVIEW_FORKS="true")
    ctx = make_context(
        forge, redis_url, tmp_path, targets=targets_at(kubeconfig), settings=settings
    )
    assert preview_pull_request(event(ctx, 1, head), ctx).outcome == job.POSTED
    assert states(forge, head)[-1] == ("success", "1 app: +2 ~0 -0")
    assert "Live diff" in ours(forge)[0]


def test_a_repository_not_allowed_on_a_target_is_refused_and_nothing_is_sent(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    # an unreachable cluster: had anything been sent, the app would fall back to offline
    targets = targets_at(unreachable_kubeconfig(tmp_path / "kc"), repositories=("acme/prod-*",))
    head = world.commit("feature", {"web/a.yaml": configmap("a", "2")})
    world.publish(1, "feature")
    ctx = make_context(world.forge, redis_url, tmp_path, targets=targets)
    outcome = preview_pull_request(event(ctx, 1, head), ctx)
    assert outcome.outcome == job.POSTED
    refusal = (
        "repository acme/app may not use target 'default': the clusters file allows only "
        "acme/prod-* there"
    )
    assert world.statuses(head)[-1] == (
        "failure",
        f"1 app: no changes · 1 error: web: {refusal}",
    )
    assert "may not use target" in ours(world)[0]
    assert outcome.unreachable == {}


def test_an_unreachable_target_falls_back_to_the_offline_diff_labelled(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    targets = targets_at(unreachable_kubeconfig(tmp_path / "kc"))
    head = remote.commit(
        "feature", {"web/a.yaml": configmap("a", "2"), "api/b.yaml": configmap("b", "2")}
    )
    remote.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path, targets=targets)
    outcome = preview_pull_request(event(ctx, 1, head), ctx)
    assert outcome.outcome == job.POSTED
    assert list(outcome.unreachable) == ["default"]
    assert states(forge, head)[-1] == (
        "success",
        "2 apps: +0 ~2 -0 · offline: default unreachable",
    )
    (comment,) = ours(forge)
    assert "(offline for default: unreachable)" in comment
    assert comment.count("offline diff: target &#39;default&#39; could not be reached") == 2


def test_a_pr_touching_no_app_gets_only_a_status_and_a_stale_comment_is_corrected(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    first = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", from_fork=True)
    remote.publish(forge, 2, "feature", from_fork=True)
    ctx = make_context(forge, redis_url, tmp_path)
    assert preview_pull_request(event(ctx, 1, first), ctx).outcome == job.POSTED
    # the PR's next head reverts its app change and only touches the README
    second = remote.commit("feature", {"web/a.yaml": configmap("a", "1"), "README.md": "hi\n"})
    remote.publish(forge, 1, "feature", from_fork=True)
    outcome = preview_pull_request(event(ctx, 1, second), ctx)
    assert outcome.outcome == job.NOTHING_AFFECTED
    assert states(forge, second)[-1] == (
        "success",
        "No app is affected by this change (1 changed file outside every app)",
    )
    (comment,) = ours(forge)
    assert "No app is affected by this pull request any more" in comment
    # a PR that never touched an app gets no comment at all
    remote.commit("docs", {"README.md": "docs\n"})
    remote.publish(forge, 3, "docs", from_fork=True)
    assert preview_pull_request(event(ctx, 3, remote.head("docs")), ctx).outcome == (
        job.NOTHING_AFFECTED
    )
    assert forge.comments_on(3) == []
    assert states(forge, remote.head("docs"))[-1] == (
        "success",
        "No app is affected by this change (1 changed file outside every app)",
    )


def test_a_report_too_large_for_one_comment_is_split_and_reconciled(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    limit = world.forge.comment_limit
    # twelve objects of a quarter of the limit each: three parts at least
    many = {f"web/cm-{i}.yaml": configmap(f"cm-{i}", "x" * (limit // 4)) for i in range(12)}
    head = world.commit("feature", many)
    world.publish(1, "feature", from_fork=True)
    ctx = make_context(world.forge, redis_url, tmp_path)
    assert preview_pull_request(event(ctx, 1, head), ctx).outcome == job.POSTED
    parts = ours(world)
    assert len(parts) > 2
    assert all(len(p) <= limit for p in parts)
    assert "part 2 of" in parts[1] and "Diffs continue in" in parts[0]
    assert all(p.count("```") % 2 == 0 for p in parts)  # no code block cut across parts
    first = world.comments(1)
    # a smaller change: the first comments edited in place, the surplus deleted, none added
    smaller = world.commit("feature", {f"web/cm-{i}.yaml": None for i in range(2, 12)})
    world.publish(1, "feature", from_fork=True)
    assert preview_pull_request(event(ctx, 1, smaller), ctx).outcome == job.POSTED
    now = world.comments(1)
    assert 0 < len(now) < len(first)
    assert [i for i, _ in now] == [i for i, _ in first[: len(now)]]
    assert now[0][1] != first[0][1] and "cm-11" not in now[0][1]
    assert f"{smaller[:7]} merged into main" in now[0][1]


def test_beyond_the_most_parts_the_largest_diffs_are_left_out_with_the_command(
    remote: Remote, redis_url: str, tmp_path: Path
) -> None:
    forge = memory_forge(remote, comment_limit=2500)
    many = {f"web/cm-{i}.yaml": configmap(f"cm-{i}", "x" * (200 + 40 * i)) for i in range(20)}
    head = remote.commit("feature", many)
    remote.publish(forge, 1, "feature", from_fork=True)
    ctx = make_context(forge, redis_url, tmp_path, max_parts=3)
    preview_pull_request(event(ctx, 1, head), ctx)
    parts = ours(forge)
    assert len(parts) == 3
    assert "left out" in parts[0] and "left out" in parts[-1]
    command = (
        f"git fetch origin main refs/pull/1/head && gitops-bot preview --repo . --base "
        f"{remote.head('main')} --head {head} --merge --format text"
    )
    assert command in parts[-1]


def test_a_forge_outage_on_a_write_fails_the_attempt_and_the_retry_posts_once(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", from_fork=True)
    ctx = make_context(forge, redis_url, tmp_path, retries_left=True)
    original = forge.create_comment
    calls = {"n": 0}

    def flaky(number: int, body: str):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise ForgeUnavailable("GitHub kept failing to comment (502)")
        return original(number, body)

    forge.create_comment = flaky  # type: ignore[method-assign]
    with pytest.raises(ForgeUnavailable):
        preview_pull_request(event(ctx, 1, head), ctx)
    # the job will be retried: the status says so, and no "error"
    assert states(forge, head)[-1][0] == "pending"
    assert "will be retried" in states(forge, head)[-1][1]
    assert preview_pull_request(event(ctx, 1, head), ctx).outcome == job.POSTED
    assert len(ours(forge)) == 1 and states(forge, head)[-1][0] == "success"


def test_a_permanent_failure_ends_with_an_error_status_and_its_reason(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", from_fork=True)
    denied = ForgeAccessDenied("GITHUB_TOKEN cannot read acme/app (404 while trying to fetch)")

    def git_access() -> GitAccess:
        raise denied

    forge.git_access = git_access  # type: ignore[method-assign]
    ctx = make_context(forge, redis_url, tmp_path, retries_left=True)
    with pytest.raises(ForgeAccessDenied):
        preview_pull_request(event(ctx, 1, head), ctx)
    assert states(forge, head)[-1] == ("error", f"The preview failed: {denied}")


def test_closed_pull_requests_and_drafts_are_not_previewed(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    from bot.forges import PullState

    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", state=PullState.CLOSED)
    remote.publish(forge, 2, "feature", draft=True)
    ctx = make_context(forge, redis_url, tmp_path)
    assert preview_pull_request(event(ctx, 1, head), ctx).outcome == job.CLOSED
    assert preview_pull_request(event(ctx, 2, head), ctx).outcome == job.DRAFT
    assert forge.statuses == {}
    drafts = make_context(
        forge, redis_url, tmp_path, settings=settings_for(tmp_path, GITOPS_PREVIEW_DRAFTS="1")
    )
    forge.pulls[2] = dataclasses.replace(forge.pulls[2], from_fork=True)
    assert run_preview(drafts, 2, expected_head=head).outcome == job.POSTED


def _app(name: str, *changes: Change, errors: int = 0) -> AppResult:
    app = AppResult(name=name, target="default")
    for i, change in enumerate(changes):
        app.changes.append(ObjectChange(ObjectRef("v1", "ConfigMap", "ns", f"o{i}"), change))
    app.errors = [ObjectError(f"bad {i}") for i in range(errors)]
    return app


def test_status_descriptions_count_changes_and_name_the_first_error() -> None:
    ok = RunResult(mode=Mode.LIVE, apps=[_app("a", Change.CREATE, Change.UPDATE), _app("b")])
    assert summarize(ok) == (StatusState.SUCCESS, "2 apps: +1 ~1 -0")
    quiet = RunResult(mode=Mode.LIVE, apps=[_app("a", Change.UNCHANGED)])
    assert summarize(quiet) == (StatusState.SUCCESS, "1 app: no changes")
    bad = RunResult(mode=Mode.LIVE, apps=[_app("a", Change.DELETE, errors=2)])
    assert summarize(bad, unreachable={"prod": "down"}) == (
        StatusState.FAILURE,
        "1 app: +0 ~0 -1 · offline: prod unreachable · 2 errors: a: bad 0",
    )
    long = RunResult(mode=Mode.LIVE, apps=[_app("a", errors=1)])
    long.apps[0].errors[0].message = "x" * 500
    state, text = summarize(long)
    assert state is StatusState.FAILURE and len(text) == 140 and text.endswith("…")


def test_an_instance_name_keeps_two_bots_apart_on_one_pull_request(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature", from_fork=True)
    staging = make_context(forge, redis_url, tmp_path)
    assert preview_pull_request(event(staging, 1, head), staging).outcome == job.POSTED
    prod = make_context(
        forge, redis_url, tmp_path, settings=settings_for(tmp_path, GITOPS_INSTANCE="prod")
    )
    assert run_preview(prod, 1, sync_by="alice").outcome == job.POSTED
    first, second = forge.comments_on(1)
    assert first.body.startswith("<!-- gitops-bot:preview part 1 -->")
    assert second.body.startswith("<!-- gitops-bot:preview@prod part 1 -->")
    assert f"GitOps preview (prod) of {head[:7]} merged into main" in second.body
    contexts = {s.context for s in forge.statuses[head]}
    assert contexts == {"gitops/preview", "gitops/prod/preview"}
    # each edits only its own comment
    assert run_preview(prod, 1, sync_by="alice").outcome == job.POSTED
    assert [c.id for c in forge.comments_on(1)] == [first.id, second.id]


def test_a_broken_clusters_file_fails_the_preview_with_its_message(
    remote: Remote, forge: MemoryForge, redis_url: str, tmp_path: Path
) -> None:
    from bot.errors import PermanentError
    from bot.jobs.context import settings_targets

    clusters = tmp_path / "clusters.yaml"
    clusters.write_text("targets:\n  prod:\n    namespace: [web]\n")
    settings = settings_for(tmp_path, GITOPS_CLUSTERS_FILE=str(clusters))
    head = remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature")
    ctx = make_context(forge, redis_url, tmp_path, settings=settings)
    ctx.targets = settings_targets(settings)
    with pytest.raises(PermanentError):
        preview_pull_request(event(ctx, 1, head), ctx)
    state, description = states(forge, head)[-1]
    assert state == "error"
    assert description.startswith(f"The preview failed: {clusters}: invalid clusters file:")
    assert ours(forge) == []
