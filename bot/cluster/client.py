"""One connection to one cluster, per job: credentials, discovery, and the two ways requests go.

Credentials come from the official loaders (``load_kube_config``, ``load_incluster_config``),
so everything they support works: exec plugins (``aws eks get-token``,
``gke-gcloud-auth-plugin``), OIDC, tokens and token files, basic auth, client certificates,
``tls-server-name``, ``proxy-url`` (read by the loader from kubernetes 37.0.0 on). :class:`Credentials` is the one place that reads the current
Authorization header.

Requests go two ways:

* **in bulk** — the applies, GETs, LISTs and DELETEs of a preview, deploy, prune or health wait
  — through one :class:`~bot.cluster.batch.CurlBatch` driven from the calling thread
  (:meth:`Cluster.apply_many`, :meth:`~Cluster.get_many`, :meth:`~Cluster.list_many`,
  :meth:`~Cluster.delete_many`; each returns a list in input order, an error in the place of
  each object that failed);
* **one at a time** — discovery, the ApplySet parent, waiting for a CRD, re-creating an object —
  through the official client's ``DynamicClient.request`` (its public API, unchanged from
  ``kubernetes`` 30 to 37).

Both follow one retry rule (:meth:`Cluster._again`): an overload answer (429, 5xx) or no answer
at all is sent again up to three times with backoff, honouring Retry-After up to 5 s; a 401
reloads the credentials through the loader once (re-running an exec plugin, re-reading a
token file) and is sent again with the new header.

Discovery uses the aggregated endpoint when the server offers it (one answer each for ``/api``
and ``/apis``), the per-group endpoints otherwise, and answers "which URL serves this
apiVersion/kind, and is it namespaced" from memory, discovering again at most once after a CRD
applied in this job introduces a new kind.

Process-wide state: none of the bot's. What a Cluster learns (discovery, credentials) lives in
the Cluster, one per job and target, and goes with it; a job's objects pass through it without
being kept. (The official loader itself writes a kubeconfig's inline certificate data to
temporary files that last as long as the process: the operator's credentials, never anything
read from a repository.)
The DynamicClient's own discoverer is not used: it would ask for ``/version`` and ``/apis`` on
construction and keep its findings in a file under the system's temp directory, shared by every
process on the host and outliving the job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient

from bot.cluster.batch import Answer, CurlBatch, Failure, Request
from bot.cluster.errors import (
    CONNECTION_ERROR,
    UNKNOWN_KIND,
    ApiError,
    NotFoundError,
    PermanentApiError,
    TargetError,
    TransientApiError,
    UnknownKindError,
    connection_error,
    from_status,
)
from bot.cluster.targets import Target
from bot.model import Obj

DEFAULT_CONCURRENCY = 16
RETRIES = 3  # extra attempts after a transient failure
BACKOFF = 0.2  # seconds before the first retry, doubling
MAX_RETRY_AFTER = 5.0  # never sleep longer than this on one retry
REQUEST_TIMEOUT = 60.0  # seconds for one request, connecting included
CONNECT_TIMEOUT = 10.0
"""Seconds to connect (TCP and TLS) to an API server. An address that drops packets (a firewall,
a cluster that is gone) fails after this rather than after REQUEST_TIMEOUT, and a request whose
attempts have gone unanswered for this long is not tried again (the kernel re-sent the SYN
meanwhile): an unreachable target costs a preview ~20 s (urllib3 reconnects once), where eight
attempts of REQUEST_TIMEOUT (urllib3's two times our four) held a worker for 8 minutes before the
preview fell back to the offline diff. A refused connection fails at once and is retried."""
JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
# Aggregated discovery (GA in 1.30): one answer for every group, with scope and kind.
AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)
LIST_PAGE = "500"

log = logging.getLogger("gitops_bot.cluster")


@dataclass(frozen=True)
class Resource:
    """How one kind is served: ``/apis/<group>/<version>/[namespaces/<ns>/]<plural>``."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection(namespace)}/{quote(name, safe='')}"


class RestMapper:
    """apiVersion/kind -> :class:`Resource`, from one discovery pass."""

    def __init__(self, resources: Iterable[Resource], preferred: dict[str, str]) -> None:
        self._by_gvk: dict[tuple[str, str, str], Resource] = {}
        self._by_gk: dict[tuple[str, str], list[Resource]] = {}
        self._preferred = preferred
        for res in resources:
            self._by_gvk.setdefault((res.group, res.version, res.kind), res)
            self._by_gk.setdefault((res.group, res.kind), []).append(res)

    @classmethod
    def from_aggregated(cls, groups: list[dict[str, Any]]) -> RestMapper:
        """The mapper of an aggregated discovery answer's groups (``/api``'s and ``/apis``')."""
        resources: list[Resource] = []
        preferred: dict[str, str] = {}
        for group in groups:
            name = (group.get("metadata") or {}).get("name") or ""
            versions = group.get("versions") or []
            if versions:
                preferred[name] = versions[0].get("version", "")
            for version in versions:
                for res in version.get("resources") or []:
                    kind = (res.get("responseKind") or {}).get("kind")
                    if not kind or "/" in res.get("resource", ""):
                        continue
                    resources.append(
                        Resource(
                            group=name,
                            version=version.get("version", ""),
                            kind=kind,
                            plural=res["resource"],
                            namespaced=res.get("scope") == "Namespaced",
                        )
                    )
        return cls(resources, preferred)

    def lookup(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        return self._by_gvk.get((group, version, kind))

    def for_group_kind(self, group: str, kind: str) -> Resource | None:
        """The preferred version's resource for a group/kind (for listing ApplySet members)."""
        candidates = self._by_gk.get((group, kind)) or []
        preferred = self._preferred.get(group)
        for res in candidates:
            if res.version == preferred:
                return res
        return candidates[0] if candidates else None


def _load(target: Target, configuration: k8s_client.Configuration) -> None:
    """Fill ``configuration`` from the target's kubeconfig (or service account) with the
    official loaders; raises :class:`TargetError` without quoting the file."""
    try:
        kubeconfig = target.kubeconfig
        if target.in_cluster or (kubeconfig is None and not _default_kubeconfig_exists()):
            # no kubeconfig anywhere: the documented fallback is the pod's service account
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,
                context=target.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except yaml.YAMLError as exc:
        # Not the parser's text: it quotes the file, and a kubeconfig holds tokens.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise TargetError(
            f"target {target.name!r}: the kubeconfig is not valid YAML{where}"
        ) from None
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise TargetError(
            f"target {target.name!r}: cannot load cluster credentials: {exc}"
        ) from exc


def _default_kubeconfig_exists() -> bool:
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return any(Path(p).exists() for p in paths.split(os.pathsep) if p)


class Credentials:
    """The target's ``Configuration`` as the official loader fills it in, and the one place
    that reads the Authorization header the bot sends."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.configuration = k8s_client.Configuration()
        _load(target, self.configuration)
        self.generation = 0  # how many times the credentials were loaded again
        self._lock = threading.Lock()

    def authorization(self) -> str | None:
        """The Authorization header's value now (bearer token, or basic auth as the loader
        encodes it), or None. The loader's refresh hook runs first: an expired exec or OIDC
        token, a rotated service-account token, is renewed here."""
        setting = self.configuration.auth_settings().get("BearerToken")
        value = setting.get("value") if setting else None
        if not value:
            return None
        if "\r" in value or "\n" in value:  # a header must be one line (http.client agrees)
            raise TargetError(f"target {self.target.name!r}: the credentials contain a line break")
        return str(value)

    def renew(self, *, seen: int) -> bool:
        """Load the credentials again after a 401 on a request sent with generation ``seen``
        (unless that was done since); returns whether there are credentials to try."""
        with self._lock:
            if seen != self.generation:
                return True
            try:
                _load(self.target, self.configuration)
            except TargetError as exc:
                log.warning("%s", exc)
                return False
            self.generation += 1
            return True


class _NoDiscoverer:
    """For ``DynamicClient(discoverer=...)``: the cluster engine discovers on its own (see the
    module's docstring for why not with the client's discoverer)."""

    def __init__(self, client: object, cache_file: object) -> None:
        del client, cache_file


@dataclass
class _Attempt:
    """The retry state of one request (:meth:`Cluster._again`)."""

    generation: int  # of the credentials it was last sent with
    retries: int = 0
    renewed: bool = False
    started: float = field(default_factory=time.monotonic)


def encode(body: Any) -> bytes:
    """The JSON body of a request (JSON is valid YAML, so apply patches too)."""
    try:
        return orjson.dumps(body)
    except TypeError:  # keys that are not strings (YAML allows `1: x`): written as strings
        return json.dumps(body, separators=(",", ":")).encode()


def _decode(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise PermanentApiError(
            "the API server answered with something that is not JSON", reason="InvalidAnswer"
        ) from None


class Cluster:
    """A connection to one target, shared by every app of a job on that target. Use as a
    context manager (or call :meth:`close`). Requests may come from any thread; bulk ones
    take turns on the one batch."""

    def __init__(self, target: Target, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.target = target
        self.concurrency = max(1, concurrency)
        self.credentials = Credentials(target)
        configuration = self.credentials.configuration
        # One immediate retry for a kept-alive connection the server closed; _again retries
        # everything else, with backoff.
        configuration.retries = urllib3.Retry(total=1, connect=1, read=0, status=0)
        self.server = str(configuration.host)
        self.api = DynamicClient(  # type: ignore[no-untyped-call]
            k8s_client.ApiClient(configuration), discoverer=_NoDiscoverer
        )
        self._mapper: RestMapper | None = None
        self._mapper_lock = threading.Lock()
        self._stale = False
        self._batch: CurlBatch | None = None
        self._batch_lock = threading.Lock()
        self.requests = 0  # counted for benchmarks and tests of "discovery once per job"

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._batch_lock:
            batch, self._batch = self._batch, None
        if batch is not None:
            batch.close()
        self.api.client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the retry rule ----------------------------------------------------------------------

    def _again(self, error: ApiError, attempt: _Attempt) -> float | None:
        """Whether a request that ended in ``error`` is sent again: None when not, else after
        how many seconds. The one rule of both paths."""
        if error.status == 401 and not attempt.renewed:
            # an exec/OIDC token can lapse, a service-account token rotate, mid-job
            attempt.renewed = True
            if not self.credentials.renew(seen=attempt.generation):
                return None
            attempt.generation = self.credentials.generation
            return 0.0
        if (
            error.reason == CONNECTION_ERROR
            and time.monotonic() - attempt.started >= CONNECT_TIMEOUT
        ):
            return None  # no answer for CONNECT_TIMEOUT: the target is unreachable
        if isinstance(error, TransientApiError) and attempt.retries < RETRIES:
            wait = BACKOFF * 2**attempt.retries if error.retry_after is None else error.retry_after
            attempt.retries += 1
            return min(wait, MAX_RETRY_AFTER)
        return None

    # -- one request at a time: the official client ----------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> Any:
        """One API request through the official client; the decoded JSON answer, or
        :class:`ApiError` once :meth:`_again` gives up."""
        attempt = _Attempt(self.credentials.generation)
        while True:
            try:
                return self._request_once(method, path, query, body, content_type, accept)
            except ApiError as error:
                delay = self._again(error, attempt)
                if delay is None:
                    raise
                time.sleep(delay)

    def _request_once(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: Any,
        content_type: str,
        accept: str,
    ) -> Any:
        self.requests += 1
        try:
            response = self.api.request(
                method,
                path,
                body=body,
                query_params=list(query),
                header_params={"Accept": accept},
                content_type=content_type,
                serialize=False,
                _request_timeout=(CONNECT_TIMEOUT, REQUEST_TIMEOUT),
            )
            data = response.data
        except ApiException as exc:
            if not exc.status:  # the client's wrapping of a TLS failure: no answer
                detail = str(exc.reason or "no answer").replace("\n", ": ")
                raise connection_error(detail, server=self.server) from None
            error = from_status(exc.status, exc.body, http_reason=str(exc.reason or ""))
            if isinstance(error, TransientApiError):
                error.retry_after = _seconds((exc.headers or {}).get("Retry-After"))
            raise error from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise connection_error(exc, server=self.server) from exc
        return _decode(data) if data else None

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """The live object, or None when it does not exist."""
        try:
            found: Obj = self.request("GET", res.path(namespace, name))
        except NotFoundError:
            return None
        return found

    def apply(
        self,
        res: Resource,
        obj: Obj,
        *,
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """Server-side apply of ``obj`` (``dryRun=All`` when ``dry_run``)."""
        meta = obj.get("metadata") or {}
        result: Obj = self.request(
            "PATCH",
            res.path(meta.get("namespace") if res.namespaced else None, str(meta.get("name"))),
            query=_apply_query(field_manager, force, dry_run),
            body=obj,
            content_type=APPLY_PATCH,
        )
        return result

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        """Delete with background propagation; a missing object counts as deleted."""
        with contextlib.suppress(NotFoundError):
            self.request("DELETE", res.path(namespace, name), query=_delete_query(False))

    # -- in bulk: the batch ------------------------------------------------------------------

    def apply_many(
        self,
        objects: Sequence[tuple[Resource, Obj]],
        *,
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
        want: Callable[[int], bool] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Obj | ApiError | None]:
        """Server-side apply of every ``(resource, object)`` as :meth:`apply` does one; in
        input order, each answer, or the :class:`ApiError` the object ended with. None for a
        success when ``want(index)`` is false (the caller does not read that answer, so it is
        not decoded). ``progress(done)`` as objects finish."""
        query = "?" + urlencode(_apply_query(field_manager, force, dry_run))
        calls = []
        for index, (res, obj) in enumerate(objects):
            meta = obj.get("metadata") or {}
            path = res.path(
                meta.get("namespace") if res.namespaced else None, str(meta.get("name"))
            )
            read = want(index) if want is not None else True
            calls.append(_Call("PATCH", path + query, encode(obj), read))
        return self._bulk(calls, APPLY_PATCH, progress=progress)

    def get_many(
        self, refs: Sequence[tuple[Resource, str | None, str]]
    ) -> list[Obj | ApiError | None]:
        """:meth:`get` of every ``(resource, namespace, name)``; in input order, each live
        object, None for each one that does not exist, the :class:`ApiError` of each one that
        could not be read."""
        calls = [
            _Call("GET", res.path(namespace if res.namespaced else None, name))
            for res, namespace, name in refs
        ]
        return [None if isinstance(found, NotFoundError) else found for found in self._bulk(calls)]

    def delete_many(
        self, refs: Sequence[tuple[Resource, str | None, str]], *, dry_run: bool = False
    ) -> list[ApiError | None]:
        """:meth:`delete` of every ``(resource, namespace, name)``; in input order, None for
        each object deleted (or already gone), the :class:`ApiError` of each one that was not."""
        query = "?" + urlencode(_delete_query(dry_run))
        calls = [
            _Call(
                "DELETE", res.path(namespace if res.namespaced else None, name) + query, read=False
            )
            for res, namespace, name in refs
        ]
        return [
            error if isinstance(error, ApiError) and not isinstance(error, NotFoundError) else None
            for error in self._bulk(calls)
        ]

    def list_many(
        self, collections: Sequence[tuple[Resource, str | None, str | None]]
    ) -> list[list[Obj] | ApiError]:
        """Every object of each ``(resource, namespace or None for all, label selector or
        None)``, paging through; in input order, the objects or the :class:`ApiError`."""
        pages: list[list[Obj]] = [[] for _ in collections]
        first_pages: list[str] = []
        for res, namespace, selector in collections:
            query = [("limit", LIST_PAGE)]
            if selector:
                query.append(("labelSelector", selector))
            first_pages.append(f"{res.collection(namespace)}?{urlencode(query)}")

        def turn_page(index: int, _call: _Call, page: Any) -> _Call | None:
            res = collections[index][0]
            for item in page.get("items") or []:
                # list items carry no apiVersion/kind; restore them for the diff and the report
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                pages[index].append(item)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return None
            return _Call("GET", f"{first_pages[index]}&{urlencode([('continue', cont)])}")

        calls = [_Call("GET", path) for path in first_pages]
        answers = self._bulk(calls, follow=turn_page)
        return [
            answer if isinstance(answer, ApiError) else pages[index]
            for index, answer in enumerate(answers)
        ]

    def _bulk(
        self,
        calls: Sequence[_Call],
        content_type: str = JSON,
        *,
        follow: Callable[[int, _Call, Any], _Call | None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Any]:
        """Send ``calls`` through the batch; in input order, each decoded answer (None when
        not read) or the :class:`ApiError` it ended with. ``follow(index, call, answer)`` may
        return the next call for that index (a LIST's next page)."""
        results: list[Any] = [None] * len(calls)
        if not calls:
            return results
        with self._batch_lock:
            if self._batch is None:
                self._batch = CurlBatch(
                    self.credentials.configuration,
                    connections=self.concurrency,
                    timeout=REQUEST_TIMEOUT,
                    connect_timeout=CONNECT_TIMEOUT,
                )
            batch = self._batch
            headers: dict[int, list[str]] = {}

            def headers_now() -> list[str]:
                generation = self.credentials.generation
                if generation not in headers:
                    found = [f"Accept: {JSON}", f"Content-Type: {content_type}", "Expect:"]
                    authorization = self.credentials.authorization()
                    if authorization:
                        found.append(f"Authorization: {authorization}")
                    headers[generation] = found
                return headers[generation]

            def request(index: int, call: _Call) -> Request:
                return Request(
                    key=(index, call),
                    method=call.method,
                    url=batch.base + call.path,
                    headers=headers_now(),
                    body=call.body,
                    want=call.read or follow is not None,
                    attempt=_Attempt(self.credentials.generation),
                )

            finished = 0

            def done(sent: Request, outcome: Answer | Failure) -> None:
                nonlocal finished
                self.requests += 1
                index, call = sent.key
                try:
                    value = self._settle(sent, outcome)
                except ApiError as error:
                    delay = self._again(error, sent.attempt)
                    if delay is not None:
                        sent.headers = headers_now()
                        batch.send(sent, delay=delay)
                        return
                    value = error
                else:
                    following = follow(index, call, value) if follow is not None else None
                    if following is not None:
                        batch.send(request(index, following))
                        return
                results[index] = value
                finished += 1
                if progress is not None:
                    progress(finished)

            batch.run((request(index, call) for index, call in enumerate(calls)), done)
        return results

    def _settle(self, sent: Request, outcome: Answer | Failure) -> Any:
        """The decoded answer of one batched request; raises its :class:`ApiError`."""
        if isinstance(outcome, Failure):
            raise connection_error(outcome, server=self.server)
        if not 200 <= outcome.status <= 299:
            error = from_status(outcome.status, outcome.body)
            if isinstance(error, TransientApiError):
                error.retry_after = outcome.retry_after
            raise error
        return _decode(outcome.body) if sent.want and outcome.body else None

    # -- discovery ---------------------------------------------------------------------------

    @property
    def mapper(self) -> RestMapper:
        with self._mapper_lock:
            if self._mapper is None:
                self._mapper = self._discover()
            return self._mapper

    def invalidate_discovery(self) -> None:
        """Mark the cache stale: a CRD was applied, the next unknown kind re-discovers once."""
        self._stale = True

    def resource(self, api_version: str, kind: str) -> Resource:
        """How ``kind`` is served; raises :class:`UnknownKindError` when it is not."""
        found = self.mapper.lookup(api_version, kind)
        if found is None and self._stale:
            with self._mapper_lock:
                self._stale = False
                self._mapper = self._discover()
            found = self._mapper.lookup(api_version, kind)
        if found is None:
            raise UnknownKindError(
                UNKNOWN_KIND.format(kind=kind, api_version=api_version),
                status=404,
                reason="NotFound",
            )
        return found

    def _discover(self) -> RestMapper:
        try:
            groups = self.request("GET", "/apis", accept=AGGREGATED_ACCEPT)
        except NotFoundError:
            groups = None
        if isinstance(groups, dict) and groups.get("kind") == "APIGroupDiscoveryList":
            try:
                core = self.request("GET", "/api", accept=AGGREGATED_ACCEPT)
            except NotFoundError:
                core = None
            if isinstance(core, dict) and core.get("kind") == "APIGroupDiscoveryList":
                return RestMapper.from_aggregated(
                    [*core.get("items", []), *groups.get("items", [])]
                )
        return self._from_legacy(groups)

    def _from_legacy(self, groups: Any) -> RestMapper:
        if not (isinstance(groups, dict) and groups.get("kind") == "APIGroupList"):
            groups = self.request("GET", "/apis")
        core = self.request("GET", "/api")
        preferred: dict[str, str] = {"": (core.get("versions") or ["v1"])[0]}
        paths: list[tuple[str, str, str]] = [
            ("", v, f"/api/{v}") for v in core.get("versions") or ["v1"]
        ]
        for group in groups.get("groups") or []:
            name = group.get("name", "")
            preferred[name] = (group.get("preferredVersion") or {}).get("version", "")
            for version in group.get("versions") or []:
                paths.append((name, version["version"], f"/apis/{version['groupVersion']}"))
        resources = []
        documents = self._bulk([_Call("GET", path) for _g, _v, path in paths])
        for (group, version, _path), doc in zip(paths, documents, strict=True):
            if not isinstance(doc, dict):
                continue  # one broken aggregated API (metrics-server down) must not hide the others
            resources += [
                Resource(
                    group=group,
                    version=version,
                    kind=res["kind"],
                    plural=res["name"],
                    namespaced=bool(res.get("namespaced")),
                )
                for res in doc.get("resources") or []
                if "/" not in res.get("name", "")
            ]
        return RestMapper(resources, preferred)


@dataclass(frozen=True)
class _Call:
    """One request of a bulk operation: method, path with its query, body, whether the
    answer is read."""

    method: str
    path: str
    body: bytes | None = None
    read: bool = True


def _apply_query(field_manager: str, force: bool, dry_run: bool) -> list[tuple[str, str]]:
    query = [("fieldManager", field_manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return query


def _delete_query(dry_run: bool) -> list[tuple[str, str]]:
    query = [("propagationPolicy", "Background")]
    if dry_run:
        query.append(("dryRun", "All"))
    return query


def _seconds(value: Any) -> float | None:
    """A Retry-After header in seconds (the API server sends whole seconds)."""
    text = str(value or "").strip()
    return float(text) if text.isdigit() else None
