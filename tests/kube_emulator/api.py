"""Request handling of the emulator: routing, auth, CRUD, patch/apply, watch, discovery.

Transport-free: ``Emulator.handle`` takes method, path, query, headers and body and returns a
``Response`` (a JSON body, or a stream of watch events). ``server.py`` puts it behind HTTP.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import yaml

try:  # a test-only speed-up: JSON encoding and decoding are a good part of each request's CPU
    import orjson
except ImportError:  # pragma: no cover - the standard library gives the same bytes, slower
    orjson = None  # type: ignore[assignment]

from . import crd as crdmod
from . import defaults, fields, merge, openapi, protobuf, tables, validation
from .auth import USERS, User, certificate_user, forbidden_message, make_tokens
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid_object,
    method_not_allowed,
    namespace_not_found,
    not_found,
    resource_not_found,
    unsupported_media,
)
from .resources import BUILTIN, Registry, ResourceType
from .selectors import SelectorError, field_matcher, label_matcher
from .store import Obj, Store

# isinstance with a tuple: ``dict | list`` builds a union object on every call (hot loops).
_CONTAINERS = (dict, list)

JSON = "application/json"
VERSION_INFO = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
AGGREGATED = "g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_CTYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# The cluster's one node (what kind makes): the controller runs every Pod on it.
NODE_NAME = "kube-emulator"
NODE_IP = "172.18.0.2"
NODE: Obj = {
    "metadata": {
        "name": NODE_NAME,
        "labels": {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "node-role.kubernetes.io/control-plane": "",
        },
    },
    "spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]},
}


def node_status(now: str) -> Obj:
    """A Ready node with room for 110 pods."""
    resources = {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "16Gi", "pods": "110"}
    return {
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": NODE_NAME},
        ],
        "allocatable": dict(resources),
        "capacity": dict(resources),
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": "00000000-0000-0000-0000-000000000000",
            "containerRuntimeVersion": "containerd://2.1.0",
            "kernelVersion": "6.8.0",
            "kubeProxyVersion": "",
            "kubeletVersion": "v1.37.0",
            "machineID": "00000000000000000000000000000000",
            "operatingSystem": "linux",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "systemUUID": "00000000-0000-0000-0000-000000000000",
        },
    }


PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
]
SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
FOREGROUND = "foregroundDeletion"
DEFAULT_WATCH_TIMEOUT = 1800.0
MANAGED_FIELDS_IN_APPLY = "metadata.managedFields must be nil"
# Kinds that are questions, not objects: answered at once, never stored.
REVIEWS = frozenset(
    {
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
    }
)


# The variant (RFC 4122) and version (4) bits of a UUID, as uuid.UUID(version=4) sets them.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)

_NOW: tuple[int, str] = (0, "")


def now_iso() -> str:
    """The current time as Kubernetes writes it (whole seconds); formatted once per second."""
    global _NOW
    second = int(time.time())
    cached = _NOW
    if cached[0] == second:
        return cached[1]
    text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _NOW = (second, text)
    return text


def clone(value: Any) -> Any:
    """Fast deep copy of JSON-like data (dict/list/scalars)."""
    if isinstance(value, dict):
        return {k: clone(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def dumps(obj: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(obj)
        except TypeError:  # e.g. an integer beyond 64 bits: the standard library copes
            pass
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # what orjson refuses (NaN, huge integers) the standard library decides on
    return json.loads(data)


def parse_query(qs: str) -> dict[str, str]:
    """The query parameters, the last value of each winning (as ``parse_qs`` would give them)."""
    if "%" in qs or "+" in qs:
        return {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}
    out: dict[str, str] = {}
    for part in qs.split("&"):
        if part:
            key, _, value = part.partition("=")
            out[key] = value
    return out


@dataclass
class Response:
    """What the HTTP layer sends: a status code and a body, or a stream of chunks (watch)."""

    code: int
    body: bytes = b""
    content_type: str = JSON
    stream: Iterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_response(code: int, obj: Any) -> Response:
    return Response(code, dumps(obj))


@dataclass
class Target:
    """A parsed resource path."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None


