"""The periodic drift job (issue 16.2), in-process against a real Redis, the kube emulator and a
:class:`MemoryForge`: one issue per repository and instance, opened, edited only when the
finding changes, closed when drift is gone, reopened rather than duplicated; self-heal under the
app's deploy lock; and the faults: the forge down while posting, a target unreachable, a
manifest broken at the deployed commit, the issue closed or deleted by a human."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from syrupy.assertion import SnapshotAssertion

from bot.errors import ForgeUnavailable
from bot.events import DriftEvent
from bot.forges import Issue, Marker
from bot.jobs import drift as job
from bot.metrics import DRIFTED_KEY
from bot.state import RepoKey
from tests.deploy_support import EVENT_REPOSITORY, Bot
from tests.jobs_support import (
    REPO,
    Remote,
    configmap,
    memory_forge,
    targets_at,
    unreachable_kubeconfig,
)
from tests.kube_emulator.fixture import Kubectl

SECRET_VALUE = "hunter2-do-not-print"
CONFIG = """version: 1
apps:
  - {name: web, path: web, namespace: web, createNamespace: true}
  - {name: api, path: api, namespace: api, createNamespace: true, selfHeal: true}
"""


def secret(name: str, value: str) -> str:
    encoded = base64.b64encode(value.encode()).decode()
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ndata:\n  password: {encoded}\n"
    )


FILES: dict[str, str | bytes | None] = {
    ".gitops.yaml": CONFIG,
    "web/a.yaml": configmap("a", "1"),
    "web/s.yaml": secret("creds", "initial-value"),
    "api/b.yaml": configmap("b", "1"),
}
MARKER = Marker("drift")


@pytest.fixture
def bot(tmp_path: Path, redis_url: str, kubeconfig: str) -> Bot:
    remote = Remote(tmp_path / "remote.git", FILES)
    forge = memory_forge(remote)
    bot = Bot(remote, forge, redis_url, tmp_path, targets_at(kubeconfig))
    sha = remote.head("main")
    forge.default_branch_sha = sha
    bot.push(sha)
    return bot


def check(bot: Bot, *, job_id: str = "drift-1") -> job.DriftOutcome:
    event = DriftEvent(delivery_id="drift-1", repository=EVENT_REPOSITORY)
    return job.drift_repository(event, bot.context(job_id))


def the_issue(bot: Bot) -> tuple[bool, str, str]:
    (issue,) = [i for i in bot.forge.issues.values() if MARKER.in_body(i.body)]
    return issue.open, issue.title, issue.body


def edit_web(kubectl: Kubectl, value: str) -> None:
    kubectl.ok(
        "-n",
        "web",
        "patch",
        "configmap",
        "a",
        "--type=merge",
        "-p",
        f'{{"data":{{"value":"{value}"}}}}',
    )


def test_no_drift_opens_nothing(bot: Bot) -> None:
    outcome = check(bot)
    assert outcome.outcome == job.NO_DRIFT and outcome.issue == "none"
    assert bot.forge.issues == {}
    client = redis.Redis.from_url(bot.redis_url)
    assert b'"apps": 0' in (client.hget(DRIFTED_KEY, REPO) or b"")


def test_a_hand_edit_opens_one_issue_edited_while_it_lasts_and_closed_when_gone(
    bot: Bot, kubectl: Kubectl
) -> None:
    edit_web(kubectl, "by-hand")
    kubectl.ok(
        "-n", "web", "patch", "secret", "creds", "--type=merge",
        "-p", f'{{"stringData":{{"password":"{SECRET_VALUE}"}}}}',
    )  # fmt: skip
    outcome = check(bot)
    assert outcome.outcome == job.DRIFTED and outcome.drifted == ("web",)
    assert outcome.issue == "opened"
    is_open, title, body = the_issue(bot)
    assert is_open and title == "GitOps drift: 1 app differs from Git"
    assert body.startswith(MARKER.tag()) and "by-hand" in body and "ConfigMap" in body
    assert "creds" in body and SECRET_VALUE not in body
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in body
    client = redis.Redis.from_url(bot.redis_url)
    assert b'"apps": 1' in (client.hget(DRIFTED_KEY, REPO) or b"")
    # the same finding: nothing written
    bot.forge.calls.clear()
    assert check(bot).issue == "unchanged"
    assert "update_issue" not in bot.forge.calls and "open_issue" not in bot.forge.calls
    # another finding: the one issue is edited
    edit_web(kubectl, "by-hand-again")
    assert check(bot).issue == "edited"
    assert "by-hand-again" in the_issue(bot)[2] and len(bot.forge.issues) == 1
    # the next deploy puts Git back (the hand-edited objects deleted first: kubectl-patch owns
    # their fields now, which a deploy does not take over without forceConflicts)
    kubectl.ok("-n", "web", "delete", "configmap", "a")
    kubectl.ok("-n", "web", "delete", "secret", "creds")
    sha = bot.commit_main({"web/a.yaml": configmap("a", "2")})
    bot.forge.default_branch_sha = sha
    bot.push(sha)
    outcome = check(bot)
    assert outcome.outcome == job.NO_DRIFT and outcome.issue == "closed"
    is_open, title, body = the_issue(bot)
    assert not is_open and title == "GitOps drift: none" and "No drift" in body
    (number,) = bot.forge.issues
    assert bot.forge.issue_comments[number] == [job.DRIFT_GONE_COMMENT]
    assert check(bot).issue == "none"  # closed stays closed, nothing written


def test_drift_coming_back_reopens_the_issue_rather_than_a_new_one(
    bot: Bot, kubectl: Kubectl
) -> None:
    edit_web(kubectl, "x")
    check(bot)
    edit_web(kubectl, "1")
    assert check(bot).issue == "closed"
    edit_web(kubectl, "y")
    assert check(bot).issue == "reopened"
    assert len(bot.forge.issues) == 1 and the_issue(bot)[0]


def test_an_issue_closed_by_a_human_stays_closed_until_the_drift_changes(
    bot: Bot, kubectl: Kubectl
) -> None:
    edit_web(kubectl, "x")
    check(bot)
    (number,) = bot.forge.issues
    bot.forge.close_issue(number)  # a human: "we know, leave it"
    assert check(bot).issue == "left_closed"
    assert not the_issue(bot)[0]
    edit_web(kubectl, "z")  # new drift: worth saying
    assert check(bot).issue == "reopened"
    assert the_issue(bot)[0] and "z" in the_issue(bot)[2]


def test_an_issue_deleted_by_a_human_is_opened_anew(bot: Bot, kubectl: Kubectl) -> None:
    edit_web(kubectl, "x")
    check(bot)
    bot.forge.issues.clear()  # deleted (GitLab; GitHub's admins can too)
    assert check(bot).issue == "opened"
    assert the_issue(bot)[0]


def issue_calls(bot: Bot) -> list[str]:
    return [c for c in bot.forge.calls if c in ("find_issue", "get_issue")]


def test_the_issue_is_looked_for_once_then_fetched_alone_or_not_at_all(
    bot: Bot, kubectl: Kubectl
) -> None:
    check(bot)
    assert issue_calls(bot) == ["find_issue"]  # nothing known: one scan, "none" remembered
    bot.forge.calls.clear()
    check(bot)
    assert issue_calls(bot) == []
    edit_web(kubectl, "x")
    bot.forge.calls.clear()
    assert check(bot).issue == "opened"
    assert issue_calls(bot) == ["find_issue"]  # a scan before opening, never a duplicate
    (number,) = bot.forge.issues
    bot.forge.calls.clear()
    assert check(bot).issue == "unchanged"
    assert issue_calls(bot) == ["get_issue"]
    client = redis.Redis.from_url(bot.redis_url)
    assert client.get(RepoKey("github", REPO).issue_key("drift")) == str(number).encode()


def test_an_issue_no_longer_carrying_the_marker_is_not_the_bots_any_more(
    bot: Bot, kubectl: Kubectl
) -> None:
    edit_web(kubectl, "x")
    check(bot)
    (number,) = bot.forge.issues
    # a person rewrote the body: the bot's issue is now theirs to keep
    bot.forge.issues[number] = replace(bot.forge.issues[number], body="we track it here now")
    bot.forge.calls.clear()
    assert check(bot).issue == "opened"
    assert issue_calls(bot) == ["get_issue", "find_issue"]
    assert bot.forge.issues[number].body == "we track it here now"
    assert len(bot.forge.issues) == 2


def test_a_remembered_number_naming_someone_elses_issue_is_not_trusted(
    bot: Bot, kubectl: Kubectl
) -> None:
    """The number points at a person's issue that quotes the marker (Redis restored from another
    installation's data, say): it is not the bot's, so the issues are scanned and the bot's
    own opened; the person's issue is left as it is."""
    theirs = Issue(7, True, "copied", f"{MARKER.tag()}\nquoted", author="alice")
    bot.forge.issues[7] = theirs
    bot.forge.last_issue_number = 7
    client = redis.Redis.from_url(bot.redis_url)
    client.set(RepoKey("github", REPO).issue_key("drift"), "7")
    edit_web(kubectl, "x")
    bot.forge.calls.clear()
    assert check(bot).issue == "opened"
    assert issue_calls(bot) == ["get_issue", "find_issue"]
    assert bot.forge.issues[7] == theirs and len(bot.forge.issues) == 2


