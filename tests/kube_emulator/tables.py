"""Server-side printing: the ``Table`` answers kubectl asks for (``Accept: ...;as=Table``).

Columns follow the real server for the common kinds (a reduced set); anything else gets NAME and
AGE, and custom resources their CRD's additionalPrinterColumns (JSONPath fields, indexes and
``[?(@.type=="Ready")]`` filters), typed as the apiextensions table convertor types them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


def human_age(ts: str | None) -> str:
    """kubectl's short duration: 5s, 3m2s, 10m, 3h4m, 2d3h."""
    if not ts:
        return "<unknown>"
    try:
        then = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "<unknown>"
    secs = max(0, int((dt.datetime.now(dt.UTC) - then).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 48:
        return f"{hours}h{mins % 60}m" if hours < 8 and mins % 60 else f"{hours}h"
    return f"{hours // 24}d"


def _status(o: Obj) -> Obj:
    return o.get("status") or {}


def _spec(o: Obj) -> Obj:
    return o.get("spec") or {}


Column = tuple[str, str, Callable[[Obj], Any]]


def _pod_ready(o: Obj) -> str:
    statuses = _status(o).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    return f"{ready}/{len(_spec(o).get('containers') or [])}"


def _pod_phase(o: Obj) -> str:
    """The STATUS column as kubectl's pod printer words it: the first init container or the
    last container that waits or exited names it, else the phase."""
    status = _status(o)
    reason = status.get("reason") or status.get("phase") or ""
    inits = status.get("initContainerStatuses") or []
    initializing = False
    for i, c in enumerate(inits):
        state = c.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        initializing = True
        if terminated:
            reason = "Init:" + (terminated.get("reason") or "Error")
        elif waiting and waiting.get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(inits)}"
        break
    if not initializing:
        running = False
        for c in reversed(status.get("containerStatuses") or []):
            state = c.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif c.get("ready") and state.get("running") is not None:
                running = True
        if reason == "Completed" and running:
            reason = "Running"
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(o: Obj) -> str:
    statuses = (_status(o).get("initContainerStatuses") or []) + (
        _status(o).get("containerStatuses") or []
    )
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    finished = [
        ((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt") for c in statuses
    ]
    last = max((f for f in finished if f), default=None)
    return f"{restarts} ({human_age(last)} ago)" if restarts and last else str(restarts)


def _node_status(o: Obj) -> str:
    ready = next((c for c in _status(o).get("conditions") or [] if c.get("type") == "Ready"), {})
    return "Ready" if ready.get("status") == "True" else "NotReady"


COLUMNS: dict[str, list[Column]] = {
    "Deployment": [
        (
            "Ready",
            "string",
            lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}",
        ),
        ("Up-to-date", "integer", lambda o: _status(o).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o: _status(o).get("availableReplicas", 0)),
    ],
    "StatefulSet": [
        (
            "Ready",
            "string",
            lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}",
        )
    ],
    "Pod": [
        ("Ready", "string", _pod_ready),
        ("Status", "string", _pod_phase),
        ("Restarts", "string", _pod_restarts),
    ],
    "ReplicaSet": [
        ("Desired", "integer", lambda o: _spec(o).get("replicas", 0)),
        ("Current", "integer", lambda o: _status(o).get("replicas", 0)),
        ("Ready", "integer", lambda o: _status(o).get("readyReplicas", 0)),
    ],
    "DaemonSet": [
        ("Desired", "integer", lambda o: _status(o).get("desiredNumberScheduled", 0)),
        ("Current", "integer", lambda o: _status(o).get("currentNumberScheduled", 0)),
        ("Ready", "integer", lambda o: _status(o).get("numberReady", 0)),
        ("Up-to-date", "integer", lambda o: _status(o).get("updatedNumberScheduled", 0)),
        ("Available", "integer", lambda o: _status(o).get("numberAvailable", 0)),
    ],
    "Node": [
        ("Status", "string", _node_status),
        (
            "Roles",
            "string",
            lambda o: (
                ",".join(
                    sorted(
                        k.split("/", 1)[1]
                        for k in o["metadata"].get("labels") or {}
                        if k.startswith("node-role.kubernetes.io/")
                    )
                )
                or "<none>"
            ),
        ),
    ],
    "ControllerRevision": [
        (
            "Controller",
            "string",
            lambda o: next(
                (
                    f"{r.get('kind', '').lower()}.{r.get('apiVersion', '').split('/')[0]}/{r.get('name')}"
                    for r in o["metadata"].get("ownerReferences") or []
                    if r.get("controller")
                ),
                "<none>",
            ),
        ),
        ("Revision", "integer", lambda o: o.get("revision", 0)),
    ],
    "PersistentVolumeClaim": [
        ("Status", "string", lambda o: _status(o).get("phase", "")),
        ("Volume", "string", lambda o: _spec(o).get("volumeName", "")),
    ],
    "Namespace": [("Status", "string", lambda o: _status(o).get("phase", ""))],
    "ConfigMap": [
        ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))
    ],
    "Secret": [
        ("Type", "string", lambda o: o.get("type", "")),
        ("Data", "integer", lambda o: len(o.get("data") or {})),
    ],
    "Service": [
        ("Type", "string", lambda o: _spec(o).get("type", "")),
        ("Cluster-IP", "string", lambda o: _spec(o).get("clusterIP", "")),
        (
            "External-IP",
            "string",
            lambda o: ",".join(_spec(o).get("externalIPs") or []) or "<none>",
        ),
        (
            "Port(s)",
            "string",
            lambda o: (
                ",".join(
                    f"{p.get('port')}/{p.get('protocol', 'TCP')}"
                    for p in _spec(o).get("ports") or []
                )
                or "<none>"
            ),
        ),
    ],
    "Job": [
        (
            "Status",
            "string",
            lambda o: "Complete" if _status(o).get("completionTime") else "Running",
        ),
        (
            "Completions",
            "string",
            lambda o: f"{_status(o).get('succeeded', 0)}/{_spec(o).get('completions', 1)}",
        ),
    ],
    "CustomResourceDefinition": [
        ("Created At", "date", lambda o: o["metadata"].get("creationTimestamp", ""))
    ],
}


