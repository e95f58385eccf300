"""Kubernetes ``Status`` errors exactly as the apiserver shapes them (kind, status, message, reason, code, details)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .resources import ResourceType

MSG_NOT_FOUND_RESOURCE = "the server could not find the requested resource"
MSG_MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


class ApiError(Exception):
    """An error response; ``status()`` is the JSON body."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:  # a real server leaves it out for errors it has no reason for (500s)
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


@dataclass(frozen=True)
class FieldError:
    """One validation failure: reason (FieldValueRequired, ...), field path, and detail text."""

    type: str
    field: str
    detail: str

    def text(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


def required(field: str, extra: str = "") -> FieldError:
    return FieldError(
        "FieldValueRequired", field, "Required value" + (f": {extra}" if extra else "")
    )


def invalid(field: str, value: Any, why: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, f"Invalid value: {go_repr(value)}: {why}")


def forbidden(field: str, why: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, f"Forbidden: {why}")


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    opts = ", ".join(f'"{s}"' for s in supported)
    return FieldError(
        "FieldValueNotSupported",
        field,
        f"Unsupported value: {go_repr(value)}: supported values: {opts}",
    )


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, f"Duplicate value: {go_repr(value)}")


def go_repr(value: Any) -> str:
    """Roughly how Go's %#v / %q prints a value in apiserver messages."""
    import json

    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', _details(rt, name))


def namespace_not_found(name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"}
    )


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists', _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str = MSG_MODIFIED) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {why}',
        _details(rt, name),
    )


def invalid_object(group: str, kind: str, name: str, errs: list[FieldError]) -> ApiError:
    gk = f"{kind}.{group}" if group else kind
    summary = errs[0].text() if len(errs) == 1 else "[" + ", ".join(e.text() for e in errs) + "]"
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [{"reason": e.type, "message": e.detail, "field": e.field} for e in errs]
    return ApiError(422, "Invalid", f'{gk} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", MSG_NOT_FOUND_RESOURCE, {})


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def unsupported_media(types: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(types),
    )


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if rt.group:
        d["group"] = rt.group
    d["kind"] = rt.plural
    return d
