"""Holding the fake to GitHub's published contract.

Every API request the fake receives is matched against ``github_openapi.json`` (GitHub's own
OpenAPI description, trimmed by ``trim_openapi.py``): an unknown method or path, a path or query
parameter of the wrong type or outside its enum, or a JSON body the operation's schema refuses
is answered as GitHub answers it (404, 400 "Problems parsing JSON", 422 "Invalid request"), and
recorded in :attr:`Contract.violations` so a test fails when the bot sends what GitHub refuses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SPEC_PATH = Path(__file__).with_name("github_openapi.json")


@dataclass
class Operation:
    path: str
    method: str
    operation_id: str
    regex: re.Pattern[str]
    params: list[dict[str, Any]]
    body: dict[str, Any] | None
    literals: int


@dataclass
class Match:
    operation: Operation
    path_params: dict[str, Any]
    query: dict[str, Any]
    body: Any


class ContractError(Exception):
    """A request GitHub would refuse: ``status`` and GitHub's JSON ``answer``."""

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        super().__init__(f"{status} {message}{': ' + detail if detail else ''}")
        self.status = status
        self.answer = {
            "message": message + (f"\n\n{detail}" if detail else ""),
            "documentation_url": "https://docs.github.com/rest",
            "status": str(status),
        }


@dataclass
class Contract:
    spec: dict[str, Any] = field(default_factory=lambda: json.loads(SPEC_PATH.read_text()))
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.operations: list[Operation] = []
        for path, methods in self.spec["paths"].items():
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
            literals = sum(1 for seg in path.split("/") if seg and not seg.startswith("{"))
            for method, op in methods.items():
                self.operations.append(
                    Operation(
                        path=path,
                        method=method.upper(),
                        operation_id=op["operationId"],
                        regex=re.compile(pattern),
                        params=op["parameters"],
                        body=op.get("requestBody"),
                        literals=literals,
                    )
                )
        self.operations.sort(key=lambda o: -o.literals)

    @property
    def version(self) -> str:
        return str(self.spec["source"])

    def check(self, method: str, path: str, query: dict[str, str], raw_body: bytes) -> Match:
        """The operation and its decoded parameters, or :class:`ContractError`."""
        try:
            return self._check(method, path, query, raw_body)
        except ContractError as exc:
            self.violations.append(f"{method} {path}: {exc}")
            raise

    def _check(self, method: str, path: str, query: dict[str, str], raw_body: bytes) -> Match:
        candidates = [(op, op.regex.fullmatch(path)) for op in self.operations]
        found = [(op, m) for op, m in candidates if m is not None]
        if not found:
            raise ContractError(404, "Not Found", f"no operation of GitHub's API at {path}")
        same_method = [(op, m) for op, m in found if op.method == method]
        if not same_method:
            raise ContractError(404, "Not Found", f"{method} is not an operation on {path}")
        op, m = same_method[0]
        path_params: dict[str, Any] = {}
        decoded_query: dict[str, Any] = {}
        for param in op.params:
            name, where = param["name"], param["in"]
            raw = m.group(name) if where == "path" else query.get(name)
            if raw is None:
                if param["required"]:
                    raise ContractError(422, "Invalid request", f"missing {where} parameter {name}")
                continue
            value = _coerce(raw, param["schema"])
            errors = list(Draft202012Validator(param["schema"]).iter_errors(value))
            if errors:
                status = 404 if where == "path" else 422
                raise ContractError(status, "Invalid request", f"{name}: {errors[0].message}")
            (path_params if where == "path" else decoded_query)[name] = value
        body: Any = None
        if raw_body.strip():
            if op.body is None:
                # GitHub ignores bodies of operations that take none (GET, DELETE).
                body = None
            else:
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    raise ContractError(400, "Problems parsing JSON") from None
        if op.body is not None:
            if body is None and op.body["required"]:
                raise ContractError(422, "Invalid request", "the request needs a JSON body")
            if body is not None:
                errors = sorted(
                    Draft202012Validator(op.body["schema"]).iter_errors(body),
                    key=lambda e: list(e.path),
                )
                if errors:
                    where = "/".join(str(p) for p in errors[0].path) or "body"
                    raise ContractError(422, "Invalid request", f"{where}: {errors[0].message}")
        return Match(operation=op, path_params=path_params, query=decoded_query, body=body)


def _coerce(raw: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds:
        try:
            return int(raw)
        except ValueError:
            return raw
    if "boolean" in kinds:
        return {"true": True, "false": False}.get(raw, raw)
    return raw