class Emulator:
    """The cluster: registry of types, object store, tokens, controller settings."""

    def __init__(self, *, controller_delay: float = 0.2) -> None:
        self.controller_delay = controller_delay
        self.registry = Registry()
        self.store = Store()
        self.tokens = make_tokens()
        self._users = {tok: USERS[name] for name, tok in self.tokens.items()}
        self.stopping = threading.Event()
        self.server_address = "127.0.0.1:0"
        self._rng = random.Random(42)
        self._ip_next = 10
        self._node_port_next = 30000
        self._openapi_cache: dict[str, bytes] = {}
        self.reset()

    # ----------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        with self.store.lock:
            self.store.reset()
            self.registry.reset()
            self._openapi_cache.clear()
            self._rng = random.Random(42)
            self._ip_next = 10
            self._node_port_next = 30000
            for ns in INITIAL_NAMESPACES:
                self._create_internal(self._builtin("", "namespaces"), {"metadata": {"name": ns}})
            svc = {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": "10.96.0.1",
                    "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                },
            }
            self._create_internal(self._builtin("", "services"), svc)
            node_rt = self._builtin("", "nodes")
            node = self._create_internal(node_rt, NODE, manager="kubelet")
            self.write_status(node_rt, node, node_status(now_iso()), manager="kubelet")

    def _builtin(self, group: str, plural: str) -> ResourceType:
        for rt in BUILTIN:
            if rt.group == group and rt.plural == plural:
                return rt
        raise KeyError(plural)

    def _create_internal(
        self, rt: ResourceType, body: Obj, *, manager: str = "kube-apiserver"
    ) -> Obj:
        """Objects the cluster makes itself, owned by the component that makes them on a real one."""
        obj = clone(body)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        prepared = self._prepare(rt, obj, None, namespace=obj["metadata"].get("namespace"))
        prepared = merge.track_update(None, prepared, manager=manager, now=now_iso())
        return self._store_write(rt, prepared, None)

    # ---------------------------------------------------------------- helpers
    def new_uid(self) -> str:
        """A random version-4 UUID (what ``uuid.UUID(int=..., version=4)`` gives, built without
        the class: one is made per created object)."""
        bits = self._rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def allocate_cluster_ip(self) -> str:
        n = self._ip_next
        self._ip_next += 1
        return f"10.96.{n // 256}.{n % 256}"

    def allocate_node_port(self) -> int:
        p = self._node_port_next
        self._node_port_next += 1
        return p

    def random_suffix(self, n: int = 5) -> str:
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        return "".join(self._rng.choice(alphabet) for _ in range(n))

    def authenticate(
        self, headers: dict[str, str], client: tuple[str, tuple[str, ...]] | None = None
    ) -> User | None:
        """The request's user: its verified client certificate first (as kube-apiserver's
        authenticators are ordered), else its bearer token; None for 401."""
        if client is not None:
            return certificate_user(*client)
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        return self._users.get(auth[7:].strip())

    # ---------------------------------------------------------------- entry
    def handle(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        client: tuple[str, tuple[str, ...]] | None = None,
    ) -> Response:
        """Answer one request; ``client`` is the (user, groups) of a verified client certificate."""
        path, _, qs = raw_path.partition("?")
        query = parse_query(qs)
        parts = [p for p in path.split("/") if p]
        try:
            if parts and parts[0] in ("healthz", "livez", "readyz"):
                return Response(200, b"ok", "text/plain; charset=utf-8")
            if parts == ["version"]:
                return json_response(200, VERSION_INFO)
            user = self.authenticate(headers, client)
            if user is None:
                return json_response(401, ApiError(401, "Unauthorized", "Unauthorized").status())
            if not parts:
                return json_response(200, {"paths": self._root_paths()})
            if parts[0] == "openapi":
                if (
                    parts[1:] == ["v2"]
                    and "protobuf" in headers.get("accept", "")
                    and "json" not in headers.get("accept", "")
                ):
                    # An empty gnostic Document: kubectl's client-side schema check then finds no
                    # schema and leaves the object to the server, as for a kind it does not know.
                    return Response(
                        200, b"", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
                    )
                return self._openapi(parts[1:])
            if (
                len(parts) == 1
                and parts[0] in ("api", "apis")
                and AGGREGATED in headers.get("accept", "")
            ):
                return Response(
                    200, dumps(self._aggregated(core=parts[0] == "api")), AGGREGATED_CTYPE
                )
            if parts[0] == "api":
                if len(parts) == 1:
                    return json_response(
                        200,
                        {
                            "kind": "APIVersions",
                            "versions": ["v1"],
                            "serverAddressByClientCIDRs": [
                                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                            ],
                        },
                    )
                if len(parts) == 2:
                    return self._resource_list("", parts[1])
                return self._resource(method, "", parts[1], parts[2:], query, headers, body, user)
            if parts[0] == "apis":
                if len(parts) == 1:
                    return json_response(200, self._group_list())
                if len(parts) == 2:
                    group = self._group(parts[1])
                    if group is None:
                        raise resource_not_found()
                    return json_response(200, group)
                if len(parts) == 3:
                    return self._resource_list(parts[1], parts[2])
                return self._resource(
                    method, parts[1], parts[2], parts[3:], query, headers, body, user
                )
            raise resource_not_found()
        except ApiError as err:
            return json_response(err.code, err.status())
        except (
            Exception
        ) as exc:  # a bug here must still answer like a server, not drop the connection
            import traceback

            traceback.print_exc()
            return json_response(
                500,
                ApiError(500, "InternalError", f"Internal error occurred: {exc!r}", {}).status(),
            )

    # ---------------------------------------------------------------- discovery
    def _root_paths(self) -> list[str]:
        paths = [
            "/api",
            "/api/v1",
            "/apis",
            "/healthz",
            "/livez",
            "/openapi/v2",
            "/openapi/v3",
            "/readyz",
            "/version",
        ]
        for g, versions in self.registry.group_versions().items():
            paths.append(f"/apis/{g}")
            paths.extend(f"/apis/{g}/{v}" for v in versions)
        return sorted(paths)

    def _aggregated(self, *, core: bool) -> dict[str, Any]:
        """Aggregated discovery (apidiscovery.k8s.io/v2), what kubectl asks for first."""
        by_group: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for rt in self.registry.all():
            if (rt.group == "") != core:
                continue
            by_group.setdefault(rt.group, {}).setdefault(rt.version, []).append(
                rt.aggregated_entry()
            )
        items = []
        for group, versions in by_group.items():
            ordered = sorted(versions, key=crdmod.version_priority)
            items.append(
                {
                    "metadata": {"name": group, "creationTimestamp": None}
                    if group
                    else {"creationTimestamp": None},
                    "versions": [
                        {"version": v, "resources": versions[v], "freshness": "Current"}
                        for v in ordered
                    ],
                }
            )
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }

    def _group(self, name: str) -> dict[str, Any] | None:
        versions = self.registry.group_versions().get(name)
        if not versions:
            return None
        ordered = sorted(versions, key=crdmod.version_priority)
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in ordered]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def _group_list(self) -> dict[str, Any]:
        groups = []
        for name in self.registry.group_versions():
            g = self._group(name)
            if g is not None:
                g = dict(g)
                g.pop("kind")
                g.pop("apiVersion")
                groups.append(g)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> Response:
        rts = self.registry.in_group_version(group, version)
        if not rts:
            raise resource_not_found()
        resources: list[dict[str, Any]] = []
        for rt in rts:
            resources.extend(rt.discovery_entries())
        gv = f"{group}/{version}" if group else version
        return json_response(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": resources,
            },
        )

    def _openapi(self, rest: list[str]) -> Response:
        key = "/".join(rest)
        with self.store.lock:
            cached = self._openapi_cache.get(key)
            if cached is None:
                doc = openapi.document(self.registry, rest)
                if doc is None:
                    raise ApiError(404, "NotFound", "404 page not found")
                cached = dumps(doc)
                self._openapi_cache[key] = cached
        return Response(200, cached, JSON)

    # ---------------------------------------------------------------- routing
    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace = rest[1]
            rest = rest[2:]
        if len(rest) > 3:
            raise resource_not_found()
        rt = self.registry.lookup(group, version, rest[0])
        if rt is None:
            raise resource_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespace is not None and not rt.namespaced:
            raise resource_not_found()
        if namespace is None and rt.namespaced and name is not None:
            raise resource_not_found()
        if sub is not None and sub not in rt.subresources:
            raise resource_not_found()
        return Target(rt, namespace, name, sub)

    def _resource(
        self,
        method: str,
        group: str,
        version: str,
        rest: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        user: User,
    ) -> Response:
        t = self._target(group, version, rest)
        watch = query.get("watch") in ("true", "1")
        verb = {
            "GET": "get" if t.name else ("watch" if watch else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection",
        }.get(method)
        if (
            verb is None
            or (verb in ("update", "patch") and t.name is None)
            or (verb == "create" and t.name is not None)
        ):
            raise method_not_allowed(method)
        if t.rt.key in REVIEWS:
            if verb != "create":
                raise method_not_allowed(method)
            return self._review(t, user, headers, body)
        if not user.allows(verb, namespace=t.namespace, namespaced=t.rt.namespaced):
            msg = forbidden_message(
                user,
                verb,
                resource=t.rt.plural,
                group=t.rt.group,
                subresource=t.sub or "",
                name=t.name or "",
                namespace=t.namespace,
            )
            details: dict[str, Any] = {}
            if t.name:
                details["name"] = t.name
            if t.rt.group:
                details["group"] = t.rt.group
            details["kind"] = t.rt.plural
            raise ApiError(403, "Forbidden", msg, details)
        if verb in ("create", "update", "patch", "delete", "deletecollection"):
            dry = query.get("dryRun")
            if dry not in (None, "All"):
                raise invalid_object(
                    "meta.k8s.io",
                    "CreateOptions",
                    "",
                    [validation.not_supported("dryRun[0]", dry, ["All"])],
                )
            fv = query.get("fieldValidation")
            if fv not in (None, "", "Ignore", "Warn", "Strict"):
                raise bad_request(
                    f'fieldValidation parameter unsupported: "{fv}"; expected one of [Ignore Warn Strict]'
                )
        resp = self._dispatch(verb, method, t, query, headers, body)
        if t.rt.deprecation_warning:
            # what a real server says of a CRD version marked deprecated (to every request)
            warning = f'299 - "{t.rt.deprecation_warning}"'
            old = resp.headers.get("Warning")
            resp.headers["Warning"] = f"{old}, {warning}" if old else warning
        return resp

    def _dispatch(
        self,
        verb: str,
        method: str,
        t: Target,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        if t.sub == "scale":
            return self._scale(verb, t, query, headers, body)
        if verb == "get":
            assert t.name is not None
            obj = self.store.get(t.rt.key, t.namespace or "", t.name)
            if obj is None:
                raise not_found(t.rt, t.name)
            return self._object_response(200, t.rt, obj, headers, query)
        if verb == "list":
            return self._list(t, query, headers)
        if verb == "watch":
            return self._watch(t, query, as_table="as=Table" in headers.get("accept", ""))
        if verb == "create":
            if t.name is not None:
                raise method_not_allowed(method)
            return self._create(t, query, headers, body)
        if verb == "update":
            return self._update(t, query, headers, body)
        if verb == "patch":
            return self._patch(t, query, headers, body)
        if verb == "delete":
            return self._delete(t, query, body)
        return self._delete_collection(t, query, body)

    # ---------------------------------------------------------------- reviews
    def _review(self, t: Target, user: User, headers: dict[str, str], body: bytes) -> Response:
        """ "Who am I" (SelfSubjectReview) and "may I" (SelfSubjectAccessReview), what
        ``kubectl auth whoami`` and ``kubectl auth can-i`` ask: any authenticated user may ask
        (the system:basic-user ClusterRole), the answer comes from the same permissions as every
        request's, and nothing is stored."""
        review = self._check_object(
            t.rt, self._parse_body(body, headers.get("content-type", "")), t
        )
        out: Obj = {
            "kind": t.rt.kind,
            "apiVersion": t.rt.api_version,
            "metadata": {"creationTimestamp": None},
        }
        if t.rt.kind == "SelfSubjectReview":
            groups = [*user.groups, "system:authenticated"]
            out["status"] = {"userInfo": {"username": user.name, "groups": groups}}
            return json_response(201, out)
        spec = review.get("spec") if isinstance(review.get("spec"), dict) else {}
        attrs = spec.get("resourceAttributes")
        if isinstance(attrs, dict):
            group, plural = str(attrs.get("group") or ""), str(attrs.get("resource") or "")
            rt = next(
                (r for r in self.registry.all() if (r.group, r.plural) == (group, plural)), None
            )
            namespace = attrs.get("namespace") or None
            allowed = user.allows(
                str(attrs.get("verb") or ""),
                namespace=namespace,
                namespaced=rt.namespaced if rt is not None else namespace is not None,
            )
        else:  # non-resource URLs: discovery and health are open to every authenticated user
            verb = str((spec.get("nonResourceAttributes") or {}).get("verb") or "")
            allowed = user.role == "admin" or verb == "get"
        out["spec"] = spec
        out["status"] = {"allowed": allowed}
        return json_response(201, out)

    # ---------------------------------------------------------------- reading
    def _out(self, rt: ResourceType, obj: Obj) -> Obj:
        """The object as served through ``rt`` (only apiVersion differs between CRD versions)."""
        if obj.get("apiVersion") != rt.api_version:
            obj = dict(obj)
            obj["apiVersion"] = rt.api_version
        return obj

    def _object_response(
        self, code: int, rt: ResourceType, obj: Obj, headers: dict[str, str], query: dict[str, str]
    ) -> Response:
        if "as=Table" in headers.get("accept", ""):
            return json_response(
                code,
                tables.table(
                    rt, [obj], str(self.store.resource_version), query.get("includeObject", "")
                ),
            )
        return json_response(code, self._out(rt, obj))

    def _list(self, t: Target, query: dict[str, str], headers: dict[str, str]) -> Response:
        try:
            lm = label_matcher(query.get("labelSelector"))
            fm = field_matcher(query.get("fieldSelector"), t.rt.kind)
        except SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}") from e
        with self.store.lock:
            rv = str(self.store.resource_version)
            items = self.store.list(t.rt.key, t.namespace)
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        if lm is not None:
            items = [o for o in items if lm(o)]
        if fm is not None:
            items = [o for o in items if fm(o)]
        cont = query.get("continue")
        if cont:
            try:
                start_ns, start_name = json.loads(base64.urlsafe_b64decode(cont.encode()))
            except (ValueError, TypeError) as e:
                raise bad_request("continue key is not valid: invalid continue token") from e
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                > (start_ns, start_name)
            ]
        meta: dict[str, Any] = {"resourceVersion": rv}
        limit = int(query.get("limit") or 0)
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            items = items[:limit]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps([last.get("namespace", ""), last["name"]]).encode()
            ).decode()
            meta["remainingItemCount"] = 0
        if "as=Table" in headers.get("accept", ""):
            table = tables.table(t.rt, items, rv, query.get("includeObject", ""))
            table["metadata"] = meta
            return json_response(200, table)
        out_items = [self._out(t.rt, o) for o in items]
        return json_response(
            200,
            {
                "kind": f"{t.rt.kind}List",
                "apiVersion": t.rt.api_version,
                "metadata": meta,
                "items": out_items,
            },
        )

    # ---------------------------------------------------------------- watch
    def _watch(self, t: Target, query: dict[str, str], *, as_table: bool = False) -> Response:
        try:
            lm = label_matcher(query.get("labelSelector"))
            fm = field_matcher(query.get("fieldSelector"), t.rt.kind)
        except SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}") from e
        timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        rv_param = query.get("resourceVersion") or ""
        send_initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") == "true"
        rt = t.rt
        key = rt.key
        ns = t.namespace

        def matches(o: Obj | None) -> bool:
            if o is None:
                return False
            if ns is not None and o["metadata"].get("namespace", "") != ns:
                return False
            return (lm is None or lm(o)) and (fm is None or fm(o))

        include = query.get("includeObject", "")

        def line(etype: str, obj: Obj) -> bytes:
            if as_table and etype in ("ADDED", "MODIFIED", "DELETED"):
                rv = obj.get("metadata", {}).get("resourceVersion", "")
                obj = tables.table(rt, [obj], rv, include)
            return dumps({"type": etype, "object": obj}) + b"\n"

        with self.store.lock:
            current = self.store.resource_version
            initial: list[Obj] = []
            if send_initial or rv_param in ("", "0"):
                initial = [o for o in self.store.list(key, ns) if matches(o)]
                initial.sort(
                    key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                )
                since = current
            else:
                try:
                    since = int(rv_param)
                except ValueError as e:
                    raise bad_request(f'invalid resource version "{rv_param}"') from e
                oldest = self.store.oldest_event_rv()
                too_old = oldest is not None and self.store.log_is_full() and since < oldest - 1
                if too_old:
                    err = ApiError(410, "Expired", f"too old resource version: {since} ({current})")

                    def gone() -> Iterator[bytes]:
                        yield line("ERROR", err.status())

                    return Response(200, stream=gone(), headers={"Content-Type": JSON})

        stopping = self.stopping
        store = self.store

        def gen() -> Iterator[bytes]:
            deadline = time.monotonic() + timeout
            for o in initial:
                yield line("ADDED", self._out(rt, o))
            if send_initial and bookmarks:
                yield line(
                    "BOOKMARK",
                    {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {
                            "resourceVersion": str(since),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                )
            last = since
            while not stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                with store.changed:
                    if store.resource_version <= last:
                        store.changed.wait(min(remaining, 1.0))
                    events = list(store.events_after(last))
                out: list[bytes] = []
                for ev in events:
                    last = ev.rv
                    if ev.key != key:
                        continue
                    now_m, was_m = matches(ev.obj), matches(ev.old)
                    if ev.type == "DELETED":
                        if was_m:
                            out.append(line("DELETED", self._out(rt, ev.obj)))
                    elif now_m and was_m:
                        out.append(line("MODIFIED", self._out(rt, ev.obj)))
                    elif now_m:
                        out.append(line("ADDED", self._out(rt, ev.obj)))
                    elif was_m:
                        out.append(line("DELETED", self._out(rt, ev.obj)))
                if out:
                    yield b"".join(out)
                elif not events:
                    yield b""  # lets the HTTP layer notice a closed client

        return Response(200, stream=gen(), headers={"Content-Type": JSON})

    # ---------------------------------------------------------------- body parsing
    def _parse_body(self, body: bytes, content_type: str) -> Any:
        if "protobuf" in content_type:
            try:
                return protobuf.decode(body)
            except protobuf.ProtobufError as e:
                raise unsupported_media(["application/json", "application/yaml"]) from e
        if "cbor" in content_type:
            raise unsupported_media(["application/json", "application/yaml"])
        if not body.strip():
            raise bad_request("the body of the request was empty")
        try:
            return loads(body)
        except ValueError:
            pass
        if "yaml" in content_type:
            try:
                return yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            except yaml.YAMLError as e:
                raise bad_request(f"error decoding YAML: {e}") from e
        raise bad_request("the body of the request could not be decoded as JSON")

    def _check_object(self, rt: ResourceType, obj: Any, t: Target) -> Obj:
        if not isinstance(obj, dict):
            raise bad_request(f"Object 'Kind' is missing in '{str(obj)[:100]}'")
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if not kind:
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if not av:
            raise bad_request(f"Object 'apiVersion' is missing in '{json.dumps(obj)[:200]}'")
        if av != rt.api_version and not (rt.crd and av.split("/")[0] == rt.group):
            raise bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({rt.api_version})"
            )
        if kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        ns_in = meta.get("namespace")
        if rt.namespaced:
            if ns_in and t.namespace and ns_in != t.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if t.namespace:
                meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if t.name is not None and meta.get("name") and meta["name"] != t.name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})"
            )
        if t.name is not None and not meta.get("name"):
            meta["name"] = t.name
        return obj

    # ---------------------------------------------------------------- write pipeline
    def _namespace_ok(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        if not rt.namespaced or namespace is None:
            return
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            details: dict[str, Any] = {"name": name}
            if rt.group:
                details["group"] = rt.group
            details["kind"] = rt.plural
            details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise ApiError(
                403,
                "Forbidden",
                f'{rt.group_resource} "{name}" is forbidden: unable to create new content in namespace {namespace} because it is being terminated',
                details,
            )

    def _prepare(
        self,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        *,
        namespace: str | None,
        subresource: str | None = None,
    ) -> Obj:
        """System metadata, defaulting, pruning and validation of an object about to be written."""
        meta = obj.setdefault("metadata", {})
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        if rt.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or ""
        else:
            meta.pop("namespace", None)
        has_status = "status" in rt.subresources
        if old is None:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + self.random_suffix()
            meta["uid"] = self.new_uid()
            meta["creationTimestamp"] = now_iso()
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
                meta.pop(k, None)
            if rt.has_generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            if has_status and rt.kind != "Namespace":
                obj.pop("status", None)
        else:
            ometa = old["metadata"]
            for k in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if k in ometa:
                    meta[k] = ometa[k]
                else:
                    meta.pop(k, None)
            if rt.has_generation:
                meta["generation"] = ometa.get("generation", 1)
            if has_status and subresource is None:
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
        if subresource is None:
            defaults.apply_defaults(rt, obj, old, self)
            if has_status and not rt.crd and "status" not in obj:
                obj["status"] = {}
            if rt.crd:
                crdmod.prune_and_default(rt, obj)
        errs = validation.validate(rt, obj, old)
        if rt.crd:
            errs.extend(crdmod.validate_against_schema(rt, obj))
        if errs:
            raise invalid_object(rt.group, rt.kind, meta.get("name", ""), errs)
        if (
            old is not None
            and rt.has_generation
            and subresource is None
            and _spec_changed(obj, old, with_status=rt.crd and "status" not in rt.subresources)
        ):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        return obj

    def _store_write(self, rt: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        """Write (or skip a no-op), then run the side effects of CRD and Namespace writes."""
        with self.store.lock:
            if old is not None and _same(obj, old):
                return old
            stored = self.store.put(
                rt.key, obj, event_type="ADDED" if old is None else "MODIFIED", old=old
            )
            if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
                self._crd_changed(stored)
            if rt.kind == "Namespace" and rt.group == "" and old is None:
                self._namespace_created(stored)
            meta = stored["metadata"]
            if (
                meta.get("deletionTimestamp")
                and not meta.get("finalizers")
                and rt.kind != "Namespace"
            ):
                self._remove(rt, stored, propagation="Background")
            return stored

    def _namespace_created(self, ns: Obj) -> None:
        """What a new cluster's controllers put into every namespace."""
        name = ns["metadata"]["name"]
        sa_rt = self.registry.lookup("", "v1", "serviceaccounts")
        cm_rt = self.registry.lookup("", "v1", "configmaps")
        assert sa_rt is not None and cm_rt is not None
        self._create_internal(
            sa_rt,
            {"metadata": {"name": "default", "namespace": name}},
            manager="kube-controller-manager",
        )
        self._create_internal(
            cm_rt,
            {
                "metadata": {
                    "name": "kube-root-ca.crt",
                    "namespace": name,
                    "annotations": {
                        "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
                    },
                },
                "data": {
                    "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIBemulator\n-----END CERTIFICATE-----\n"
                },
            },
            manager="kube-controller-manager",
        )

    def _crd_changed(self, crd: Obj) -> None:
        """Register the served versions of a CRD and mark it Established (as the real controllers do)."""
        old_types = [
            rt
            for rt in self.registry.all()
            if rt.crd
            and rt.group == crd["spec"]["group"]
            and rt.plural == crd["spec"]["names"]["plural"]
        ]
        for rt in old_types:
            self.registry.remove_group_plural(rt.group, rt.plural)
        for version in crd["spec"].get("versions") or ():
            if version.get("served", True):
                rt = ResourceType.from_crd(crd, version)
                rt.list_types = merge.crd_list_types(rt.schema)
                self.registry.add(rt)
        self._openapi_cache.clear()
        status = crdmod.established_status(crd, now_iso())
        if crd.get("status") != status:
            new = dict(crd)
            new["status"] = status
            new = merge.track_update(
                crd, new, manager="kube-apiserver", now=now_iso(), subresource="status"
            )
            self.store.put(
                ("apiextensions.k8s.io", "customresourcedefinitions"),
                new,
                event_type="MODIFIED",
                old=crd,
            )

    def _crd_removed(self, crd: Obj) -> None:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for o in self.store.list((group, plural), None):
            self.store.remove(
                (group, plural), o["metadata"].get("namespace", ""), o["metadata"]["name"]
            )
        self.registry.remove_group_plural(group, plural)
        self._openapi_cache.clear()

    def _manager(self, query: dict[str, str], headers: dict[str, str], default_op: str) -> str:
        fm = query.get("fieldManager")
        if fm:
            return fm
        ua = headers.get("user-agent", "")
        # The real server derives the manager from the User-Agent's program name.
        prog = ua.split("/")[0] if ua else "unknown"
        return prog or "unknown"

    def _finish(
        self, rt: ResourceType, obj: Obj, old: Obj | None, query: dict[str, str], created_code: int
    ) -> tuple[int, Obj]:
        dry = query.get("dryRun") == "All"
        if dry:
            if old is None:
                obj["metadata"].pop("resourceVersion", None)
            elif _same(obj, old):
                obj = old
            else:
                obj["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion", "")
            return (created_code if old is None else 200), obj
        stored = self._store_write(rt, obj, old)
        return (created_code if old is None else 200), stored

    def _unknown_fields(
        self, rt: ResourceType, obj: Obj, query: dict[str, str], *, apply: bool
    ) -> dict[str, str]:
        """Server-side field validation: raise (Strict) or drop unknown fields and return a Warning header."""
        found = fields.unknown_fields(rt, obj)
        if not found:
            return {}
        mode = query.get("fieldValidation") or "Warn"
        if mode == "Strict":
            if apply:
                meta = obj.get("metadata") or {}
                where = (
                    f"{meta.get('namespace')}/{meta.get('name')}"
                    if meta.get("namespace")
                    else meta.get("name", "")
                )
                gvk = _gvk(rt)
                raise bad_request(
                    f"failed to create typed patch object ({where}; {gvk}): .{found[0]}: field not declared in schema"
                )
            listed = ", ".join(f'unknown field "{f}"' for f in found)
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {listed}'
            )
        fields.drop_fields(obj, found)
        if mode == "Ignore":
            return {}
        return {"Warning": ", ".join('299 - "unknown field \\"' + f + '\\""' for f in found)}

    def _create(
        self, t: Target, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        rt = t.rt
        obj = self._check_object(rt, self._parse_body(body, headers.get("content-type", "")), t)
        _decodable(rt, obj)
        warn = self._unknown_fields(rt, obj, query, apply=False)
        meta = obj["metadata"]
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid_object(
                rt.group,
                rt.kind,
                "",
                [validation.required("metadata.name", "name or generateName is required")],
            )
        with self.store.lock:
            self._namespace_ok(rt, t.namespace, meta.get("name") or meta.get("generateName", ""))
            if (
                meta.get("name")
                and self.store.get(rt.key, t.namespace or "", meta["name"]) is not None
            ):
                raise already_exists(rt, meta["name"])
            reset_mf = meta.pop("managedFields", None)
            obj = self._prepare(rt, obj, None, namespace=t.namespace)
            if reset_mf != [{}]:
                obj = merge.track_update(
                    None,
                    obj,
                    manager=self._manager(query, headers, "Update"),
                    now=now_iso(),
                    list_types=rt.list_types,
                )
            code, out = self._finish(rt, obj, None, query, 201)
        resp = json_response(code, self._out(rt, out))
        resp.headers.update(warn)
        return resp

    def _update(
        self, t: Target, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        rt = t.rt
        assert t.name is not None
        obj = self._check_object(rt, self._parse_body(body, headers.get("content-type", "")), t)
        _decodable(rt, obj)
        with self.store.lock:
            old = self.store.get(rt.key, t.namespace or "", t.name)
            if old is None:
                raise not_found(rt, t.name)
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"].get("resourceVersion"):
                raise conflict(rt, t.name)
            return self._write_update(t, obj, old, query, headers)

    def _write_update(
        self,
        t: Target,
        obj: Obj,
        old: Obj,
        query: dict[str, str],
        headers: dict[str, str],
        manager: str | None = None,
        track_subresource: str | None = None,
    ) -> Response:
        """Write ``obj`` over ``old``; ``track_subresource`` names the subresource the
        managedFields entry records when it differs from ``t.sub`` (scale writes the main
        resource)."""
        rt = t.rt
        warn = self._unknown_fields(rt, obj, query, apply=False) if t.sub is None else {}
        incoming_mf = obj["metadata"].pop("managedFields", None)
        if t.sub == "status":
            new = dict(old)
            new["metadata"] = clone(old["metadata"])
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            obj = new
        else:
            obj["metadata"]["managedFields"] = old["metadata"].get("managedFields")
        obj = self._prepare(rt, obj, old, namespace=t.namespace, subresource=t.sub)
        if incoming_mf == [{}]:
            obj["metadata"].pop("managedFields", None)
        elif incoming_mf and incoming_mf != old["metadata"].get("managedFields"):
            obj["metadata"]["managedFields"] = incoming_mf
        else:
            if not obj["metadata"].get("managedFields"):
                obj["metadata"].pop("managedFields", None)
            obj = merge.track_update(
                old,
                obj,
                manager=manager or self._manager(query, headers, "Update"),
                now=now_iso(),
                subresource=track_subresource or t.sub,
                list_types=rt.list_types,
            )
        code, out = self._finish(rt, obj, old, query, 201)
        resp = json_response(code, self._out(rt, out))
        resp.headers.update(warn)
        return resp

    def _patch(
        self, t: Target, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        rt = t.rt
        assert t.name is not None
        ctype = headers.get("content-type", "").split(";")[0].strip()
        allowed = PATCH_TYPES + ([] if rt.crd else [SMP])
        if ctype not in allowed:
            raise unsupported_media(allowed)
        if ctype == APPLY:
            if not query.get("fieldManager"):
                raise invalid_object(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    [validation.required("fieldManager", "is required for apply patch")],
                )
        elif "force" in query:
            raise invalid_object(
                "meta.k8s.io",
                "PatchOptions",
                "",
                [validation.forbidden("force", "may not be specified for non-apply patch")],
            )
        patch = self._parse_body(body, ctype)
        with self.store.lock:
            old = self.store.get(rt.key, t.namespace or "", t.name)
            if ctype == APPLY:
                return self._apply(t, patch, old, query)
            if old is None:
                raise not_found(rt, t.name)
            # The whole object is patched, managedFields included: changed ones replace the
            # recorded ones (``[{}]`` clears them), as kube-apiserver's field manager does.
            target = clone(old)
            try:
                if ctype == JSONPATCH:
                    if not isinstance(patch, list):
                        raise bad_request(
                            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                        )
                    new = merge.json_patch(target, patch)
                elif ctype == MERGE:
                    new = merge.json_merge_patch(target, patch)
                else:
                    new = merge.strategic_merge_patch(target, patch)
            except merge.PatchError as e:
                raise ApiError(422, "Invalid", str(e)) from e
            if not isinstance(new, dict):
                raise bad_request("patch did not produce an object")
            new_meta = new.get("metadata") or {}
            rv = new_meta.get("resourceVersion")
            if rv and rv != old["metadata"].get("resourceVersion"):
                raise conflict(rt, t.name)
            self._check_object(rt, new, t)
            _patch_decodable(rt, new, patch, strategic=ctype == SMP)
            return self._write_update(t, new, old, query, headers)

    def _apply(self, t: Target, config: Any, old: Obj | None, query: dict[str, str]) -> Response:
        rt = t.rt
        assert t.name is not None
        config = self._check_object(rt, config, t)
        if config["metadata"].pop("managedFields", None) is not None:
            # kube-apiserver's field manager refuses an apply that carries managedFields (an
            # empty list too; only null or absent will do)
            raise bad_request(MANAGED_FIELDS_IN_APPLY)
        _applied_typed(rt, config)
        warn = self._unknown_fields(rt, config, query, apply=True) if t.sub is None else {}
        rv = config["metadata"].get("resourceVersion")
        if old is None:
            self._namespace_ok(rt, t.namespace, t.name)
        elif rv and rv != old["metadata"].get("resourceVersion"):
            raise conflict(rt, t.name)
        manager = query["fieldManager"]
        force = query.get("force") in ("true", "1")
        if t.sub == "status" and old is None:
            raise not_found(rt, t.name)
        try:
            merged = merge.apply(
                old,  # merge.apply never mutates its inputs
                config,
                manager=manager,
                force=force,
                now=now_iso(),
                list_types=rt.list_types,
                subresource=t.sub,
                # the main resource of a kind with a status subresource ignores .status
                reset_status=t.sub is None and "status" in rt.subresources,
            )
        except merge.ApplyConflict as e:
            raise ApiError(409, "Conflict", e.message(), {"causes": e.causes()}) from e
        except merge.PatchError as e:
            raise _typed_patch_error(rt, config, str(e)) from e
        _applied_decodable(rt, merged, config)
        if t.sub == "status" and old is not None:
            new = dict(old)
            new["metadata"] = dict(
                old["metadata"], managedFields=merged["metadata"].get("managedFields")
            )
            if "status" in merged:
                new["status"] = merged["status"]
            merged = new
        obj = self._prepare(rt, merged, old, namespace=t.namespace, subresource=t.sub)
        code, out = self._finish(rt, obj, old, query, 201)
        resp = json_response(code, self._out(rt, out))
        resp.headers.update(warn)
        return resp

    # ---------------------------------------------------------------- scale
    def _scale(
        self, verb: str, t: Target, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Response:
        rt = t.rt
        assert t.name is not None
        with self.store.lock:
            obj = self.store.get(rt.key, t.namespace or "", t.name)
            if obj is None:
                raise not_found(rt, t.name)
            scale = _scale_of(obj)
            if verb == "get":
                return json_response(200, scale)
            payload = self._parse_body(body, headers.get("content-type", ""))
            if verb == "patch":
                ctype = headers.get("content-type", "").split(";")[0].strip()
                if ctype == JSONPATCH:
                    scale = merge.json_patch(scale, payload)
                elif ctype == APPLY:
                    scale = dict(scale, spec=dict(scale["spec"], **(payload.get("spec") or {})))
                else:
                    scale = merge.json_merge_patch(scale, payload)
            else:
                scale = payload
            new = clone(obj)
            new["metadata"].pop("managedFields", None)
            new.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas", 0)
            main = Target(rt, t.namespace, t.name, None)
            written = self._write_update(main, new, obj, query, headers, track_subresource="scale")
            # the written object (not the stored one: a dry run stores nothing)
            return json_response(200, _scale_of(loads(written.body)))

    # ---------------------------------------------------------------- delete
    def _delete_options(self, body: bytes, query: dict[str, str]) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if body.strip():
            try:
                parsed = json.loads(body)
            except ValueError as e:
                raise bad_request("invalid DeleteOptions body") from e
            if isinstance(parsed, dict):
                opts = parsed
        if "propagationPolicy" in query:
            opts["propagationPolicy"] = query["propagationPolicy"]
        if query.get("dryRun") == "All":
            opts["dryRun"] = ["All"]
        pp = opts.get("propagationPolicy")
        if pp not in (None, "Orphan", "Background", "Foreground"):
            raise invalid_object(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                [
                    validation.not_supported(
                        "propagationPolicy", pp, ["Foreground", "Background", "Orphan", "nil"]
                    )
                ],
            )
        return opts

    def _delete(self, t: Target, query: dict[str, str], body: bytes) -> Response:
        rt = t.rt
        assert t.name is not None
        opts = self._delete_options(body, query)
        with self.store.lock:
            obj = self.store.get(rt.key, t.namespace or "", t.name)
            if obj is None:
                raise not_found(rt, t.name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
                raise conflict(
                    rt,
                    t.name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata'].get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"].get(
                "resourceVersion"
            ):
                raise conflict(
                    rt,
                    t.name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {obj['metadata'].get('resourceVersion')}",
                )
            if opts.get("dryRun"):
                return json_response(200, self._out(rt, obj))
            result = self._delete_object(rt, obj, opts.get("propagationPolicy") or "Background")
        return json_response(200, result)

    def _delete_object(self, rt: ResourceType, obj: Obj, propagation: str) -> Obj:
        meta = obj["metadata"]
        if rt.kind == "Namespace" and rt.group == "":
            if meta.get("deletionTimestamp"):
                return obj
            new = clone(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            return self.store.put(rt.key, new, event_type="MODIFIED", old=obj)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            new = clone(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self.store.put(rt.key, new, event_type="MODIFIED", old=obj)
        self._remove(rt, obj, propagation=propagation)
        details: dict[str, Any] = {"name": meta["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = meta.get("uid")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    def _remove(self, rt: ResourceType, obj: Obj, *, propagation: str) -> None:
        meta = obj["metadata"]
        uid = meta.get("uid", "")
        self.store.remove(rt.key, meta.get("namespace", ""), meta["name"])
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            self._crd_removed(obj)
        # Garbage collection of dependents: immediate here (the real GC is eventually consistent).
        for key, ns, name in self.store.dependents(uid):
            dep = self.store.get(key, ns, name)
            if dep is None:
                continue
            dep_rt = self._rt_for_key(key, dep)
            if dep_rt is None:
                continue
            if propagation == "Orphan":
                new = clone(dep)
                new["metadata"]["ownerReferences"] = [
                    r for r in dep["metadata"].get("ownerReferences", []) if r.get("uid") != uid
                ]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self.store.put(key, new, event_type="MODIFIED", old=dep)
            elif not any(
                r.get("uid") != uid and self.store.by_uid(r.get("uid", "")) is not None
                for r in dep["metadata"].get("ownerReferences") or ()
            ):
                # like the garbage collector: only once no owner is left
                self._delete_object(dep_rt, dep, propagation)

    def _rt_for_key(self, key: tuple[str, str], obj: Obj) -> ResourceType | None:
        av = obj.get("apiVersion", "")
        version = av.split("/")[-1]
        return self.registry.lookup(key[0], version, key[1]) or next(
            (rt for rt in self.registry.all() if rt.key == key), None
        )

    def _delete_collection(self, t: Target, query: dict[str, str], body: bytes) -> Response:
        rt = t.rt
        opts = self._delete_options(body, query)
        try:
            lm = label_matcher(query.get("labelSelector"))
            fm = field_matcher(query.get("fieldSelector"), rt.kind)
        except SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}") from e
        with self.store.lock:
            items = [
                o
                for o in self.store.list(rt.key, t.namespace)
                if (lm is None or lm(o)) and (fm is None or fm(o))
            ]
            if not opts.get("dryRun"):
                for o in items:
                    self._delete_object(rt, o, opts.get("propagationPolicy") or "Background")
            rv = str(self.store.resource_version)
        return json_response(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": rv},
                "items": [self._out(rt, o) for o in items],
            },
        )

    # ---------------------------------------------------------------- controller access
    def write_status(
        self,
        rt: ResourceType,
        obj: Obj,
        status: dict[str, Any],
        *,
        annotations: dict[str, str] | None = None,
        manager: str = "kube-controller-manager",
    ) -> None:
        """Used by the controller: write a status (and maybe annotations) as ``manager``."""
        with self.store.lock:
            cur = self.store.get(
                rt.key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
            )
            if cur is None or cur["metadata"].get("uid") != obj["metadata"].get("uid"):
                return
            if annotations:
                new = dict(cur)
                new["metadata"] = dict(cur["metadata"])
                new["metadata"]["annotations"] = dict(
                    cur["metadata"].get("annotations") or {}, **annotations
                )
                new = merge.track_update(
                    cur, new, manager=manager, now=now_iso(), scope=("metadata", "annotations")
                )
                if not _same(new, cur):
                    cur = self.store.put(rt.key, new, event_type="MODIFIED", old=cur)
            if cur.get("status") == status:
                return
            new = dict(cur)
            new["metadata"] = dict(cur["metadata"])
            new["status"] = status
            new = merge.track_update(cur, new, manager=manager, now=now_iso(), subresource="status")
            self.store.put(rt.key, new, event_type="MODIFIED", old=cur)

    def create_as(self, manager: str, rt: ResourceType, body: Obj) -> Obj:
        """Used by the controller: create ``body`` (defaulted and validated) as ``manager``."""
        return self._create_internal(rt, body, manager=manager)

    def update_as(
        self, manager: str, rt: ResourceType, obj: Obj, change: Callable[[Obj], None]
    ) -> None:
        """Used by the controller: apply ``change`` to a copy of the stored ``obj`` (as it is
        now: no update is lost) and write it as ``manager``; nothing if it is gone or replaced."""
        meta = obj["metadata"]
        with self.store.lock:
            cur = self.store.get(rt.key, meta.get("namespace", ""), meta["name"])
            if cur is None or cur["metadata"].get("uid") != meta.get("uid"):
                return
            new = clone(cur)
            change(new)
            if new == cur:
                return
            prepared = self._prepare(rt, new, cur, namespace=meta.get("namespace"))
            prepared = merge.track_update(
                cur, prepared, manager=manager, now=now_iso(), list_types=rt.list_types
            )
            self._store_write(rt, prepared, cur)

    def delete_as_controller(self, rt: ResourceType, obj: Obj) -> None:
        """Used by the controller: delete ``obj`` (and its dependents) if it is still there."""
        meta = obj["metadata"]
        with self.store.lock:
            cur = self.store.get(rt.key, meta.get("namespace", ""), meta["name"])
            if cur is not None and cur["metadata"].get("uid") == meta.get("uid"):
                self._delete_object(rt, cur, "Background")

    def finish_namespace(self, ns: Obj) -> None:
        """Namespace controller: delete everything in a terminating namespace, then the namespace."""
        name = ns["metadata"]["name"]
        with self.store.lock:
            for key in self.store.type_keys():
                if key == ("", "namespaces"):
                    continue
                for o in self.store.list(key, name):
                    rt = self._rt_for_key(key, o)
                    meta = o["metadata"]
                    if meta.get("finalizers"):
                        if not meta.get("deletionTimestamp") and rt is not None:
                            self._delete_object(rt, o, "Background")
                        continue
                    self.store.remove(key, name, meta["name"])
            if any(
                self.store.count(k, name) for k in self.store.type_keys() if k != ("", "namespaces")
            ):
                return
            cur = self.store.get(("", "namespaces"), "", name)
            if cur is not None and cur["metadata"].get("deletionTimestamp"):
                self.store.remove(("", "namespaces"), "", name)


# ---------------------------------------------------------------- fields Go cannot decode
# A real server decodes every write into its Go type; a Secret's ``data`` values are []byte, so
# invalid base64 fails there, with a different answer per kind of write (decode errors are not
# validation errors): the request body of a create or update, the patched object of a patch, the
# result of an apply (see Kubernetes' handlers/create.go, patch.go and structuredmerge.go).


def _decode_problem(rt: ResourceType, obj: Obj) -> str | None:
    """Why Go's JSON decoder would refuse ``obj``: a value of the wrong type, or a Secret's data
    that is not base64."""
    wrong = fields.wrong_type(rt, obj)
    if wrong is not None:
        return wrong.decode_message()
    return validation.secret_data_problem(obj) if rt.key == ("", "secrets") else None


def _gvk(rt: ResourceType) -> str:
    """A GroupVersionKind as Go prints it: ``apps/v1, Kind=Deployment``, ``/v1, Kind=Secret``."""
    return f"{rt.group}/{rt.version}, Kind={rt.kind}"


def _decodable(rt: ResourceType, obj: Obj) -> None:
    """A create or update body: 400 BadRequest, as the request decoder answers."""
    problem = _decode_problem(rt, obj)
    if problem:
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {problem}'
        )


def _patch_decodable(rt: ResourceType, patched: Obj, patch: Any, *, strategic: bool) -> None:
    """A JSON, merge or strategic merge patch: 422 Invalid on the field ``patch``, quoting the
    patched object (JSON and merge patches) or the patch (strategic), as the real handler does."""
    problem = _decode_problem(rt, patched)
    if not problem:
        return
    if strategic:
        quoted, why = _go_format(patch), f"error decoding from json: {problem}"
    else:
        quoted, why = json.dumps(patched, sort_keys=True, separators=(",", ":")), problem
    detail = f"Invalid value: {json.dumps(quoted)}: {why}"
    raise ApiError(
        422,
        "Invalid",
        f' "" is invalid: patch: {detail}',
        {"causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "patch"}]},
    )


def _typed_patch_error(rt: ResourceType, config: Obj, message: str) -> ApiError:
    """What the field manager says of an applied configuration it cannot type: an error that is
    no API status, so 500 with no reason (kubectl: "Error from server: failed to create typed
    patch object ...")."""
    meta = config.get("metadata") or {}
    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}; {_gvk(rt)}"
    return ApiError(500, "", f"failed to create typed patch object ({where}): {message}")


def _applied_typed(rt: ResourceType, config: Obj) -> None:
    """An applied configuration with a value of the wrong type."""
    wrong = fields.wrong_type(rt, config)
    if wrong is not None:
        raise _typed_patch_error(rt, config, wrong.apply_message())


def _applied_decodable(rt: ResourceType, merged: Obj, config: Obj) -> None:
    """A server-side apply: the field manager's conversion of the result fails, and the error it
    returns is no API status, so the server answers 500 with no reason (kubectl: "Error from
    server: failed to convert new object ...")."""
    if rt.key != ("", "secrets"):
        return
    problem = validation.secret_data_problem(merged)
    if not problem:
        return
    meta = config.get("metadata") or {}
    where = f"{meta.get('namespace', '')}/{meta.get('name', '')}; {_gvk(rt)}"
    raise ApiError(
        500,
        "",
        f"failed to convert new object ({where}) to proper version: unable to convert "
        f"unstructured object to {_gvk(rt)}: error decoding from json: {problem}",
    )


def _go_format(value: Any) -> str:
    """Go's ``%+v`` of decoded JSON (maps sorted by key, strings bare)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_format(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)


def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    sel = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(sel.items())),
        },
    }


_SYSTEM_META = ("resourceVersion", "managedFields", "generation")


def _spec_changed(new: Obj, old: Obj, *, with_status: bool = False) -> bool:
    """Whether a write bumps metadata.generation: any change but metadata's (and status's, for a
    kind with a status subresource: a custom resource without one counts status changes too)."""
    for k in set(new) | set(old):
        if k in ("metadata", "apiVersion", "kind") or (k == "status" and not with_status):
            continue
        if new.get(k) != old.get(k):
            return True
    return False


def _strip_times(mf: Any) -> Any:
    if not isinstance(mf, list):
        return mf
    return [{k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e for e in mf]


def _same(a: Obj, b: Obj) -> bool:
    """Equal apart from resourceVersion and managedFields timestamps (a no-op write)."""
    if a.keys() != b.keys():
        return False
    for k in a:
        if k == "metadata":
            continue
        if a[k] != b[k]:
            return False
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    keys = (set(ma) | set(mb)) - {"resourceVersion", "managedFields"}
    if any(ma.get(k) != mb.get(k) for k in keys):
        return False
    return bool(_strip_times(ma.get("managedFields")) == _strip_times(mb.get("managedFields")))