def test_a_remembered_none_never_makes_a_second_issue(bot: Bot, kubectl: Kubectl) -> None:
    """Redis lost its last writes (restarted from an older snapshot): it says "none" while the
    bot's issue is open. Nothing is asked until there is drift to report; then the scan before
    opening finds the issue."""
    edit_web(kubectl, "x")
    check(bot)
    (number,) = bot.forge.issues
    client = redis.Redis.from_url(bot.redis_url)
    client.set(RepoKey("github", REPO).issue_key("drift"), "0")
    edit_web(kubectl, "y")
    assert check(bot).issue == "edited"
    assert list(bot.forge.issues) == [number] and the_issue(bot)[0]
    assert client.get(RepoKey("github", REPO).issue_key("drift")) == str(number).encode()


def test_a_number_not_recorded_after_opening_means_a_scan(bot: Bot, kubectl: Kubectl) -> None:
    """The issue was opened but its number never recorded (the answer lost, the worker
    killed): "none" was forgotten before asking, so the next round scans and finds the issue,
    rather than trust the old "none" and leave the issue open when the drift is gone."""
    check(bot)  # "none" remembered
    edit_web(kubectl, "x")
    key = RepoKey("github", REPO).issue_key("drift")
    client = redis.Redis.from_url(bot.redis_url)
    real_open = bot.forge.open_issue

    def open_and_lose_the_answer(*, title: str, body: str) -> Issue:
        real_open(title=title, body=body)
        assert client.get(key) is None  # forgotten before asking
        raise ForgeUnavailable("connection reset after the issue was created")

    bot.forge.open_issue = open_and_lose_the_answer  # type: ignore[method-assign]
    assert check(bot).outcome == job.UNAVAILABLE
    bot.forge.open_issue = real_open  # type: ignore[method-assign]
    edit_web(kubectl, "1")
    bot.forge.calls.clear()
    assert check(bot).issue == "closed"
    assert issue_calls(bot) == ["find_issue"] and len(bot.forge.issues) == 1


