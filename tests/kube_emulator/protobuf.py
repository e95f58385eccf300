"""Decoding of the few Kubernetes protobuf request bodies kubectl's generators send.

``kubectl create namespace|configmap|secret|serviceaccount`` post protobuf
(``application/vnd.kubernetes.protobuf``): the ``k8s\\0`` magic, then a runtime.Unknown whose
``raw`` holds the object. Only Namespace, ConfigMap, Secret and ServiceAccount are decoded (their
ObjectMeta name/generateName/namespace/labels/annotations and data fields), and the reviews
``kubectl auth whoami`` and ``kubectl auth can-i`` post; other kinds get 415.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not a protobuf this module can decode."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, v in _fields(buf):
        if number == 1 and isinstance(v, bytes):
            key = v.decode()
        elif number == 2 and isinstance(v, bytes):
            value = v
    return key, value


def _object_meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, v in _fields(buf):
        if number in names and isinstance(v, bytes) and v:
            meta[names[number]] = v.decode()
        elif number in (11, 12) and isinstance(v, bytes):
            k, val = _map_entry(v)
            meta.setdefault("labels" if number == 11 else "annotations", {})[k] = val.decode()
        elif number == 14 and isinstance(v, bytes):
            meta.setdefault("finalizers", []).append(v.decode())
    return meta


def _decode_kind(kind: str, raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {}}
    for number, v in _fields(raw):
        if number == 1 and isinstance(v, bytes):
            obj["metadata"] = _object_meta(v)
        elif kind == "ConfigMap" and number in (2, 3) and isinstance(v, bytes):
            k, val = _map_entry(v)
            if number == 2:
                obj.setdefault("data", {})[k] = val.decode()
            else:
                obj.setdefault("binaryData", {})[k] = base64.b64encode(val).decode()
        elif kind == "ConfigMap" and number == 4:
            obj["immutable"] = bool(v)
        elif kind == "Secret" and number in (2, 4) and isinstance(v, bytes):
            k, val = _map_entry(v)
            if number == 2:
                obj.setdefault("data", {})[k] = base64.b64encode(val).decode()
            else:
                obj.setdefault("stringData", {})[k] = val.decode()
        elif kind == "Secret" and number == 3 and isinstance(v, bytes):
            obj["type"] = v.decode()
        elif kind == "Secret" and number == 5:
            obj["immutable"] = bool(v)
        elif kind == "ServiceAccount" and number == 4:
            obj["automountServiceAccountToken"] = bool(v)
    return obj


_RESOURCE_ATTRIBUTES = {
    1: "namespace",
    2: "verb",
    3: "group",
    4: "version",
    5: "resource",
    6: "subresource",
    7: "name",
}
_NON_RESOURCE_ATTRIBUTES = {1: "path", 2: "verb"}


def _strings(buf: bytes, names: dict[int, str]) -> dict[str, str]:
    return {
        names[n]: v.decode() for n, v in _fields(buf) if n in names and isinstance(v, bytes) and v
    }


def _decode_access_review(raw: bytes) -> dict[str, Any]:
    """A SelfSubjectAccessReview: metadata = 1, spec = 2 (resourceAttributes = 1,
    nonResourceAttributes = 2)."""
    spec: dict[str, Any] = {}
    for number, v in _fields(raw):
        if number == 2 and isinstance(v, bytes):
            for n2, attrs in _fields(v):
                if n2 == 1 and isinstance(attrs, bytes):
                    spec["resourceAttributes"] = _strings(attrs, _RESOURCE_ATTRIBUTES)
                elif n2 == 2 and isinstance(attrs, bytes):
                    spec["nonResourceAttributes"] = _strings(attrs, _NON_RESOURCE_ATTRIBUTES)
    return {"metadata": {}, "spec": spec}


SUPPORTED = frozenset(
    {
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
    }
)


def decode(body: bytes) -> dict[str, Any]:
    """The object as JSON-like data; raises ProtobufError for anything not supported."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing k8s protobuf magic")
    api_version = kind = ""
    raw = b""
    for number, v in _fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(v, bytes):
            for n2, tv in _fields(v):
                if n2 == 1 and isinstance(tv, bytes):
                    api_version = tv.decode()
                elif n2 == 2 and isinstance(tv, bytes):
                    kind = tv.decode()
        elif number == 2 and isinstance(v, bytes):
            raw = v
    if (api_version, kind) not in SUPPORTED:
        raise ProtobufError(f"protobuf bodies of {api_version}/{kind} are not supported")
    if kind == "SelfSubjectAccessReview":
        obj = _decode_access_review(raw)
    elif kind == "SelfSubjectReview":
        obj = {"metadata": {}}
    else:
        obj = _decode_kind(kind, raw)
    return {"apiVersion": api_version, "kind": kind, **obj}
