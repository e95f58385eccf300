"""The pure parts of the deploy job: the run record's transitions (dependencies, pauses), the
check against the preview, the status and the comment's preface, the digest, and the result's
JSON round trip."""

from __future__ import annotations

from bot.forges.base import StatusState
from bot.jobs.deploy import app_digest
from bot.jobs.deploy_report import check_text, preface, status
from bot.jobs.deploy_run import (
    AppRun,
    AppState,
    RunRecord,
    app_result_from_json,
    app_result_to_json,
    new_run,
)
from bot.jobs.previewed import ObjectLine, PreviewRecord, changed_objects, compare
from bot.manifests.config import AppSpec
from bot.model import (
    AppResult,
    Change,
    Health,
    Manifest,
    ObjectChange,
    ObjectError,
    ObjectHealth,
    ObjectRef,
    Restart,
    Source,
)

SHA = "a" * 40


def run_of(*apps: AppRun) -> RunRecord:
    return new_run(provider="github", repository="acme/app", sha=SHA, event={}, seq=1, apps=apps)


def states(run: RunRecord) -> dict[str, str]:
    return {a.name: a.state.value for a in run.apps.values()}


def test_an_app_waits_for_its_dependencies_and_runs_when_they_deployed() -> None:
    run = run_of(
        AppRun("db", "t"),
        AppRun("api", "t", depends=["t/db"]),
        AppRun("web", "t", depends=["t/api", "t/db", "t/not-in-this-push"]),
    )
    assert states(run) == {"db": "queued", "api": "waiting", "web": "waiting"}
    assert run.apps["t/web"].depends == ["t/api", "t/db"]  # an app not deployed counts as done
    assert run.start("t/db", "job-1")
    assert run.finish("t/db", AppState.DEPLOYED) == ["t/api"]
    assert run.finish("t/api", AppState.DEPLOYED) == ["t/web"]
    assert not run.settled
    run.finish("t/web", AppState.DEPLOYED)
    assert run.settled and not run.parked


def test_a_failed_dependency_blocks_its_dependents_transitively() -> None:
    run = run_of(
        AppRun("db", "t"),
        AppRun("api", "t", depends=["t/db"]),
        AppRun("web", "t", depends=["t/api"]),
        AppRun("docs", "t"),
    )
    assert run.finish("t/db", AppState.FAILED, "Deployment db/db degraded") == []
    assert states(run) == {"db": "failed", "api": "blocked", "web": "blocked", "docs": "queued"}
    assert run.apps["t/api"].detail == "not deployed: it depends on db, which failed"
    assert run.apps["t/web"].detail == "not deployed: it depends on api, which was not deployed"
    assert not run.settled  # docs still queued
    assert not run.start("t/web", "job-9")  # a job for a blocked app does nothing


def test_a_paused_dependency_parks_its_dependents_until_resume() -> None:
    db = AppRun("db", "t", state=AppState.PAUSED, detail="freeze", paused_self=True)
    run = run_of(db, AppRun("web", "t", depends=["t/db"]))
    assert states(run) == {"db": "paused", "web": "paused"}
    assert run.apps["t/web"].detail == "waits for db, which is paused"
    assert run.settled and run.parked
    assert run.unpark(lambda app: "still frozen") == []
    assert run.generation == 1 and run.apps["t/db"].detail == "still frozen"
    assert run.unpark(lambda app: None) == ["t/db"]
    assert run.generation == 2
    assert states(run) == {"db": "queued", "web": "waiting"}
    assert run.finish("t/db", AppState.DEPLOYED) == ["t/web"]


def test_the_record_survives_json() -> None:
    run = run_of(AppRun("db", "t"), AppRun("web", "u", depends=["t/db"]))
    run.pr, run.unchanged, run.counted = 7, ["docs"], True
    again = RunRecord.from_json(run.to_json())
    assert again == run


def test_an_app_result_survives_json() -> None:
    ref = ObjectRef("apps/v1", "Deployment", "web", "app")
    app = AppResult(
        name="web",
        target="t",
        changes=[
            ObjectChange(ref, Change.UPDATE, diff="-a\n+b", source=Source("web/app.yaml", 0, 3)),
            ObjectChange(ObjectRef("v1", "ConfigMap", "web", "c"), Change.DELETE),
        ],
        errors=[ObjectError("boom", ref=ref, file="web/app.yaml", line=3, reason="Invalid")],
        health=[ObjectHealth(ref, Health.DEGRADED, "ImagePullBackOff", "no such image")],
        notes=["a note"],
        commit=SHA,
        pruned=True,
        restarts=[Restart(ref, ("image changed",))],
    )
    again = app_result_from_json(app_result_to_json(app))
    assert app_result_to_json(again) == app_result_to_json(app)


def record(objects: dict[ObjectLine, str], *, tree: str | None = "t1") -> PreviewRecord:
    return PreviewRecord(
        number=5,
        head_sha="h" * 40,
        base_sha="b" * 40,
        merge_sha="m" * 40,
        tree=tree,
        mode="live",
        apps=tuple(sorted({line.app for line in objects})),
        objects=objects,
    )


A = ObjectLine("web", "", "ConfigMap", "web", "a")
B = ObjectLine("web", "", "ConfigMap", "web", "b")
C = ObjectLine("api", "apps", "Deployment", "api", "c")