def test_self_heal_reverts_a_hand_edit_and_says_so_on_the_issue(bot: Bot, kubectl: Kubectl) -> None:
    kubectl.ok(
        "-n", "api", "patch", "configmap", "b", "--type=merge", "-p", '{"data":{"value":"hand"}}'
    )
    outcome = check(bot)
    assert outcome.healed == ("api",) and outcome.outcome == job.NO_DRIFT
    assert kubectl.get("-n", "api", "configmap", "b")["data"]["value"] == "1"
    # no issue existed: one is opened to carry the record, and closed at once
    assert outcome.issue == "opened_closed"
    is_open, _title, _body = the_issue(bot)
    (number,) = bot.forge.issues
    (comment,) = bot.forge.issue_comments[number]
    assert (
        not is_open and "Self-heal re-applied `api`" in comment and "ConfigMap `api/b`" in comment
    )
    # the heal changed nothing the next deploy would see as new: the app is unchanged
    assert check(bot).outcome == job.NO_DRIFT


def test_self_heal_never_races_a_deploy(bot: Bot, kubectl: Kubectl) -> None:
    kubectl.ok(
        "-n", "api", "patch", "configmap", "b", "--type=merge", "-p", '{"data":{"value":"hand"}}'
    )
    ctx = bot.context("deploying")
    with ctx.state.deploy_lock(RepoKey("github", REPO), "default", "api", holder="deploying"):
        outcome = check(bot)
    assert outcome.healed == () and outcome.drifted == ("api",)
    assert kubectl.get("-n", "api", "configmap", "b")["data"]["value"] == "hand"
    body = the_issue(bot)[2]
    assert "### Not healed this round\n\n- `api` on `default`: a deploy holds its lock" in body
    # a deploy planned and not ended: the cluster is between two commits, neither drift nor
    # "no drift", and not healed
    sha = bot.commit_main({"api/b.yaml": configmap("b", "2")})
    bot.forge.default_branch_sha = sha
    bot.push(sha, drain=False)
    outcome = check(bot)
    assert outcome.healed == () and outcome.unchecked == ("api",) and outcome.issue == "edited"
    is_open, _title, body = the_issue(bot)
    assert is_open and f"not compared: a deploy of {sha[:7]} is in progress" in body
    bot.drain()  # it fails: kubectl-patch owns the field now (no forceConflicts on api)
    assert "conflict" in bot.outcomes[-1].detail
    outcome = check(bot)  # the deploy ended: the deployed commit is healed back
    assert outcome.healed == ("api",) and outcome.issue == "closed"
    assert kubectl.get("-n", "api", "configmap", "b")["data"]["value"] == "1"


