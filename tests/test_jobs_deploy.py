"""The deploy job on merge (issue 15), in-process: real Redis, the kube emulator, real git, a
:class:`MemoryForge`; each push's jobs run as one deploy worker runs them (tests/deploy_support)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from bot.jobs import deploy as job
from bot.metrics import DIFFERED_KEY
from bot.state import RepoKey, pause, resume
from tests.deploy_support import Bot, deployment
from tests.fake_forge import gitstore
from tests.jobs_support import (
    REPO,
    Remote,
    configmap,
    memory_forge,
    targets_at,
)

pytestmark = pytest.mark.realcluster

CONFIG = """version: 1
apps:
  - {name: web, path: web, namespace: web, createNamespace: true, stuckPodTimeout: 1}
  - {name: api, path: api, namespace: api, createNamespace: true}
"""
FILES: dict[str, str | bytes | None] = {
    ".gitops.yaml": CONFIG,
    "web/a.yaml": configmap("a", "1"),
    "web/b.yaml": configmap("b", "1"),
    "api/c.yaml": configmap("c", "1"),
}


@pytest.fixture
def bot(tmp_path: Path, redis_url: str, kubeconfig: str) -> Bot:
    remote = Remote(tmp_path / "remote.git", FILES)
    return Bot(remote, memory_forge(remote), redis_url, tmp_path, targets_at(kubeconfig))


def first_deploy(bot: Bot) -> str:
    sha = bot.remote.head("main")
    outcome = bot.push(sha)
    assert outcome.outcome == job.PLANNED, outcome
    assert bot.status(sha)[0] == "success"
    return sha


def live_value(kubectl: object, name: str, namespace: str = "web") -> str:
    return str(kubectl.get("configmap", name, "-n", namespace)["data"]["value"])  # type: ignore[attr-defined]


def test_a_merge_deploys_what_its_preview_showed_and_says_so_on_the_pr(
    bot: Bot, kubectl: object, redis_url: str
) -> None:
    first_deploy(bot)
    bot.open(1, "feature", {"web/a.yaml": configmap("a", "2"), "web/d.yaml": configmap("d", "1")})
    bot.open(2, "other", {"web/b.yaml": configmap("b", "3")})  # previewed the same app
    bot.open(3, "elsewhere", {"api/c.yaml": configmap("c", "3")})
    for number in (1, 2, 3):
        assert bot.preview(number).outcome == "posted"
    sha = bot.merge(1, squash=True)
    outcome = bot.push(sha)
    assert outcome.outcome == job.PLANNED and outcome.queued == ("default/web",)
    assert live_value(kubectl, "a") == "2" and live_value(kubectl, "d") == "1"
    state, description = bot.status(sha)
    assert state == "success"
    assert description == "1 app deployed and healthy: +1 ~1 -0 · as previewed"
    body = bot.report(1)
    assert "**As previewed.**" in body
    assert "the merge result it previewed has the tree of this commit" in body
    assert "`web` deployed" in body and "1 other app unchanged" in body
    assert [e.number for e in bot.previews] == [2]  # #3 previewed only api, which did not move
    # the PR's head and the base the forge names for it did not change: previewed all the same
    from bot.jobs.preview import preview_pull_request

    assert preview_pull_request(bot.previews[0], bot.context()).outcome == "posted"
    assert redis.Redis.from_url(redis_url).hgetall(DIFFERED_KEY) == {}  # none differed


def test_an_object_removed_by_a_later_merge_is_pruned(bot: Bot, kubectl: object) -> None:
    first_deploy(bot)
    bot.open(1, "remove", {"web/b.yaml": None})
    bot.preview(1)
    sha = bot.merge(1)
    bot.push(sha)
    assert kubectl("get", "configmap", "b", "-n", "web").returncode != 0  # type: ignore[operator]
    assert bot.status(sha)[0] == "success"
    body = bot.report(1)
    assert "**As previewed.**" in body
    assert "ConfigMap web/b" in body


def test_a_broken_image_fails_naming_the_deployment_and_says_what_is_live(bot: Bot) -> None:
    first_deploy(bot)
    bot.open(1, "image", {"web/app.yaml": deployment("app", "nginx:broken")})
    sha = bot.merge(1)
    outcome = bot.push(sha)
    assert outcome.outcome == job.PLANNED
    assert bot.outcomes[-1].outcome == job.FAILED
    state, description = bot.status(sha)
    assert state == "failure"
    assert description.startswith("web: Deployment web/app degraded: ")
    assert "ImagePullBackOff" in description or "ErrImagePull" in description
    body = bot.report(1)
    assert "`web` **failed**" in body
    assert f"live now on default: {sha[:7]} is applied, but not every object is healthy" in body
    assert "Not checked against a preview" in body


def test_the_next_merge_after_a_failed_one_deploys_the_fix(bot: Bot) -> None:
    first_deploy(bot)
    bot.open(1, "image", {"web/app.yaml": deployment("app", "nginx:broken")})
    bot.push(bot.merge(1))
    bot.open(2, "fix", {"web/app.yaml": deployment("app", "nginx:1.25")})
    fixed = bot.merge(2)
    bot.push(fixed)
    assert bot.status(fixed)[0] == "success"


def test_two_merges_back_to_back_end_at_the_newer_and_the_older_says_superseded(
    bot: Bot, kubectl: object
) -> None:
    first_deploy(bot)
    bot.open(1, "one", {"web/a.yaml": configmap("a", "one")})
    older = bot.merge(1)
    bot.open(2, "two", {"web/a.yaml": configmap("a", "two")})
    newer = bot.merge(2)
    # both pushes are planned before any app job runs (the queue: plan, plan, app, app)
    bot.push(older, drain=False)
    bot.push(newer, drain=False)
    bot.drain()
    assert live_value(kubectl, "a") == "two"
    state, description = bot.status(older)
    assert (state, description) == (
        "success",
        f"Superseded by {newer[:7]} before it deployed: the newer commit deploys these changes",
    )
    older_report = bot.report(1)
    assert f"`web` superseded (superseded by {newer[:7]}: a newer push deploys" in older_report
    assert "| App |" not in older_report  # nothing applied: no table of zeros
    assert bot.status(newer)[0] == "success"


def test_a_push_older_than_the_planned_one_is_superseded_at_once(bot: Bot) -> None:
    first_deploy(bot)
    older = bot.commit_main({"web/a.yaml": configmap("a", "one")})
    newer = bot.commit_main({"web/a.yaml": configmap("a", "two")})
    bot.push(newer)
    outcome = bot.push(older)  # delivered late
    assert outcome.queued == ()
    assert bot.status(older)[1].startswith(f"Superseded by {newer[:7]}")


def test_a_commit_older_than_the_deployed_one_is_never_applied(bot: Bot, kubectl: object) -> None:
    first = first_deploy(bot)
    newer = bot.commit_main({"web/a.yaml": configmap("a", "two")})
    bot.push(newer)
    # main is force-pushed back to the first commit: going back is refused, with the reason
    gitstore.git(bot.remote.path, "update-ref", "refs/heads/main", first)
    bot.push(first, before=newer)
    state, description = bot.status(first)
    assert state == "failure"
    assert description == (
        f"web: refusing to deploy {first[:12]}: it is older than {newer[:12]}, which is already "
        "deployed (revert in Git with a new commit instead)"
    )
    assert live_value(kubectl, "a") == "two"


def test_the_same_commit_delivered_again_later_changes_nothing(bot: Bot) -> None:
    """A deployed commit queued again by another delivery (not a force-push back to it: a
    catch-up, a forge retrying under a new id) is the same push: its record and status stay."""
    first = first_deploy(bot)
    before = bot.forge.statuses[first][-1]
    outcome = bot.push(first)
    assert outcome.outcome == job.DUPLICATE
    assert bot.forge.statuses[first][-1] == before


def test_nothing_changed_is_said_on_the_commit_only(bot: Bot) -> None:
    first_deploy(bot)
    sha = bot.commit_main({"README.md": "docs only\n"})
    outcome = bot.push(sha)
    assert outcome.outcome == job.NOTHING_TO_DEPLOY
    assert bot.status(sha) == ("success", "Nothing to deploy: every app is as deployed")


def test_a_push_from_no_pull_request_gets_the_status_only(bot: Bot, kubectl: object) -> None:
    first_deploy(bot)
    bot.open(1, "feature", {"web/b.yaml": configmap("b", "2")})
    assert bot.preview(1).outcome == "posted"
    (preview,) = bot.forge.comments_on(1)
    sha = bot.commit_main({"web/a.yaml": configmap("a", "direct")})
    # a forge may list an open PR holding the pushed commit (GitLab lists every MR holding it):
    # the push still came from no merged PR
    bot.forge.commit_pulls[sha] = [1]
    bot.push(sha)
    assert live_value(kubectl, "a") == "direct"
    assert bot.status(sha) == ("success", "1 app deployed and healthy: +0 ~1 -0")
    assert bot.forge.comments_on(1) == [preview]  # no deploy comment, nor an edit
    assert all(c is preview for comments in bot.forge.posted.values() for c in comments)


def test_an_object_the_api_server_refuses_is_reported_with_its_file_and_line(bot: Bot) -> None:
    first_deploy(bot)
    invalid = deployment("app").replace("replicas: 1", "replicas: -1")
    bot.open(1, "bad", {"web/app.yaml": "# the object starts on line 2\n" + invalid})
    sha = bot.merge(1)
    bot.push(sha)
    state, description = bot.status(sha)
    assert state == "failure"
    assert description.startswith('web: Deployment web/app: Deployment.apps "app" is invalid')
    body = bot.report(1)
    assert (
        "- <code>Deployment web/app</code> (<code>web/app.yaml:2</code>) **Invalid**: "
        "Deployment.apps &#34;app&#34; is invalid: spec.replicas: Invalid value: -1"
    ) in body


def test_a_broken_gitops_yaml_fails_with_its_line_and_applies_nothing(bot: Bot) -> None:
    first_deploy(bot)
    sha = bot.commit_main({".gitops.yaml": "version: 1\ndeployBranch: main\n" + CONFIG[11:]})
    outcome = bot.push(sha)
    assert outcome.outcome == job.CONFIG_ERROR
    state, description = bot.status(sha)
    assert state == "failure"
    assert description.startswith("Not deployed: .gitops.yaml:2: deployBranch is not supported")


def test_a_paused_app_is_reported_paused_then_deployed_in_order_on_resume(
    bot: Bot, kubectl: object, redis_url: str
) -> None:
    first_deploy(bot)
    client = redis.Redis.from_url(redis_url)
    pause(client, repository=REPO, app="web", reason="release freeze", by="ops")
    bot.open(1, "one", {"web/a.yaml": configmap("a", "one"), "api/c.yaml": configmap("c", "2")})
    sha = bot.merge(1)
    bot.push(sha)
    assert live_value(kubectl, "c", "api") == "2"  # api is not paused
    assert live_value(kubectl, "a") == "1"
    state, description = bot.status(sha)
    assert state == "pending"
    assert description == (
        "Paused: web (release freeze; paused by ops for app web of acme/app) · deploys on "
        "gitops-bot resume"
    )
    body = bot.report(1)
    assert "`web` **paused**" in body and "`api` deployed" in body
    assert "| ✅ web" not in body  # the table lists what was applied
    # a status goes from pending to pending only on GitHub: the first one says "paused" already
    assert bot.forge.statuses[sha][0].description == f"Deploying {sha[:7]}… (paused: web)"
    later = bot.commit_main({"web/b.yaml": configmap("b", "later")})
    bot.push(later)
    ((state, description),) = [(s.state.value, s.description) for s in bot.forge.statuses[later]]
    assert state == "pending" and description.startswith("Paused: web (release freeze;")
    assert resume(client, repository=REPO, app="web")
    bot.resume()
    assert live_value(kubectl, "a") == "one" and live_value(kubectl, "b") == "later"
    assert bot.status(sha)[0] == "success"
    assert bot.status(later)[0] == "success"
    assert "superseded by" in bot.report(1)  # the older push's web: the newer one deployed it
    assert client.zcard("gitops:deploy:parked") == 0


def test_an_app_waits_for_its_dependency_and_is_not_deployed_when_it_fails(
    tmp_path: Path, redis_url: str, kubeconfig: str
) -> None:
    config = """version: 1
