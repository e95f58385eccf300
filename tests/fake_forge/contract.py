"""Holding a fake to its forge's published contract.

Every API request the fake receives is matched against a trimmed description of the forge's
API (GitHub: ``github_openapi.json``, GitHub's own OpenAPI description trimmed by
``trim_openapi.py``; GitLab: ``gitlab_openapi.json`` from GitLab's OpenAPI v2 description,
trimmed by ``trim_gitlab_openapi.py``, plus the operations it does not cover, written from
their documentation pages in ``gitlab.py``). An unknown method or path, a path or query
parameter of the wrong type or outside its enum, or a body the operation's schema refuses is
answered as the forge answers it (a :class:`Dialect` says how) and recorded in
:attr:`Contract.violations`, so a test fails when the bot sends what the forge refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from jsonschema import Draft202012Validator

from tests.fake_forge.server import Answer

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
    #: Where the operation is described (a documentation page), for operations the published
    #: description does not cover.
    documented_at: str = ""


@dataclass
class Match:
    operation: Operation
    path_params: dict[str, Any]
    query: dict[str, Any]
    body: Any


class ContractError(Answer):
    """A request the forge would refuse, answered in the forge's words."""


class Dialect:
    """How GitHub answers requests its API description refuses (and how it reads them)."""

    #: Percent-decode path parameters (GitLab's ``acme%2Fapp`` project ids).
    decode_path_params = False
    #: Record query and body parameters the operation does not know (GitLab ignores them,
    #: which hides a misspelt parameter; the fake still answers as GitLab does).
    record_unknown_params = False

    def error(self, status: int, message: str, detail: str = "") -> ContractError:
        return ContractError(
            status,
            {
                "message": message + (f"\n\n{detail}" if detail else ""),
                "documentation_url": "https://docs.github.com/rest",
                "status": str(status),
            },
        )

    def no_route(self, method: str, path: str) -> ContractError:
        return self.error(404, "Not Found", f"no operation of GitHub's API at {path}")

    def wrong_method(self, method: str, path: str) -> ContractError:
        return self.error(404, "Not Found", f"{method} is not an operation on {path}")

    def missing(self, where: str, name: str) -> ContractError:
        return self.error(422, "Invalid request", f"missing {where} parameter {name}")

    def invalid(self, where: str, name: str, validator: str, message: str) -> ContractError:
        return self.error(404 if where == "path" else 422, "Invalid request", f"{name}: {message}")

    def bad_json(self) -> ContractError:
        return self.error(400, "Problems parsing JSON")

    def no_body(self) -> ContractError:
        return self.error(422, "Invalid request", "the request needs a JSON body")

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise self.bad_json() from None

    def ignores_body(self, method: str) -> bool:
        # GitHub ignores bodies of operations that take none (GET, DELETE).
        return True


@dataclass
class Contract:
    spec: dict[str, Any] = field(default_factory=lambda: json.loads(SPEC_PATH.read_text()))
    violations: list[str] = field(default_factory=list)
    dialect: Dialect = field(default_factory=Dialect)
    #: Operations beyond ``spec``, in the same shape, each with ``documentedAt``.
    documented: dict[str, Any] = field(default_factory=dict)
    #: A request without a body has no body parameters (GitLab), rather than no body (GitHub).
    empty_body_is_params: bool = False

    def __post_init__(self) -> None:
        self.operations: list[Operation] = []
        for source in (self.spec["paths"], self.documented):
            for path, methods in source.items():
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
                            documented_at=op.get("documentedAt", ""),
                        )
                    )
        self.operations.sort(key=lambda o: -o.literals)

    @property
    def version(self) -> str:
        return str(self.spec["source"])

    def check(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        raw_body: bytes,
        content_type: str = "application/json",
    ) -> Match:
        """The operation and its decoded parameters, or :class:`ContractError`."""
        try:
            return self._check(method, path, query, raw_body, content_type)
        except ContractError as exc:
            self.violations.append(f"{method} {path}: {exc}")
            raise

    def _check(
        self, method: str, path: str, query: dict[str, str], raw_body: bytes, content_type: str
    ) -> Match:
        dialect = self.dialect
        candidates = [(op, op.regex.fullmatch(path)) for op in self.operations]
        found = [(op, m) for op, m in candidates if m is not None]
        if not found:
            raise dialect.no_route(method, path)
        same_method = [(op, m) for op, m in found if op.method == method]
        if not same_method:
            raise dialect.wrong_method(method, path)
        op, m = same_method[0]
        path_params: dict[str, Any] = {}
        decoded_query: dict[str, Any] = {}
        for param in op.params:
            name, where = param["name"], param["in"]
            raw = m.group(name) if where == "path" else query.get(name)
            if raw is None:
                if param["required"]:
                    raise dialect.missing(where, name)
                continue
            if where == "path" and dialect.decode_path_params:
                raw = unquote(raw)
            value = _coerce(raw, param["schema"])
            errors = list(Draft202012Validator(param["schema"]).iter_errors(value))
            if errors:
                raise dialect.invalid(where, name, str(errors[0].validator), errors[0].message)
            (path_params if where == "path" else decoded_query)[name] = value
        if dialect.record_unknown_params:
            known = {p["name"] for p in op.params}
            self._record_unknown(method, path, "query", set(query) - known)
        body: Any = None
        if raw_body.strip() and not (op.body is None and dialect.ignores_body(method)):
            body = dialect.parse_body(raw_body, content_type)
        if op.body is not None:
            if body is None and self.empty_body_is_params:
                body = {}
            if body is None and op.body["required"]:
                raise dialect.no_body()
            if body is not None:
                self._check_body(method, path, op.body["schema"], body)
        return Match(operation=op, path_params=path_params, query=decoded_query, body=body)

    def _check_body(self, method: str, path: str, schema: dict[str, Any], body: Any) -> None:
        dialect = self.dialect
        if isinstance(body, dict) and schema.get("type") == "object":
            for name, sub in schema.get("properties", {}).items():
                if isinstance(body.get(name), str) and sub.get("type") != "string":
                    body[name] = _coerce(body[name], sub)  # a form body's values are text
            for name in schema.get("required", []):
                if name not in body:
                    raise dialect.missing("body", name)
            if dialect.record_unknown_params:
                self._record_unknown(
                    method, path, "body", set(body) - set(schema.get("properties", {}))
                )
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "body"
            raise dialect.invalid("body", where, str(errors[0].validator), errors[0].message)

    def _record_unknown(self, method: str, path: str, where: str, names: Iterable[str]) -> None:
        for name in sorted(names):
            self.violations.append(
                f"{method} {path}: unknown {where} parameter {name!r} (the forge ignores it)"
            )


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


def form_body(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (last value wins)."""
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