def test_the_forge_down_while_posting_loses_nothing(bot: Bot, kubectl: Kubectl) -> None:
    edit_web(kubectl, "x")
    bot.forge.fail_next(times=1)
    outcome = check(bot)
    assert outcome.outcome == job.UNAVAILABLE and bot.forge.issues == {}
    outcome = check(bot)  # the next round posts it
    assert outcome.issue == "opened" and the_issue(bot)[0]


def test_an_unreachable_target_is_named_and_the_others_still_reported(
    bot: Bot, kubectl: Kubectl, tmp_path: Path, kubeconfig: str
) -> None:
    config = CONFIG.replace("{name: api, path: api,", "{name: api, path: api, target: far,")
    sha = bot.commit_main({".gitops.yaml": config})
    bot.forge.default_branch_sha = sha
    from bot.cluster.targets import Target, Targets

    bot.targets = Targets(
        {
            "default": Target("default", kubeconfig=Path(kubeconfig)),
            "far": Target("far", kubeconfig=unreachable_kubeconfig(tmp_path / "far")),
        }
    )
    edit_web(kubectl, "x")
    outcome = check(bot)
    assert outcome.drifted == ("web",) and outcome.unchecked == ("api",)
    body = the_issue(bot)[2]
    assert "### Not checked" in body and "`api` on `far`:" in body
    # drift gone on the reachable target, the other still unread: the issue stays open
    edit_web(kubectl, "1")
    outcome = check(bot)
    assert outcome.outcome == job.UNCHECKED and outcome.issue == "edited"
    is_open, title, body = the_issue(bot)
    assert is_open and title == "GitOps drift: 1 app could not be checked"
    assert "No drift" not in body


def test_unchecked_apps_alone_open_no_issue(bot: Bot, tmp_path: Path) -> None:
    bot.targets = targets_at(unreachable_kubeconfig(tmp_path / "down"))
    outcome = check(bot)
    assert outcome.outcome == job.UNCHECKED and outcome.unchecked == ("web", "api")
    assert bot.forge.issues == {}


def test_a_manifest_broken_at_the_deployed_commit_is_named(bot: Bot, kubectl: Kubectl) -> None:
    from bot.cluster.applyset import COMMIT_ANNOTATION, parent_name

    broken = bot.commit_main({"web/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n"})
    sha = bot.commit_main({"web/a.yaml": configmap("a", "1")})
    bot.forge.default_branch_sha = sha
    # web's parent says the broken commit was deployed (a deploy by hand, another tool)
    kubectl.ok(
        "-n", "web", "annotate", "--overwrite", "secret", parent_name("web"),
        f"{COMMIT_ANNOTATION}={broken}",
    )  # fmt: skip
    kubectl.ok(
        "-n", "api", "patch", "configmap", "b", "--type=merge", "-p", '{"data":{"value":"h"}}'
    )
    outcome = check(bot)
    assert outcome.unchecked == ("web",) and outcome.healed == ("api",)
    # api healed, web unreadable: no drift is claimed, and no issue is opened for it alone,
    # but the heal is on record
    (number,) = bot.forge.issues
    assert not bot.forge.issues[number].open