apps:
  - {name: web, path: web, namespace: web, createNamespace: true, dependsOn: [db]}
  - {name: db, path: db, namespace: db, createNamespace: true, stuckPodTimeout: 1}
"""
    remote = Remote(
        tmp_path / "remote.git",
        {".gitops.yaml": config, "web/a.yaml": configmap("a", "1"), "db/d.yaml": deployment("db")},
    )
    bot = Bot(remote, memory_forge(remote), redis_url, tmp_path, targets_at(kubeconfig))
    first = bot.push(remote.head("main"))
    assert first.queued == ("default/db",)  # web waits
    assert [o.queued for o in bot.outcomes[1:]] == [("default/web",), ()]
    assert bot.status(remote.head("main"))[0] == "success"
    broken = bot.commit_main(
        {"db/d.yaml": deployment("db", "db:broken"), "web/a.yaml": configmap("a", "2")}
    )
    bot.push(broken)
    state, description = bot.status(broken)
    assert state == "failure"
    assert description.startswith("2 of 2 apps not deployed healthy · db: Deployment db/db")
    record = bot.context().state.run(RepoKey("github", REPO), broken)
    assert record is not None
    web = next(a for a in record["apps"] if a["name"] == "web")
    assert web["state"] == "blocked"
    assert web["detail"] == "not deployed: it depends on db, which failed"


def test_a_parent_without_a_digest_has_its_commit_rendered_instead(
    bot: Bot, kubectl: object
) -> None:
    first_deploy(bot)
    for app in ("web", "api"):  # as an older bot or `gitops-bot apply` of an older version left it
        kubectl.ok(  # type: ignore[attr-defined]
            "annotate", "secret", f"gitops-bot.{app}", "-n", app, "gitops-bot.io/digest-"
        )
    docs = bot.commit_main({"README.md": "docs only\n"})
    assert bot.push(docs).outcome == job.NOTHING_TO_DEPLOY
    changed = bot.commit_main({"api/c.yaml": configmap("c", "2")})
    assert bot.push(changed).queued == ("default/api",)
    assert live_value(kubectl, "c", "api") == "2"


def test_an_instance_reports_under_its_own_context_and_marker(
    tmp_path: Path, redis_url: str, kubeconfig: str
) -> None:
    from tests.jobs_support import settings_for

    remote = Remote(tmp_path / "remote.git", FILES)
    bot = Bot(
        remote,
        memory_forge(remote),
        redis_url,
        tmp_path,
        targets_at(kubeconfig),
        settings=settings_for(tmp_path, GITOPS_INSTANCE="prod"),
    )
    bot.open(1, "feature", {"web/a.yaml": configmap("a", "2")})
    sha = bot.merge(1)
    bot.push(sha)
    record = bot.forge.latest_status(sha, "gitops/prod/deploy")
    assert record is not None and record.state.value == "success"
    assert bot.forge.latest_status(sha, "gitops/deploy") is None
    (comment,) = bot.forge.comments_on(1)
    assert comment.body.startswith(
        "<!-- gitops-bot:deploy@prod part 1 -->\n### GitOps deploy (prod)"
    )


def test_a_target_refusing_the_repository_gets_nothing_sent(
    tmp_path: Path, redis_url: str, kubeconfig: str, kubectl: object
) -> None:
    remote = Remote(tmp_path / "remote.git", FILES)
    targets = targets_at(kubeconfig, repositories=("other/*",))
    bot = Bot(remote, memory_forge(remote), redis_url, tmp_path, targets)
    sha = remote.head("main")
    outcome = bot.push(sha)
    assert outcome.queued == ()
    state, description = bot.status(sha)
    assert state == "failure" and "acme/app" in description
    assert kubectl("get", "namespace", "web").returncode != 0  # type: ignore[operator]


def test_a_merge_that_differs_from_its_preview_lists_each_object_and_is_counted(
    bot: Bot, redis_url: str
) -> None:
    first_deploy(bot)
    bot.open(1, "feature", {"web/a.yaml": configmap("a", "2")})
    bot.preview(1)
    bot.commit_main({"web/b.yaml": configmap("b", "landed meanwhile")})  # not deployed alone
    sha = bot.merge(1)
    bot.push(sha)
    state, description = bot.status(sha)
    assert (state, description) == (
        "success",
        "1 app deployed and healthy: +0 ~2 -0 · differs from the preview",
    )
    body = bot.report(1)
    assert "**Differs from the preview.**" in body
    assert "whose tree is not this commit's: another merge landed" in body
    assert "- ~ ConfigMap web/b (`web`): changed by the deploy, not shown by the preview" in body
    assert redis.Redis.from_url(redis_url).hgetall(DIFFERED_KEY) == {b"acme/app": b"1"}
