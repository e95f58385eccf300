"""The sticky comment reconciler: one comment per part, edited in place, never duplicated, on the
in-memory forge (fast, every case) and on the fake GitHub through PyGithub (redelivery)."""

from __future__ import annotations

import pytest

from bot.forges import Marker
from bot.forges.github import GitHubConfig, GitHubForge
from bot.forges.sticky import MARKER_RESERVE, body_of, part_limit, reconcile
from bot.settings import Settings
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.memory import MemoryForge

PREVIEW = Marker("preview")


def ours(forge: MemoryForge, number: int = 1) -> list[str]:
    return [c.body for c in forge.comments_on(number) if c.author == "gitops-bot"]


@pytest.fixture
def forge() -> MemoryForge:
    forge = MemoryForge()
    forge.add_pull_request(1, head_sha="a" * 40, base_sha="b" * 40)
    return forge


def test_first_run_posts_each_part_in_order(forge: MemoryForge) -> None:
    result = reconcile(forge, 1, PREVIEW, ["summary", "diffs 2"])
    assert ours(forge) == [body_of(PREVIEW, 1, "summary"), body_of(PREVIEW, 2, "diffs 2")]
    assert len(result.created) == 2 and not result.edited and not result.deleted


def test_redelivery_writes_nothing(forge: MemoryForge) -> None:
    reconcile(forge, 1, PREVIEW, ["summary", "diffs"])
    forge.calls.clear()
    result = reconcile(forge, 1, PREVIEW, ["summary", "diffs"])
    assert forge.calls == ["identity", "comments"]
    assert len(result.unchanged) == 2


def test_parts_are_edited_added_and_deleted(forge: MemoryForge) -> None:
    reconcile(forge, 1, PREVIEW, ["s", "d2", "d3"])
    first_ids = [c.id for c in forge.comments_on(1)]
    result = reconcile(forge, 1, PREVIEW, ["s'", "d2"])
    assert ours(forge) == [body_of(PREVIEW, 1, "s'"), body_of(PREVIEW, 2, "d2")]
    assert result.edited == [first_ids[0]] and result.unchanged == [first_ids[1]]
    assert result.deleted == [first_ids[2]]
    result = reconcile(forge, 1, PREVIEW, ["s'", "d2", "d3", "d4"])
    assert [c.id for c in forge.comments_on(1)][:2] == first_ids[:2]
    assert len(result.created) == 2
    reconcile(forge, 1, PREVIEW, [])
    assert ours(forge) == []


def test_duplicates_from_a_race_are_removed_oldest_kept(forge: MemoryForge) -> None:
    # Two runs that both found nothing and both posted: the next run converges.
    forge.create_comment(1, body_of(PREVIEW, 1, "old"))
    forge.create_comment(1, body_of(PREVIEW, 1, "old"))
    oldest = forge.comments_on(1)[0].id
    reconcile(forge, 1, PREVIEW, ["new"])
    assert [(c.id, c.body) for c in forge.comments_on(1)] == [(oldest, body_of(PREVIEW, 1, "new"))]


def test_other_comments_kinds_and_instances_are_left_alone(forge: MemoryForge) -> None:
    forge.add_comment(1, "alice", body_of(PREVIEW, 1, "a human quoting the marker"))
    forge.add_comment(1, "alice", "lgtm")
    reconcile(forge, 1, Marker("deploy"), ["deployed"])
    reconcile(forge, 1, Marker("preview", "prod"), ["prod preview"])
    reconcile(forge, 1, PREVIEW, ["preview"])
    reconcile(forge, 1, PREVIEW, [])
    bodies = [c.body for c in forge.comments_on(1)]
    assert bodies == [
        body_of(PREVIEW, 1, "a human quoting the marker"),
        "lgtm",
        body_of(Marker("deploy"), 1, "deployed"),
        body_of(Marker("preview", "prod"), 1, "prod preview"),
    ]


def test_a_part_too_long_is_refused_before_any_write(forge: MemoryForge) -> None:
    limit = part_limit(forge)
    assert limit == forge.comment_limit - MARKER_RESERVE
    with pytest.raises(ValueError, match="part 2 has"):
        reconcile(forge, 1, PREVIEW, ["ok", "x" * (limit + 1)])
    assert forge.comments_on(1) == []
    reconcile(forge, 1, Marker("preview", "a" * 40), ["x" * limit])
    assert len(forge.comments_on(1)[0].body) <= forge.comment_limit


def test_a_failure_midway_converges_on_the_next_run(forge: MemoryForge) -> None:
    reconcile(forge, 1, PREVIEW, ["s", "d"])
    forge.fail_next()  # identity: the forge is down for this run
    with pytest.raises(Exception, match="down"):
        reconcile(forge, 1, PREVIEW, ["s2", "d2", "d3"])
    reconcile(forge, 1, PREVIEW, ["s2", "d2", "d3"])
    assert ours(forge) == [body_of(PREVIEW, i, t) for i, t in enumerate(["s2", "d2", "d3"], 1)]


def test_on_github_redelivery_and_parts(fake_github: FakeGitHub, github_settings: Settings) -> None:
    fake_github.create_repo("acme/app")
    fake_github.set_permission("acme/app", "gitops-bot", "write")
    fake_github.commit("acme/app", "feature", {"a": "1"})
    number = fake_github.open_pull_request("acme/app", head="feature")
    config = GitHubConfig.from_settings(github_settings)
    forge = GitHubForge(config, "acme/app")
    parts = ["## Preview\nsummary", "diff 2", "diff 3"]
    for _ in range(3):  # the webhook, a redelivery, a retry
        reconcile(forge, number, PREVIEW, parts)
    assert [c.body for c in fake_github.comments("acme/app", number)] == [
        body_of(PREVIEW, i, t) for i, t in enumerate(parts, 1)
    ]
    writes = [r for r in fake_github.api_requests() if r.method != "GET"]
    assert len(writes) == 3
    reconcile(forge, number, PREVIEW, ["## Preview\nsmaller"])
    assert [c.body for c in fake_github.comments("acme/app", number)] == [
        body_of(PREVIEW, 1, "## Preview\nsmaller")
    ]
