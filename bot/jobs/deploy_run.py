"""The record of one push's deploy: which apps it deploys, where each stands, what comes next.

Pure data and transitions, no I/O: :mod:`bot.state` keeps the record in Redis as JSON and
changes it in optimistic transactions (``WATCH``), the deploy jobs (:mod:`bot.jobs.deploy`) call
the transitions below inside them. One record per pushed commit; one :class:`AppRun` per
(target, app) the push deploys, keyed ``<target>/<app>``.

An app's life::

    waiting ──(every app it depends on deployed)──▶ queued ──▶ running ──▶ deployed | failed
       │                                              │            │
       │        (an app it depends on did not deploy) └─▶ superseded (a newer push deploys it)
       └──────────────────────────────────────────▶ blocked
    paused ──(gitops-bot resume)──▶ waiting / queued

``deployed`` means applied and healthy; anything else that is not ``deployed`` stops the apps
depending on it (``blocked``, naming it). A ``paused`` app is parked: the run is reported (with
the app ``paused``) and goes on when the pause is lifted. The run is *settled* when no app is
waiting, queued or running; the job that settles it posts the report.

The same module turns the deploy engine's :class:`~bot.model.AppResult` into JSON and back, so
each app job can leave its result for the job that reports the whole push.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.model import (
    AppResult,
    Change,
    Health,
    ObjectChange,
    ObjectError,
    ObjectHealth,
    ObjectRef,
    Origin,
    Restart,
    Source,
)


class AppState(enum.Enum):
    """Where one app of a push stands."""

    WAITING = "waiting"  # for apps it depends on, deployed by the same push
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # parked until `gitops-bot resume`
    DEPLOYED = "deployed"  # applied, pruned and healthy
    FAILED = "failed"
    BLOCKED = "blocked"  # not deployed: an app it depends on did not deploy
    SUPERSEDED = "superseded"  # not deployed: a newer push deploys this app

    @property
    def active(self) -> bool:
        return self in (AppState.WAITING, AppState.QUEUED, AppState.RUNNING)

    @property
    def final(self) -> bool:
        return not self.active and self is not AppState.PAUSED


BLOCKED_BY = "not deployed: it depends on {app}, which {state}"
PAUSED_BY = "waits for {app}, which is paused"
STATE_WORDS = {
    AppState.FAILED: "failed",
    AppState.BLOCKED: "was not deployed",
    AppState.SUPERSEDED: "a newer push deploys",
    AppState.PAUSED: "is paused",
}


def app_key(target: str, app: str) -> str:
    """``<target>/<app>``: one app on one target (app names are unique per repository, but an
    app that moved target is two deploys)."""
    return f"{target}/{app}"


@dataclass
class AppRun:
    """One app of a push."""

    name: str
    target: str
    #: keys of the apps of this push it waits for
    depends: list[str] = field(default_factory=list)
    state: AppState = AppState.QUEUED
    #: why, for the report and the status (``superseded by <sha>``, the first error, ...)
    detail: str = ""
    #: the job running it (a redelivered job keeps its id)
    job: str = ""
    #: ``paused`` by a pause (rather than waiting for a paused dependency)
    paused_self: bool = False

    @property
    def key(self) -> str:
        return app_key(self.target, self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "depends": list(self.depends),
            "state": self.state.value,
            "detail": self.detail,
            "job": self.job,
            "pausedSelf": self.paused_self,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppRun:
        return cls(
            name=str(data["name"]),
            target=str(data["target"]),
            depends=[str(d) for d in data.get("depends") or ()],
            state=AppState(data["state"]),
            detail=str(data.get("detail") or ""),
            job=str(data.get("job") or ""),
            paused_self=bool(data.get("pausedSelf")),
        )


@dataclass
class RunRecord:
    """One push's deploy. ``event`` is the push as the queue carried it (plain values), so
    that a resumed app's job can be queued again long after the webhook."""

    provider: str
    repository: str
    sha: str
    event: dict[str, Any]
    #: Redis's clock (microseconds) when the push was planned: the order of pushes
    seq: int
    apps: dict[str, AppRun] = field(default_factory=dict)
    #: the merged pull request the commit came from (its report goes there)
    pr: int | None = None
    #: apps of the commit whose objects are as deployed (nothing to do)
    unchanged: list[str] = field(default_factory=list)
    #: errors of the whole push (a broken .gitops.yaml), as ObjectError JSON
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: bumped when paused apps resume: each generation is reported once settled
    generation: int = 1
    reported: int = 0
    #: the deploy-vs-preview figure was counted (once, when nothing is paused any more)
    counted: bool = False
    #: app keys whose deploy already made open pull requests re-preview
    repreviewed: list[str] = field(default_factory=list)

    # -- reading ------------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """No app waiting, queued or running: the run can be reported."""
        return not any(a.state.active for a in self.apps.values())

    @property
    def parked(self) -> bool:
        return any(a.state is AppState.PAUSED for a in self.apps.values())

    def in_state(self, *states: AppState) -> list[AppRun]:
        return [a for a in self.apps.values() if a.state in states]

    # -- transitions --------------------------------------------------------------------------

    def start(self, key: str, job: str) -> bool:
        """The job ``job`` runs ``key`` now; False when the app is no longer to run (already
        ended: this job is a duplicate or was superseded)."""
        app = self.apps.get(key)
        if app is None or app.state not in (AppState.QUEUED, AppState.RUNNING):
            return False
        app.state, app.job = AppState.RUNNING, job
        return True

    def finish(self, key: str, state: AppState, detail: str = "") -> list[str]:
        """``key`` ended in ``state``; returns the keys that may run now."""
        app = self.apps[key]
        app.state, app.detail = state, detail
        app.paused_self = state is AppState.PAUSED
        return self.settle()

    def settle(self) -> list[str]:
        """Move waiting apps on: to ``queued`` when every app they depend on deployed, to
        ``blocked`` when one did not, to ``paused`` when one is paused and none is still
        active. Returns the keys that became ``queued``, in the record's (dependency) order."""
        ready: list[str] = []
        changed = True
        while changed:
            changed = False
            for app in self.apps.values():
                if app.state is not AppState.WAITING:
                    continue
                deps = [self.apps[d] for d in app.depends if d in self.apps]
                stopped = next(
                    (d for d in deps if d.state.final and d.state is not AppState.DEPLOYED), None
                )
                if stopped is not None:
                    app.state = AppState.BLOCKED
                    app.detail = BLOCKED_BY.format(
                        app=stopped.name, state=STATE_WORDS.get(stopped.state, stopped.state.value)
                    )
                    changed = True
                elif all(d.state is AppState.DEPLOYED for d in deps):
                    app.state, app.detail = AppState.QUEUED, ""
                    ready.append(app.key)
                    changed = True
                elif not any(d.state.active for d in deps):
                    paused = next(d for d in deps if d.state is AppState.PAUSED)
                    app.state, app.detail = AppState.PAUSED, PAUSED_BY.format(app=paused.name)
                    app.paused_self = False
                    changed = True
        return ready

    def unpark(self, still_paused: Callable[[AppRun], str | None]) -> list[str]:
        """Resume the paused apps whose pause was lifted (``still_paused(app)`` returns the
        reason of a pause that still holds, else None), and the apps waiting for them; returns
        the keys that may run now. A new generation is reported when they settle."""
        parked = {key for key, app in self.apps.items() if app.state is AppState.PAUSED}
        for key in parked:
            app = self.apps[key]
            if app.paused_self:
                reason = still_paused(app)
                if reason is not None:
                    app.detail = reason
                    continue
            app.state, app.detail, app.paused_self = AppState.WAITING, "", False
        ready = self.settle()
        if any(self.apps[key].state is not AppState.PAUSED for key in parked):
            self.generation += 1
        return ready

    # -- JSON ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "repository": self.repository,
            "sha": self.sha,
            "event": self.event,
            "seq": self.seq,
            "apps": [a.to_json() for a in self.apps.values()],
            "pr": self.pr,
            "unchanged": list(self.unchanged),
            "errors": list(self.errors),
            "generation": self.generation,
            "reported": self.reported,
            "counted": self.counted,
            "repreviewed": list(self.repreviewed),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        apps = [AppRun.from_json(a) for a in data.get("apps") or ()]
        return cls(
            provider=str(data["provider"]),
            repository=str(data["repository"]),
            sha=str(data["sha"]),
            event=dict(data.get("event") or {}),
            seq=int(data.get("seq") or 0),
            apps={a.key: a for a in apps},
            pr=int(data["pr"]) if data.get("pr") is not None else None,
            unchanged=[str(n) for n in data.get("unchanged") or ()],
            errors=list(data.get("errors") or ()),
            generation=int(data.get("generation") or 1),
            reported=int(data.get("reported") or 0),
            counted=bool(data.get("counted")),
            repreviewed=[str(k) for k in data.get("repreviewed") or ()],
        )


