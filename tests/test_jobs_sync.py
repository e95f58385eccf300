"""`/sync` and `/help` in-process: who may run them, what runs, what is replied (once).

An unknown app named in `/sync` runs on both :data:`~tests.jobs_support.WORLDS` (the MemoryForge
and PyGithub against the contract-checked fake GitHub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.commands import HELP_TEXT
from bot.events import CommandEvent, Repository
from bot.forges import Identity, Permission
from bot.jobs import sync
from bot.jobs.context import JobContext
from bot.jobs.sync import handle_command
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
)

REPOSITORY = Repository("github", REPO, 1, "main", "", "", "https://api.github.com")


def command(
    forge: MemoryForge | World,
    body: str,
    *,
    author: str = "alice",
    name: str = "sync",
    args: tuple[str, ...] = (),
) -> CommandEvent:
    posted = forge.add_comment(1, author, body)
    comment_id = posted if isinstance(posted, int) else posted.id
    return CommandEvent(
        delivery_id=f"c-{comment_id}",
        repository=REPOSITORY,
        number=1,
        command=name,
        args=args,
        author=author,
        comment_id=comment_id,
    )


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "remote.git")


@pytest.fixture
def forge(remote: Remote) -> MemoryForge:
    forge = memory_forge(remote)
    remote.commit("feature", {"web/a.yaml": configmap("a", "2")})
    remote.publish(forge, 1, "feature")
    forge.permissions.update(
        {"alice": Permission.WRITE, "mallory": Permission.READ, "maint": Permission.MAINTAIN}
    )
    return forge


@pytest.fixture
def ctx(forge: MemoryForge, redis_url: str, tmp_path: Path, kubeconfig: str) -> JobContext:
    context = make_context(forge, redis_url, tmp_path, targets=targets_at(kubeconfig))
    intake_head(context, 1, forge.pulls[1].head_sha)
    return context


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    world = open_world(request, tmp_path, comment_limit=65536)
    world.commit("feature", {"web/a.yaml": configmap("a", "2")})
    world.publish(1, "feature")
    world.allow("alice", Permission.WRITE)
    return world


def bodies(forge: MemoryForge | World) -> list[str]:
    if isinstance(forge, MemoryForge):
        return [c.body for c in forge.comments_on(1)]
    return [body for _, body in forge.comments(1)]


def previews(forge: MemoryForge | World) -> list[str]:
    return [body for body in bodies(forge) if "gitops-bot:preview" in body]


def replies(forge: MemoryForge | World) -> list[str]:
    return [body for body in bodies(forge) if "gitops-bot:reply-" in body]


def test_a_writers_sync_reacts_at_once_and_reruns_the_preview_in_the_same_comment(
    forge: MemoryForge, ctx: JobContext
) -> None:
    first = handle_command(command(forge, "/sync"), ctx)
    assert first.outcome == sync.SYNCED and first.preview is not None
    assert first.preview.outcome == "posted"
    (comment_id, _reaction) = forge.reactions[0]
    assert forge.reactions == [(comment_id, "eyes")]
    assert forge.calls.index("react") < forge.calls.index("git_access")
    (preview,) = previews(forge)
    assert "Live diff" in preview and "ConfigMap web/a" in preview
    head = forge.pulls[1].head_sha
    assert [s.state.value for s in forge.statuses[head]] == ["pending", "success"]
    assert forge.statuses[head][0].description == "Re-running the preview (/sync by alice)…"
    # /sync again by a maintainer: the same comment, edited (not a second one); /sync
    # bypasses the one-preview-per-head rule
    again = handle_command(command(forge, "/sync", author="maint"), ctx)
    assert again.preview is not None and again.preview.outcome == "posted"
    assert len(previews(forge)) == 1 and replies(forge) == []


def test_sync_with_app_names_previews_them_besides_the_affected_apps(
    forge: MemoryForge, ctx: JobContext
) -> None:
    outcome = handle_command(command(forge, "/sync api", args=("api",)), ctx)
    assert outcome.preview is not None and outcome.preview.result is not None
    assert [a.name for a in outcome.preview.result.apps] == ["web", "api"]


def test_a_readers_command_gets_one_short_reply_and_runs_nothing(
    forge: MemoryForge, ctx: JobContext
) -> None:
    event = command(forge, "/sync", author="mallory")
    for _delivery in range(2):  # the job retried or redelivered: still one reply
        assert handle_command(event, ctx).outcome == sync.REFUSED
    (reply,) = replies(forge)
    assert "Only people who may push to this repository" in reply
    assert "and mallory may not: nothing was run" in reply
    assert forge.reactions == [] and forge.statuses == {} and previews(forge) == []
    stranger = command(forge, "/help", author="nobody", name="help")
    assert handle_command(stranger, ctx).outcome == sync.REFUSED
    assert "and nobody may not" in replies(forge)[-1]


@pytest.mark.parametrize("author", ["gitops-bot", "GitOps-Bot", "renovate[bot]", "ci-robot"])
def test_comments_of_bots_and_of_the_bot_itself_are_ignored(
    forge: MemoryForge, redis_url: str, tmp_path: Path, author: str
) -> None:
    forge.me = Identity("gitops-bot")
    forge.permissions[author] = Permission.ADMIN
    settings = settings_for(tmp_path, GITOPS_BOT_LOGINS="ci-robot")
    ctx = make_context(forge, redis_url, tmp_path, settings=settings)
    assert handle_command(command(forge, "/sync", author=author), ctx).outcome == sync.IGNORED
    assert "permission" not in forge.calls and replies(forge) == [] and forge.reactions == []


def test_an_unknown_app_gets_a_reply_listing_the_valid_names_and_nothing_reruns(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    ctx = make_context(world.forge, redis_url, tmp_path)  # no cluster: nothing may reach one
    head = world.head("feature")
    intake_head(ctx, 1, head)
    event = command(world, "/sync web nope", args=("web", "nope"))
    for _delivery in range(2):  # redelivered or retried: still one reply
        assert handle_command(event, ctx).outcome == "unknown_apps"
    (reply,) = replies(world)
    assert "`nope` is not an app of this repository" in reply
    assert "The apps are: `api`, `web`." in reply
    assert world.statuses(head) == [] and previews(world) == []


def test_help_replies_with_the_commands_and_a_malformed_sync_says_what_is_wrong(
    forge: MemoryForge, ctx: JobContext
) -> None:
    assert handle_command(command(forge, "/help", name="help"), ctx).outcome == sync.HELPED
    assert HELP_TEXT in replies(forge)[0]
    bad = command(forge, "/sync Bad_Name", name="invalid", args=("Bad_Name",))
    assert handle_command(bad, ctx).outcome == sync.INVALID
    assert "`Bad_Name` is not a valid app name" in replies(forge)[1]
    assert HELP_TEXT in replies(forge)[1]


def test_sync_on_a_closed_pull_request_says_so(forge: MemoryForge, ctx: JobContext) -> None:
    from dataclasses import replace

    from bot.forges import PullState

    forge.pulls[1] = replace(forge.pulls[1], state=PullState.MERGED)
    handle_command(command(forge, "/sync"), ctx)
    (reply,) = replies(forge)
    assert "This pull request is merged: there is nothing to preview." in reply
    assert forge.statuses == {}