def test_two_instances_keep_an_issue_each(bot: Bot, kubectl: Kubectl) -> None:
    from tests.jobs_support import settings_for

    edit_web(kubectl, "x")
    check(bot)
    bot.settings = settings_for(bot.tmp_path, GITOPS_INSTANCE="prod", GITOPS_DEPLOY_LOCK_TTL="3")
    assert check(bot).issue == "opened"
    titles = sorted(i.title for i in bot.forge.issues.values())
    assert titles == [
        "GitOps drift (prod): 1 app differs from Git",
        "GitOps drift: 1 app differs from Git",
    ]
    prod = next(i for i in bot.forge.issues.values() if "(prod)" in i.title)
    assert prod.body.startswith("<!-- gitops-bot:drift@prod -->")
    client = redis.Redis.from_url(bot.redis_url)
    keys = RepoKey("github", REPO)
    assert client.get(keys.issue_key("drift", "prod")) == str(prod.number).encode()
    assert client.get(keys.issue_key("drift")) != str(prod.number).encode()
    edit_web(kubectl, "1")
    assert check(bot).issue == "closed"  # prod's; the other instance's is its own business
    assert [i.open for i in sorted(bot.forge.issues.values(), key=lambda i: i.number)] == [
        True,
        False,
    ]


def test_the_drift_jobs_lines_carry_the_round_the_repository_and_the_head(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.jobs.context import job_log

    ctx = bot.context("drift-job")
    event = DriftEvent(delivery_id="drift-1700000000", repository=EVENT_REPOSITORY)
    ctx.log = job_log(event, "drift-job")
    caplog.set_level("INFO", logger="gitops_bot.jobs")
    job.drift_repository(event, ctx)
    (line,) = [r for r in caplog.records if r.getMessage().count("drift: ")]
    assert line.delivery == "drift-1700000000" and line.job == "drift-job"  # type: ignore[attr-defined]
    assert line.repository == REPO and line.sha == bot.remote.head("main")  # type: ignore[attr-defined]


# -- the issue's text (pure) ---------------------------------------------------------------------


def test_the_issue_text_snapshot(snapshot: SnapshotAssertion) -> None:
    """Drift in one app (an object changed by hand, one deleted), one app not healed because a
    deploy holds it, one app whose target could not be read."""
    from bot.model import AppResult, Change, Mode, ObjectChange, ObjectError, ObjectRef, RunResult
    from tests.test_report import MarkdownSnapshot

    def ref(kind: str, name: str) -> ObjectRef:
        return ObjectRef("v1", kind, "web", name)

    changed = ObjectChange(
        ref("ConfigMap", "settings"),
        Change.UPDATE,
        "--- live/ConfigMap web/settings\n+++ desired/ConfigMap web/settings\n"
        "@@ -3 +3 @@\n-  mode: by-hand\n+  mode: fast\n",
    )
    deleted = ObjectChange(ref("Service", "web"), Change.CREATE, "")
    result = RunResult(
        mode=Mode.DRIFT,
        head="fedcba9876543210fedcba9876543210fedcba98",
        apps=[
            AppResult("web", "prod", changes=[changed, deleted], commit="0123456789ab" * 3),
            AppResult("api", "prod", changes=[changed], commit="0123456789ab" * 3),
            AppResult(
                "jobs",
                "far",
                errors=[ObjectError("cannot reach the API server of target far: timed out")],
            ),
        ],
    )
    text = job.drift_issue_text(
        result,
        branch="main",
        self_heal=True,
        skipped={"api": job.HEAL_LOCKED},
        limit=65_000,
        instance="prod",
    )
    assert text is not None and text.drifted
    assert text.title == "GitOps drift (prod): 2 apps differ from Git"
    assert text.body == snapshot.use_extension(MarkdownSnapshot)
    # what the forge's limit cannot hold is named, one line each, never cut mid-diff
    small = job.drift_issue_text(result, branch="main", self_heal=False, skipped={}, limit=1_000)
    assert small is not None and len(small.body) < 2_000
