"""Server-side printing: the ``Table`` answers kubectl asks for (``Accept: ...;as=Table``).

Columns follow the real server for the common kinds (a reduced set); anything else gets NAME and
AGE, and custom resources their CRD's additionalPrinterColumns (simple ``.a.b`` paths).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]


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


def _json_path(o: Obj, path: str) -> Any:
    cur: Any = o
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _getter(path: str) -> Callable[[Obj], Any]:
    return lambda o: _json_path(o, path)


def table(rt: ResourceType, items: list[Obj], rv: str, include_object: str) -> Obj:
    cols: list[Column] = [("Name", "string", lambda o: o["metadata"]["name"])]
    if rt.crd:
        for pc in rt.printer_columns:
            path = pc.get("jsonPath", "")
            cols.append((pc.get("name", ""), pc.get("type", "string"), _getter(path)))
    else:
        cols.extend(COLUMNS.get(rt.kind, []))
    if rt.kind != "CustomResourceDefinition":
        cols.append(("Age", "string", lambda o: human_age(o["metadata"].get("creationTimestamp"))))
    defs = [
        {
            "name": n,
            "type": t,
            "format": "name" if n == "Name" else "",
            "description": n,
            "priority": 0,
        }
        for n, t, _ in cols
    ]
    rows = []
    for o in items:
        cells = [fn(o) for _, _, fn in cols]
        row: Obj = {"cells": [c if c is not None else "" for c in cells]}
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
