"""Label and field selectors as the apiserver parses them from ?labelSelector= and ?fieldSelector=.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a`` (exists),
``!a`` (does not exist), comma-separated (AND). Field selectors: ``=``, ``==``, ``!=`` on
metadata.name, metadata.namespace and a few per-kind fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """The selector text does not parse; the server answers 400 BadRequest."""


_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise SelectorError(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
        if text[pos:].strip() == "":
            break
    return out


def parse_label_selector(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """Parse into requirements (key, op, values) with op in = != in notin exists !exists."""
    toks = _tokens(text)
    reqs: list[tuple[str, str, frozenset[str]]] = []
    i = 0

    def expect_value() -> str:
        nonlocal i
        if i >= len(toks) or toks[i] in {",", "(", ")", "=", "==", "!=", "!"}:
            return ""
        v = toks[i]
        i += 1
        return v

    while i < len(toks):
        tok = toks[i]
        if tok == "!":
            i += 1
            if i >= len(toks):
                raise SelectorError("found '', expected: identifier after '!'")
            reqs.append((toks[i], "!exists", frozenset()))
            i += 1
        else:
            key = tok
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append((key, "exists", frozenset()))
            elif toks[i] in {"=", "=="}:
                i += 1
                reqs.append((key, "=", frozenset({expect_value()})))
            elif toks[i] == "!=":
                i += 1
                reqs.append((key, "!=", frozenset({expect_value()})))
            elif toks[i] in {"in", "notin"}:
                op = toks[i]
                i += 1
                if i >= len(toks) or toks[i] != "(":
                    raise SelectorError(
                        f"found '{toks[i] if i < len(toks) else ''}', expected: '('"
                    )
                i += 1
                values: set[str] = set()
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        values.add(toks[i])
                    i += 1
                if i >= len(toks):
                    raise SelectorError("found '', expected: ')'")
                i += 1
                reqs.append((key, op, frozenset(values)))
            else:
                raise SelectorError(f"found '{toks[i]}', expected: '=', '!=', '==', 'in', notin'")
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    return reqs


def label_matcher(text: str | None) -> Matcher | None:
    if not text or not text.strip():
        return None
    reqs = parse_label_selector(text)

    def match(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        for key, op, values in reqs:
            present = key in labels
            if op == "=":
                if not present or labels[key] not in values:
                    return False
            elif op == "!=":
                if present and labels[key] in values:
                    return False
            elif op == "in":
                if not present or labels[key] not in values:
                    return False
            elif op == "notin":
                if present and labels[key] in values:
                    return False
            elif op == "exists":
                if not present:
                    return False
            elif op == "!exists" and present:
                return False
        return True

    return match


def match_label_selector_object(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Match a metav1.LabelSelector (matchLabels/matchExpressions) against labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# Fields a fieldSelector may name beyond metadata.name/namespace, per kind (the real server's lists).
EXTRA_FIELDS: dict[str, frozenset[str]] = {
    "Pod": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Event": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "reason",
            "type",
            "source",
        }
    ),
    "Job": frozenset({"status.successful"}),
    "ReplicaSet": frozenset({"status.replicas"}),
    "Node": frozenset({"spec.unschedulable"}),
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_matcher(text: str | None, kind: str) -> Matcher | None:
    if not text or not text.strip():
        return None
    reqs: list[tuple[str, bool, str]] = []
    allowed = {"metadata.name", "metadata.namespace"} | EXTRA_FIELDS.get(kind, frozenset())
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            field, value = part.split("!=", 1)
            negate = True
        elif "==" in part:
            field, value = part.split("==", 1)
            negate = False
        elif "=" in part:
            field, value = part.split("=", 1)
            negate = False
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        reqs.append((field, negate, value.strip()))

    def match(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, field) == value) != negate for field, negate, value in reqs)

    return match