def test_the_check_against_the_preview() -> None:
    previewed = record({A: "updated", B: "created", C: "updated"})
    same = compare(previewed, {A: "updated", B: "created", C: "updated"}, tree="t1")
    assert same.as_previewed and same.same_tree is True
    differs = compare(previewed, {A: "updated", B: "updated", C: "updated"}, tree="t2")
    assert differs.otherwise == [(B, "created", "updated")] and differs.same_tree is False
    missing = compare(previewed, {A: "updated"}, tree=None, elsewhere=["api"])
    assert missing.missing == [(B, "created")]  # api was superseded: not counted missing
    assert missing.same_tree is None
    extra = compare(record({}), {A: "deleted"}, tree="t1")
    assert extra.unexpected == [(A, "deleted")] and not extra.as_previewed
    text = check_text(
        compare(previewed, {A: "updated", C: "created"}, tree="t2"), number=5, elsewhere=[]
    )
    assert text.splitlines() == [
        "**Differs from the preview.** The deploy did not change exactly what the last preview "
        "of #5 showed (it previewed <code>mmmmmmm</code>, whose tree is not this commit's: "
        "another merge landed, or the pull request changed after its last preview):",
        "",
        "- + ConfigMap web/b (`web`): shown by the preview, not changed by the deploy",
        "- Deployment.apps api/c (`api`): previewed ~, deployed +",
    ]


def test_changed_objects_leave_unchanged_ones_out() -> None:
    app = AppResult(
        "web",
        "t",
        changes=[
            ObjectChange(ObjectRef("v1", "ConfigMap", "web", "a"), Change.UPDATE),
            ObjectChange(ObjectRef("v1", "ConfigMap", "web", "b"), Change.UNCHANGED),
        ],
    )
    assert changed_objects([app]) == {A: "updated"}


def result(app: str, *changes: Change) -> AppResult:
    refs = [ObjectRef("v1", "ConfigMap", app, f"o{i}") for i in range(len(changes))]
    return AppResult(
        app, "t", changes=[ObjectChange(r, c) for r, c in zip(refs, changes, strict=True)]
    )


def test_statuses() -> None:
    run = run_of(AppRun("web", "t"), AppRun("api", "t"))
    run.finish("t/web", AppState.DEPLOYED)
    run.finish("t/api", AppState.SUPERSEDED, "superseded by bbbbbbb: a newer push deploys it")
    results = {"t/web": result("web", Change.CREATE, Change.UPDATE)}
    assert status(run, results, None) == (
        StatusState.SUCCESS,
        "1 app deployed and healthy: +1 ~1 -0 · 1 superseded",
    )
    run.finish("t/api", AppState.FAILED, "Deployment api/api degraded: ImagePullBackOff")
    assert status(run, results, None) == (
        StatusState.FAILURE,
        "api: Deployment api/api degraded: ImagePullBackOff",
    )
    run.finish("t/web", AppState.BLOCKED, "not deployed: it depends on api, which failed")
    assert status(run, results, None)[1].startswith("2 of 2 apps not deployed healthy · web: ")
    paused = run_of(AppRun("web", "t", state=AppState.PAUSED, detail="freeze", paused_self=True))
    assert status(paused, {}, None) == (
        StatusState.PENDING,
        "Paused: web (freeze) · deploys on gitops-bot resume",
    )
    older = run_of(AppRun("web", "t"))
    older.finish("t/web", AppState.SUPERSEDED, "superseded by ccccccc: a newer push deploys it")
    assert status(older, {}, None)[1] == (
        "Superseded by ccccccc before it deployed: the newer commit deploys these changes"
    )
    assert status(run_of(), {}, None) == (
        StatusState.SUCCESS,
        "Nothing to deploy: every app is as deployed",
    )
    broken = run_of()
    broken.errors = [ObjectError("bad key", file=".gitops.yaml", line=2).to_json()]
    assert status(broken, {}, None) == (
        StatusState.FAILURE,
        "Not deployed: .gitops.yaml:2: bad key",
    )


def test_the_preface_says_each_apps_fate() -> None:
    run = run_of(AppRun("web", "t"), AppRun("api", "t"))
    run.finish("t/web", AppState.DEPLOYED)
    run.finish("t/api", AppState.PAUSED, "freeze (paused by ops: every deploy)")
    run.unchanged = ["docs", "db"]
    run.pr = 5
    assert preface(run, None).splitlines() == [
        "**Apps:** `web` deployed · `api` **paused** (freeze (paused by ops: every deploy)) · "
        "2 other apps unchanged",
        "",
        "**Not checked against a preview:** no preview of #5 is kept (the bot keeps the last "
        "one for GITOPS_PREVIEW_RESULT_TTL).",
        "",
    ]


def test_the_digest_is_stable_and_follows_what_the_apply_does() -> None:
    spec = AppSpec(name="web", path="web", namespace="web")
    one = Manifest(
        "web", {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}}, Source("a")
    )
    two = Manifest(
        "web", {"metadata": {"name": "b"}, "apiVersion": "v1", "kind": "ConfigMap"}, Source("b")
    )
    digest = app_digest(spec, [one, two])
    assert digest.startswith("sha256:") and digest == app_digest(spec, [two, one])
    assert digest != app_digest(
        AppSpec(name="web", path="web", namespace="web", prune=False), [one, two]
    )
    assert digest != app_digest(spec, [one])