_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_-]+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[\?\(@\.(?P<key>[A-Za-z0-9_.-]+)\s*==\s*["'](?P<value>[^"']*)["']\)\]"""
    r"""|\[["'](?P<quoted>[^"']+)["']\]"""
)


def _json_path(o: Obj, path: str) -> Any:
    """The first result of a printer column's JSONPath: fields, ``[n]``, ``['a.b']`` and
    ``[?(@.type=="Ready")]`` filters (what CRDs in the wild use); None when nothing matches."""
    cur: Any = o
    pos, text = 0, path.strip()
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        if m.group("field") is not None or m.group("quoted") is not None:
            key = m.group("field") if m.group("field") is not None else m.group("quoted")
            cur = cur.get(key) if isinstance(cur, dict) else None
        elif m.group("index") is not None:
            i = int(m.group("index"))
            cur = cur[i] if isinstance(cur, list) and -len(cur) <= i < len(cur) else None
        else:
            keys = m.group("key").split(".")
            cur = (
                next((v for v in cur if _dig(v, keys) == m.group("value")), None)
                if isinstance(cur, list)
                else None
            )
        if cur is None:
            return None
    return cur


def _dig(value: Any, keys: list[str]) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _cell(column_type: str, value: Any) -> Any:
    """A custom resource's cell as the apiextensions table convertor makes it: typed, a date as
    an age, None (kubectl prints ``<none>``) when missing or of another type."""
    if value is None:
        return None
    if column_type == "string":
        if isinstance(value, str):
            return value
        return (
            json.dumps(value, separators=(",", ":"))
            if isinstance(value, dict | list)
            else (str(value).lower() if isinstance(value, bool) else str(value))
        )
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        age = human_age(value)
        return "<invalid>" if age == "<unknown>" else age
    return None


def _crd_columns(rt: ResourceType) -> list[tuple[Obj, Callable[[Obj], Any]]]:
    """Name, then the version's additionalPrinterColumns (or an Age column when it has none)."""
    columns = rt.printer_columns or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    out: list[tuple[Obj, Callable[[Obj], Any]]] = []
    for pc in columns:
        path, ctype = str(pc.get("jsonPath", "")), str(pc.get("type", "string"))
        definition = {
            "name": pc.get("name", ""),
            "type": ctype,
            "format": pc.get("format", ""),
            "description": pc.get("description", ""),
            "priority": pc.get("priority", 0),
        }
        out.append(
            (definition, lambda o, path=path, ctype=ctype: _cell(ctype, _json_path(o, path)))
        )
    return out


def table(rt: ResourceType, items: list[Obj], rv: str, include_object: str) -> Obj:
    name_def = {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name",
        "priority": 0,
    }
    columns: list[tuple[Obj, Callable[[Obj], Any]]] = [(name_def, lambda o: o["metadata"]["name"])]
    if rt.crd:
        columns.extend(_crd_columns(rt))
    else:
        builtin = list(COLUMNS.get(rt.kind, []))
        if rt.kind != "CustomResourceDefinition":
            builtin.append(
                ("Age", "string", lambda o: human_age(o["metadata"].get("creationTimestamp")))
            )
        for n, t, fn in builtin:
            definition = {"name": n, "type": t, "format": "", "description": n, "priority": 0}
            columns.append((definition, lambda o, fn=fn: _none_as_empty(fn(o))))
    defs = [definition for definition, _ in columns]
    rows = []
    for o in items:
        row: Obj = {"cells": [fn(o) for _, fn in columns]}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": defs,
        "rows": rows,
    }
