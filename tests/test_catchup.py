"""The catch-up (issue 16.3): work lost webhooks left undone, found on the forge and queued
through the intake's own once-per-delivery script, against a real Redis and a
:class:`MemoryForge` (the deploy it queues is planned by the very job a push runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from bot import metrics
from bot.errors import ForgeUnavailable
from bot.events import Event, PullRequestEvent, PushEvent, Repository, from_task
from bot.forges.base import Forge
from bot.jobs import catchup
from bot.jobs.catchup import ServedRepository, catch_up, served
from bot.jobs.context import job_state
from bot.jobs.deploy import DUPLICATE, deploy_push
from bot.queue import JobQueue, redis_client
from bot.settings import Settings
from bot.state import PullKey, StateUnavailable
from tests.deploy_support import EVENT_REPOSITORY, Bot
from tests.fake_forge.memory import MemoryForge
from tests.jobs_support import REPO, Remote, memory_forge, targets_at

OTHER = Repository(**{**EVENT_REPOSITORY.__dict__, "full_name": "acme/other", "id": 2})


def missed(job: str) -> float:
    return metrics.REGISTRY.get_sample_value("gitops_catchup_missed_work_total", {"job": job}) or 0


class World:
    """Redis with the intake, forges by repository, and what was queued."""

    def __init__(self, redis_url: str, settings: Settings) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.settings = settings
        self.intake = JobQueue(self.client, delivery_ttl=settings.delivery_ttl)
        self.state = job_state(self.client, settings)
        self.forges: dict[str, MemoryForge] = {}

    def deliver(self, event: Event) -> bool:
        return not self.intake.enqueue(event, provider=event.repository.provider).duplicate

    def queued(self, queue: str) -> list[dict[str, Any]]:
        out = []
        for raw in self.client.lrange(queue, 0, -1):
            message = json.loads(raw)
            import base64

            body = json.loads(base64.b64decode(message["body"]))
            out.append(body[0][0])
        return out

    def run(self) -> catchup.CatchupOutcome:
        def connect(item: ServedRepository) -> Forge:
            return self.forges[item.repository.full_name]

        return catch_up(
            self.settings,
            self.state,
            served(self.settings, self.state),
            connect=connect,
            intake=self.deliver,
        )


def push_of(repository: Repository, sha: str, delivery: str = "push-1") -> PushEvent:
    return PushEvent(
        delivery_id=delivery,
        repository=repository,
        ref="refs/heads/main",
        after_sha=sha,
        before_sha="0" * 40,
        pusher="alice",
    )


def pull_of(repository: Repository, number: int, head: str, delivery: str) -> PullRequestEvent:
    return PullRequestEvent(
        delivery_id=delivery,
        repository=repository,
        number=number,
        head_sha=head,
        base_sha="b" * 40,
        base_ref="main",
        head_ref=f"topic-{number}",
        action="opened",
        author="alice",
    )


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> World:
    settings = Settings.from_env({"GITOPS_DATA_DIR": str(tmp_path / "data")})
    world = World(redis_url, settings)
    for repository in (EVENT_REPOSITORY, OTHER):
        forge = MemoryForge(repository.full_name)
        forge.default_branch_sha = "1" * 40
        world.forges[repository.full_name] = forge
        world.deliver(push_of(repository, "1" * 40, delivery=f"push-{repository.id}"))
    world.client.delete("deploys", "previews")
    return world


def test_repositories_seen_in_deliveries_are_served_within_gitops_repositories(
    world: World,
) -> None:
    assert [s.repository.full_name for s in served(world.settings, world.state)] == [
        "acme/app",
        "acme/other",
    ]
    only = Settings.from_env({"GITOPS_REPOSITORIES": "acme/oth*"})
    assert [s.repository for s in served(only, world.state)] == [OTHER]


def test_nothing_missed_queues_nothing(world: World) -> None:
    before = missed("deploy")
    outcome = world.run()
    assert outcome.outcome == catchup.NOTHING and outcome.checked == 2
    assert world.queued("deploys") == [] and missed("deploy") == before


def test_a_head_no_push_delivered_is_deployed_once(world: World) -> None:
    before = missed("deploy")
    world.forges[REPO].default_branch_sha = "2" * 40
    outcome = world.run()
    assert outcome.outcome == catchup.FOUND
    assert outcome.deploys == [f"the deploy of {REPO}@{'2' * 12}"]
    (job,) = world.queued("deploys")
    event = from_task(job)
    assert isinstance(event, PushEvent) and event.after_sha == "2" * 40
    assert event.repository.full_name == REPO and event.before_sha == ""
    assert missed("deploy") == before + 1
    # the next round: the head is known to have its job
    assert world.run().outcome == catchup.NOTHING and len(world.queued("deploys")) == 1
    # the push delivery arriving late queues its own job: the plan finds it planned (below)
    assert world.deliver(push_of(EVENT_REPOSITORY, "2" * 40, delivery="late"))


def test_a_late_push_delivery_and_the_catch_up_plan_one_deploy(
    tmp_path: Path, redis_url: str, kubeconfig: str
) -> None:
    remote = Remote(tmp_path / "remote.git")
    bot = Bot(remote, memory_forge(remote), redis_url, tmp_path, targets_at(kubeconfig))
    sha = remote.head("main")
    caught = PushEvent(
        delivery_id=f"catchup:{REPO}:{sha}",
        repository=EVENT_REPOSITORY,
        ref="refs/heads/main",
        after_sha=sha,
        before_sha="",
        pusher="",
    )
    first = deploy_push(caught, bot.context())
    assert first.outcome == "planned"
    late = deploy_push(bot.push_event(sha), bot.context())
    assert late.outcome == DUPLICATE
    bot.drain()
    # and once deployed, a late delivery is still the same push
    assert deploy_push(bot.push_event(sha), bot.context()).outcome == DUPLICATE


def test_an_open_pr_whose_delivery_was_lost_is_previewed_once(world: World) -> None:
    forge = world.forges[REPO]
    forge.add_pull_request(3, head_sha="3" * 40, base_sha="1" * 40, head_ref="seen")
    forge.add_pull_request(4, head_sha="4" * 40, base_sha="1" * 40, head_ref="lost")
    forge.add_pull_request(5, head_sha="5" * 40, base_sha="1" * 40, head_ref="draft", draft=True)
    world.deliver(pull_of(EVENT_REPOSITORY, 3, "3" * 40, "pr-3"))
    world.client.delete("previews")
    before = missed("preview")
    outcome = world.run()
    assert outcome.previews == [f"a preview of {REPO}#4@{'4' * 12}"]
    (job,) = world.queued("previews")
    event = from_task(job)
    assert isinstance(event, PullRequestEvent) and event.number == 4
    assert event.action == catchup.CAUGHT_UP and event.head_sha == "4" * 40
    assert missed("preview") == before + 1
    # recorded as the PR's latest head, as a delivery's is: the next round queues nothing
    assert world.state.latest_head(PullKey("github", REPO, 4)) == "4" * 40
    assert world.run().previews == [] and len(world.queued("previews")) == 1


def test_a_pr_previewed_long_ago_is_not_previewed_again(world: World) -> None:
    forge = world.forges[REPO]
    forge.add_pull_request(6, head_sha="6" * 40, base_sha="1" * 40, head_ref="old")
    pull = PullKey("github", REPO, 6)
    world.state.store_preview(pull, {"number": 6, "head_sha": "6" * 40})
    assert world.state.latest_head(pull) is None  # the delivery's record expired
    assert world.run().previews == []
    assert world.state.latest_head(pull) == "6" * 40  # kept alive while the PR is open


def test_a_forge_outage_on_one_repository_leaves_the_others_caught_up(world: World) -> None:
    world.forges[REPO].fail_next(ForgeUnavailable("GitHub is down"))
    world.forges["acme/other"].default_branch_sha = "7" * 40
    outcome = world.run()
    assert outcome.failed == {REPO: "GitHub is down"}
    assert outcome.deploys == [f"the deploy of acme/other@{'7' * 12}"]
    # the next round retries the one that failed
    world.forges[REPO].default_branch_sha = "8" * 40
    assert world.run().deploys == [f"the deploy of {REPO}@{'8' * 12}"]


def test_redis_down_fails_the_round_not_the_worker(world: World) -> None:
    repositories = served(world.settings, world.state)
    down = job_state(redis_client("redis://127.0.0.1:1", timeout=0.2), world.settings)
    world.forges[REPO].default_branch_sha = "9" * 40
    outcome = catch_up(
        world.settings,
        down,
        repositories,
        connect=lambda item: world.forges[item.repository.full_name],
        intake=world.deliver,
    )
    assert outcome.outcome == catchup.PARTIAL and set(outcome.failed) == {REPO, "acme/other"}
    with pytest.raises(StateUnavailable):
        served(world.settings, down)


def test_an_apps_installations_are_served_beside_the_deliveries(world: World) -> None:
    third = Repository(**{**EVENT_REPOSITORY.__dict__, "full_name": "acme/third", "id": 3})
    outside = Repository(
        **{**EVENT_REPOSITORY.__dict__, "full_name": "acme/x", "api_url": "https://evil.example"}
    )

    def installations() -> list[ServedRepository]:
        return [
            ServedRepository(third, 7),
            ServedRepository(OTHER, 7),
            ServedRepository(outside, 7),
        ]

    found = served(world.settings, world.state, installations=installations)
    assert [(s.repository.full_name, s.installation_id) for s in found] == [
        ("acme/app", None),
        ("acme/other", None),  # as its delivery named it
        ("acme/third", 7),
    ]  # never a repository on another host

    def down() -> list[ServedRepository]:
        raise ForgeUnavailable("GitHub is down")

    assert len(served(world.settings, world.state, installations=down)) == 2


def test_a_catch_up_line_in_json_names_the_repository_and_the_delivery(world: World) -> None:
    from tests.test_logs import capture, lines

    logger, stream = capture("json")
    world.forges[REPO].default_branch_sha = "a" * 40
    catch_up(
        world.settings,
        world.state,
        served(world.settings, world.state),
        connect=lambda item: world.forges[item.repository.full_name],
        intake=world.deliver,
        logger=logger,
    )
    (line,) = lines(stream)
    assert line["repository"] == REPO and line["delivery"] == f"catchup:{REPO}:{'a' * 40}"
    assert line["message"].startswith(f"catch-up queued the deploy of {REPO}@aaaaaaaaaaaa")


def test_a_repository_gone_from_the_forge_is_forgotten_until_a_delivery_names_it(
    world: World,
) -> None:
    from bot.errors import ForgeAccessDenied

    world.forges["acme/other"].fail_next(ForgeAccessDenied("acme/other: Not Found", status=404))
    outcome = world.run()
    assert set(outcome.failed) == {"acme/other"}
    assert [s.repository.full_name for s in served(world.settings, world.state)] == [REPO]
    world.deliver(push_of(OTHER, "1" * 40, delivery="again"))
    assert len(served(world.settings, world.state)) == 2