def new_run(
    *,
    provider: str,
    repository: str,
    sha: str,
    event: dict[str, Any],
    seq: int,
    apps: Iterable[AppRun],
    pr: int | None = None,
    unchanged: Iterable[str] = (),
) -> RunRecord:
    """A planned run: ``apps`` in dependency order (every app after those it depends on), each
    ``queued``, ``waiting`` (it depends on apps of this run), or already final (failed at
    planning, superseded) or ``paused``; then settled once."""
    run = RunRecord(
        provider=provider,
        repository=repository,
        sha=sha,
        event=event,
        seq=seq,
        apps={a.key: a for a in apps},
        pr=pr,
        unchanged=list(unchanged),
    )
    for app in run.apps.values():
        app.depends = [d for d in app.depends if d in run.apps]
        if app.state is AppState.QUEUED and app.depends:
            app.state = AppState.WAITING
    run.settle()
    return run


# -- AppResult <-> JSON (the deploy engine's result, left by each app job) -------------------------


def _ref(data: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(
        api_version=str(data.get("apiVersion") or ""),
        kind=str(data.get("kind") or ""),
        namespace=data.get("namespace") or None,
        name=str(data.get("name") or ""),
    )


def _source(data: Mapping[str, Any] | None) -> Source | None:
    if not data:
        return None
    return Source(
        file=str(data["file"]), document=int(data.get("document") or 0), line=data.get("line")
    )


def _change(data: Mapping[str, Any]) -> ObjectChange:
    return ObjectChange(
        ref=_ref(data),
        change=Change(data["change"]),
        diff=str(data.get("diff") or ""),
        source=_source(data.get("source")),
        origin=Origin(data["origin"]) if data.get("origin") else None,
        pr_diff=str(data.get("prDiff") or ""),
        drift_diff=str(data.get("driftDiff") or ""),
    )


def _error(data: Mapping[str, Any]) -> ObjectError:
    return ObjectError(
        message=str(data.get("message") or ""),
        ref=_ref(data["object"]) if data.get("object") else None,
        file=data.get("file"),
        line=data.get("line"),
        reason=data.get("reason"),
        transient=bool(data.get("transient")),
    )


def error_from_json(data: Mapping[str, Any]) -> ObjectError:
    return _error(data)


def app_result_to_json(app: AppResult) -> dict[str, Any]:
    """:meth:`AppResult.to_json` plus what it leaves out (whether prune ran)."""
    data = app.to_json()
    data["pruned"] = app.pruned
    return data


def app_result_from_json(data: Mapping[str, Any]) -> AppResult:
    """The inverse of :func:`app_result_to_json`."""
    changes = [
        _change(c)
        for group in ("created", "updated", "deleted", "unchanged")
        for c in data.get(group) or ()
    ]
    return AppResult(
        name=str(data["name"]),
        target=str(data["target"]),
        changes=changes,
        errors=[_error(e) for e in data.get("errors") or ()],
        health=[
            ObjectHealth(
                ref=_ref(h),
                health=Health(h["health"]),
                reason=str(h.get("reason") or ""),
                message=str(h.get("message") or ""),
            )
            for h in data.get("health") or ()
        ],
        notes=[str(n) for n in data.get("notes") or ()],
        commit=data.get("commit"),
        pruned=bool(data.get("pruned")),
        restarts=[
            Restart(
                ref=_ref(r),
                reasons=tuple(str(x) for x in r.get("reasons") or ()),
                restart=bool(r.get("restart", True)),
            )
            for r in data.get("restarts") or ()
        ],
    )
