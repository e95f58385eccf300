"""Events as the queue carries them: ``to_task`` is ``dataclasses.asdict`` plus the type, and
``from_task`` brings back an equal event, for every event type."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.events import CommandEvent, Event, PullRequestEvent, PushEvent, Repository, from_task

REPO = Repository(
    provider="gitlab",
    full_name="group/sub/project",
    id=7,
    default_branch="main",
    clone_url="https://gitlab.example/group/sub/project.git",
    web_url="https://gitlab.example/group/sub/project",
    api_url="https://gitlab.example/api/v4",
)

EVENTS: list[Event] = [
    PullRequestEvent(
        delivery_id="d-1",
        repository=REPO,
        number=3,
        head_sha="a" * 40,
        base_sha="b" * 40,
        base_ref="main",
        head_ref="topic",
        action="update",
        author="alice",
        draft=True,
        installation_id=None,
    ),
    CommandEvent(
        delivery_id="d-2",
        repository=REPO,
        number=3,
        command="sync",
        args=("web", "api"),
        author="bob",
        comment_id=99,
        installation_id=12,
    ),
    PushEvent(
        delivery_id="d-3",
        repository=REPO,
        ref="refs/heads/main",
        after_sha="c" * 64,
        before_sha="0" * 64,
        pusher="carol",
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_to_task_is_asdict_with_the_type(event: Event) -> None:
    assert event.to_task() == {**dataclasses.asdict(event), "type": type(event).__name__}


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip_through_json(event: Event) -> None:
    assert from_task(json.loads(json.dumps(event.to_task()))) == event


def test_to_task_shares_nothing_mutable_with_the_event() -> None:
    task = EVENTS[1].to_task()
    task["repository"]["full_name"] = "changed"
    assert EVENTS[1].repository.full_name == "group/sub/project"
