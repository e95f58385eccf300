"""One cluster connection: an ApiClient, a discovery cache and a bounded worker pool.

A :class:`Cluster` is built once per job and target. It reads the kubeconfig (or the in-cluster
service account) with the official ``kubernetes`` client, discovers the served resources once
(the aggregated discovery endpoint when the server offers it, the per-group endpoints otherwise)
and answers "which URL serves this apiVersion/kind, and is it namespaced" from that cache,
re-discovering at most once after a CustomResourceDefinition applied in this job introduces a
new kind.

Requests carry raw JSON bodies and answers (no model classes, no per-call discovery). Single
requests go over one keep-alive connection per worker thread; :meth:`Cluster.apply_many` (the
PATCHes of a deploy or preview phase) sends a whole phase from the calling thread through one
pycurl batch (:mod:`bot.cluster.transport` says why). Both are configured from the official
client's Configuration; ``ApiClient.call_api`` is the fallback for configurations they do not
cover, and :meth:`Cluster.map` carries ``apply_many`` when pycurl is not installed.
"""

from __future__ import annotations

import contextlib
import http
import http.client
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.cluster.errors import (
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
from bot.cluster.transport import (
    CurlBatch,
    Job,
    Transport,
    decode,
    encode,
    encode_query,
    quote_segment,
)
from bot.model import Obj, ObjectRef

T = TypeVar("T")

DEFAULT_CONCURRENCY = 16
RETRIES = 3  # extra attempts after a transient failure
BACKOFF = 0.2  # seconds before the first retry, doubling
MAX_RETRY_AFTER = 5.0  # never sleep longer than this on one retry
JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
# Aggregated discovery (GA in 1.30): one answer for every group, with scope and kind.
AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)


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
            return f"{base}/namespaces/{quote_segment(namespace)}/{self.plural}"
        return f"{base}/{self.plural}"

    def path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection(namespace)}/{quote_segment(name)}"


class RestMapper:
    """apiVersion/kind -> :class:`Resource`, from one discovery pass."""

    def __init__(self, resources: Iterable[Resource], preferred: dict[str, str]) -> None:
        self._by_gvk: dict[tuple[str, str, str], Resource] = {}
        self._by_gk: dict[tuple[str, str], list[Resource]] = {}
        self._preferred = preferred
        for res in resources:
            self._by_gvk.setdefault((res.group, res.version, res.kind), res)
            self._by_gk.setdefault((res.group, res.kind), []).append(res)

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

    def __len__(self) -> int:
        return len(self._by_gvk)


def _build_api_client(target: Target, concurrency: int) -> k8s_client.ApiClient:
    configuration = k8s_client.Configuration()
    try:
        if target.in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            kubeconfig = target.kubeconfig
            if kubeconfig is None and not _default_kubeconfig_exists():
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
    # one keep-alive connection per worker thread, so parallel requests never wait for a socket
    configuration.connection_pool_maxsize = max(concurrency, 4)
    configuration.force_refresh = _throttle_refresh(configuration)
    # one immediate retry for a keep-alive connection the server closed; Cluster.request
    # retries everything else with backoff
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, status=0)
    return k8s_client.ApiClient(configuration)


REFRESH_EVERY = 5.0


def _throttle_refresh(configuration: k8s_client.Configuration) -> Callable[[], None]:
    """The kubeconfig loader re-reads its credentials before every request (a third of the
    client's CPU per request in profiles); doing it at most every few seconds still renews an
    expiring exec/OIDC token in time, as those expire minutes after they are issued.

    Returns a function that makes the next request refresh for sure (after a 401)."""
    hook = configuration.refresh_api_key_hook
    if hook is None:
        return lambda: None
    lock = threading.Lock()
    state: dict[str, Any] = {"hook": hook, "last": -REFRESH_EVERY}

    def throttled(config: k8s_client.Configuration) -> None:
        now = time.monotonic()
        with lock:
            if now - state["last"] < REFRESH_EVERY:
                return
            state["last"] = now
            state["hook"](config)
            # the loader's hook re-installs itself on every call: keep ours in front
            current = config.refresh_api_key_hook
            if current is not None and current is not throttled:
                state["hook"] = current
            config.refresh_api_key_hook = throttled

    configuration.refresh_api_key_hook = throttled

    def force() -> None:
        with lock:
            state["last"] = -REFRESH_EVERY

    return force


def _default_kubeconfig_exists() -> bool:
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return any(Path(p).exists() for p in paths.split(os.pathsep) if p)


_Headers = list[str]  # (``list`` is a method name inside Cluster)


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


def _phrase(status: int) -> str:
    """The standard reason phrase (libcurl does not hand the server's own one over)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class Cluster:
    """A connection to one target, shared by every app of a job on that target.

    Thread-safe: :meth:`map` runs functions on the bounded pool; every request method may be
    called from any thread. Use as a context manager (or call :meth:`close`)."""

    def __init__(
        self,
        target: Target,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        api_client: k8s_client.ApiClient | None = None,
        fast: bool = True,
    ) -> None:
        self.target = target
        self.concurrency = max(1, concurrency)
        self.api_client = api_client or _build_api_client(target, self.concurrency)
        self.server = str(self.api_client.configuration.host)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"kube-{target.name}")
        self._mapper: RestMapper | None = None
        self._mapper_lock = threading.Lock()
        self._stale = False
        self.requests = 0  # counted for benchmarks and tests of "discovery once per job"
        configuration = self.api_client.configuration
        self._transport = (
            Transport(configuration) if fast and Transport.usable(configuration) else None
        )
        self._batching = fast and CurlBatch.usable(configuration)
        self._batch: CurlBatch | None = None
        self._batch_lock = threading.Lock()

    @classmethod
    def connect(
        cls,
        target: Target,
        *,
        concurrency: int | None = None,
    ) -> Cluster:
        return cls(target, concurrency=concurrency or DEFAULT_CONCURRENCY)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._transport is not None:
            self._transport.close()
        # Not a blocking acquire: a batch loop the caller left by an exception (a timeout, a
        # failing progress callback) stays suspended, holding the lock, until it is collected;
        # nothing can drive it any more, so its batch is closed all the same.
        acquired = self._batch_lock.acquire(blocking=False)
        try:
            batch, self._batch = self._batch, None
            if batch is not None:
                batch.close()
        finally:
            if acquired:
                self._batch_lock.release()
        self.api_client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parallelism -------------------------------------------------------------------------

    def map(self, fn: Callable[..., T], items: Iterable[Any]) -> Iterator[T]:
        """``fn(item)`` for every item, at most :attr:`concurrency` at a time; results (or the
        exception ``fn`` raised) come in input order as soon as they are ready.

        A few long-lived tasks on the pool each take the next item until none is left, rather
        than one task per item: a Future per object was a seventh of the engine's CPU. The
        calling thread takes items too while it waits, so a ``map`` inside a ``map`` cannot
        starve for pool threads."""
        work = list(items)
        total = len(work)
        if not total:
            return
        source = iter(enumerate(work))
        take = threading.Lock()
        finished: queue.SimpleQueue[tuple[int, bool, Any]] = queue.SimpleQueue()

        def next_item() -> tuple[int, Any] | None:
            with take:
                return next(source, None)

        def run(index: int, item: Any) -> tuple[int, bool, Any]:
            try:
                return index, True, fn(item)
            except BaseException as exc:  # handed to the caller at this item's turn
                return index, False, exc

        def worker() -> None:
            while (taken := next_item()) is not None:
                finished.put(run(*taken))

        for _ in range(min(self.concurrency - 1, total - 1)):
            self._pool.submit(worker)
        ready: dict[int, tuple[bool, Any]] = {}
        for wanted in range(total):
            while wanted not in ready:
                taken = next_item()
                index, ok, value = run(*taken) if taken is not None else finished.get()
                ready[index] = (ok, value)
            ok, value = ready.pop(wanted)
            if not ok:
                raise value
            yield value

    # -- raw requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | None = 60,
    ) -> Any:
        """One API request; returns the decoded JSON answer or raises :class:`ApiError`.

        ``body`` is a dict: the REST layer encodes it as JSON (valid YAML for apply patches).
        Every request the engines make is idempotent (GET, LIST, apply, DELETE), so overload
        answers (429, 5xx) and dropped connections are retried a few times with backoff,
        honouring Retry-After up to a few seconds."""
        refreshed, attempt = False, 0
        while True:
            try:
                return self._request_once(method, path, query, body, content_type, accept, timeout)
            except PermanentApiError as exc:
                force = getattr(self.api_client.configuration, "force_refresh", None)
                if exc.status != 401 or refreshed or force is None:
                    raise
                # an expiring token may have lapsed between two throttled refreshes
                refreshed = True
                force()
            except TransientApiError as exc:
                if attempt == RETRIES:
                    raise
                wait = BACKOFF * 2**attempt if exc.retry_after is None else exc.retry_after
                time.sleep(min(wait, MAX_RETRY_AFTER))
                attempt += 1

    def _request_once(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        accept: str,
        timeout: float | None,
    ) -> Any:
        self.requests += 1
        if self._transport is not None:
            try:
                status, reason, data, headers = self._transport.request(
                    method,
                    path,
                    query=query,
                    body=encode(body),
                    headers={"Accept": accept, "Content-Type": content_type},
                )
            except (OSError, http.client.HTTPException) as exc:
                raise connection_error(exc, server=self.server) from exc
            retry_after = headers.get("Retry-After") or headers.get("retry-after")
        else:
            status, reason, data, retry_after = self._request_generic(
                method, path, query, body, content_type, accept, timeout
            )
        if not 200 <= status <= 299:
            error = from_status(status, data, http_reason=reason)
            if isinstance(error, TransientApiError) and retry_after and retry_after.isdigit():
                error.retry_after = float(retry_after)
            raise error
        if not data:
            return None
        return decode(data)

    def _request_generic(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        accept: str,
        timeout: float | None,
    ) -> tuple[int, str, bytes, str | None]:
        """The official client's REST path (urllib3), for configurations the lean transport
        does not cover (proxies, SNI overrides, basic auth)."""
        headers = {"Accept": accept, "Content-Type": content_type}
        _method, url, headers, _body, _post = self.api_client.param_serialize(
            method,
            path,
            query_params=query or None,
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(
                method, url, header_params=headers, body=body, _request_timeout=timeout
            )
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:  # the REST layer's wrapping of TLS errors
            raise TransientApiError(str(exc.reason), status=0, reason="ConnectionError") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise connection_error(exc, server=self.server) from exc
        retry_after = response.getheader("Retry-After")  # type: ignore[no-untyped-call]
        return response.status, str(response.reason or ""), data, retry_after

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
            aggregated = self.request("GET", "/apis", accept=AGGREGATED_ACCEPT)
        except NotFoundError:
            aggregated = None
        core = None
        if isinstance(aggregated, dict) and aggregated.get("kind") == "APIGroupDiscoveryList":
            try:
                core = self.request("GET", "/api", accept=AGGREGATED_ACCEPT)
            except NotFoundError:
                core = None
            if isinstance(core, dict) and core.get("kind") == "APIGroupDiscoveryList":
                return self._from_aggregated([*core.get("items", []), *aggregated.get("items", [])])
        return self._from_legacy(aggregated)

    @staticmethod
    def _from_aggregated(groups: list[dict[str, Any]]) -> RestMapper:
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
        return RestMapper(resources, preferred)

    def _from_legacy(self, groups_doc: Any) -> RestMapper:
        if not (isinstance(groups_doc, dict) and groups_doc.get("kind") == "APIGroupList"):
            groups_doc = self.request("GET", "/apis")
        core = self.request("GET", "/api")
        preferred: dict[str, str] = {"": (core.get("versions") or ["v1"])[0]}
        paths: list[tuple[str, str, str]] = [
            ("", v, f"/api/{v}") for v in core.get("versions") or ["v1"]
        ]
        for group in groups_doc.get("groups") or []:
            name = group.get("name", "")
            preferred[name] = (group.get("preferredVersion") or {}).get("version", "")
            for version in group.get("versions") or []:
                paths.append((name, version["version"], f"/apis/{version['groupVersion']}"))

        def fetch(item: tuple[str, str, str]) -> list[Resource]:
            group, version, path = item
            try:
                doc = self.request("GET", path)
            except ApiError:
                # one broken aggregated API (metrics-server down) must not hide the others
                return []
            return [
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

        resources = [res for batch in self.map(fetch, paths) for res in batch]
        return RestMapper(resources, preferred)

    # -- object operations -------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """The live object, or None when it does not exist."""
        try:
            found: Obj = self.request("GET", res.path(namespace, name))
        except NotFoundError:
            return None
        return found

    def list(
        self,
        res: Resource,
        namespace: str | None,
        *,
        selector: str | None = None,
    ) -> list[Obj]:
        """Every object of a resource (in a namespace, or everywhere), paging through."""
        items: list[Obj] = []
        query: list[tuple[str, str]] = [("limit", "500")]
        if selector:
            query.append(("labelSelector", selector))
        cont = ""
        while True:
            page_query = [*query, ("continue", cont)] if cont else query
            page = self.request("GET", res.collection(namespace), query=page_query)
            for item in page.get("items") or []:
                # list items carry no apiVersion/kind; restore them for the diff and the report
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                items.append(item)
            cont = (page.get("metadata") or {}).get("continue") or ""
            if not cont:
                return items

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

    def apply_many(
        self,
        jobs: Sequence[tuple[Resource, Obj]],
        *,
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
        want: Callable[[int], bool] | None = None,
    ) -> Iterator[Obj | ApiError | None]:
        """Server-side apply of every ``(resource, object)`` as :meth:`apply` does one, at
        most :attr:`concurrency` at a time, retried as :meth:`request` retries. Yields, in
        input order, each answer, or the :class:`ApiError` the object ended with; None for a
        success when ``want(index)`` is false (the caller does not read that answer, so it is
        not decoded).

        With pycurl installed, the calling thread drives every request through one
        :class:`~bot.cluster.transport.CurlBatch` (no worker threads); otherwise the objects
        go through :meth:`map`."""
        query = encode_query(_apply_query(field_manager, force, dry_run))

        def one(job: tuple[Resource, Obj]) -> Obj | None:
            res, obj = job
            return self.apply(res, obj, field_manager=field_manager, force=force, dry_run=dry_run)

        def target(job: tuple[Resource, Obj]) -> tuple[Resource, str | None, str, bytes | None]:
            res, obj = job
            meta = obj.get("metadata") or {}
            namespace = meta.get("namespace") if res.namespaced else None
            return res, namespace, str(meta.get("name")), encode(obj)

        yield from self._many(jobs, "PATCH", query, APPLY_PATCH, target, one, want)

    def get_many(
        self, jobs: Sequence[tuple[Resource, str | None, str]]
    ) -> Iterator[Obj | ApiError | None]:
        """:meth:`get` of every ``(resource, namespace, name)``, as :meth:`apply_many` sends
        its objects; yields, in input order, each live object, None for each one that does
        not exist, and the :class:`ApiError` of each one that could not be read."""

        def target(
            job: tuple[Resource, str | None, str],
        ) -> tuple[Resource, str | None, str, bytes | None]:
            res, namespace, name = job
            return res, namespace if res.namespaced else None, name, None

        for outcome in self._many(jobs, "GET", "", JSON, target, lambda job: self.get(*job), None):
            yield None if isinstance(outcome, NotFoundError) else outcome

    def delete_many(
        self, jobs: Sequence[tuple[Resource, str | None, str]], *, dry_run: bool = False
    ) -> Iterator[ApiError | None]:
        """:meth:`delete` of every ``(resource, namespace, name)``, as :meth:`apply_many`
        sends its objects; yields, in input order, None for each object deleted (or already
        gone) and the :class:`ApiError` of each one that was not."""
        query = encode_query(_delete_query(dry_run))

        def one(job: tuple[Resource, str | None, str]) -> None:
            self.delete(*job, dry_run=dry_run)

        def target(
            job: tuple[Resource, str | None, str],
        ) -> tuple[Resource, str | None, str, bytes | None]:
            res, namespace, name = job
            return res, namespace if res.namespaced else None, name, None

        for outcome in self._many(jobs, "DELETE", query, JSON, target, one, lambda _n: False):
            # a missing object counts as deleted, as in delete()
            failed = isinstance(outcome, ApiError) and not isinstance(outcome, NotFoundError)
            yield outcome if failed else None  # type: ignore[misc]

    def _many(
        self,
        jobs: Sequence[T],
        method: str,
        query: str,
        content_type: str,
        target: Callable[[T], tuple[Resource, str | None, str, bytes | None]],
        one: Callable[[T], Obj | None],
        want: Callable[[int], bool] | None,
    ) -> Iterator[Obj | ApiError | None]:
        """``method`` on the object each job names (``target``: resource, namespace, name,
        body), through the cluster's batch; through ``one`` per job on :meth:`map` when
        there is no batch."""
        if not jobs:
            return
        batch, shared = self._take_batch()
        if batch is None:

            def guarded(job: T) -> Obj | ApiError | None:
                try:
                    return one(job)
                except ApiError as exc:
                    return exc

            yield from self.map(guarded, jobs)
            return
        try:
            yield from self._run_batch(batch, jobs, method, query, content_type, target, want)
        finally:
            if shared:
                self._batch_lock.release()
            else:
                batch.close()

    def _take_batch(self) -> tuple[CurlBatch | None, bool]:
        """The cluster's batch (kept, with its connections, for the next phase) when no
        other thread drives it; else a batch of its own for this call (True: shared)."""
        if not self._batching:
            return None, False
        if self._batch_lock.acquire(blocking=False):
            if self._batch is None:
                self._batch = CurlBatch(self.api_client.configuration, connections=self.concurrency)
            return self._batch, True
        return CurlBatch(self.api_client.configuration, connections=self.concurrency), False

    def _batch_headers(self, content_type: str) -> _Headers:
        token = self.api_client.configuration.get_api_key_with_prefix("BearerToken")
        if token and ("\r" in token or "\n" in token):  # as http.client refuses it
            raise ValueError("Invalid header value: it contains a line break")
        headers = [f"Accept: {JSON}", f"Content-Type: {content_type}", "Expect:"]
        if token:
            headers.append(f"Authorization: {token}")
        return headers

    def _run_batch(
        self,
        batch: CurlBatch,
        jobs: Sequence[T],
        method: str,
        query: str,
        content_type: str,
        target: Callable[[T], tuple[Resource, str | None, str, bytes | None]],
        want: Callable[[int], bool] | None,
    ) -> Iterator[Obj | ApiError | None]:
        base = str(self.api_client.configuration.host).rstrip("/")
        headers = self._batch_headers(content_type)
        renewed = time.monotonic()

        def source() -> Iterator[Job]:
            nonlocal headers, renewed
            # a phase's objects share a few collections: each URL prefix is built once
            prefixes: dict[tuple[int, str | None], str] = {}
            for index, job in enumerate(jobs):
                if time.monotonic() - renewed > REFRESH_EVERY:  # the token hook's own pace
                    headers, renewed = self._batch_headers(content_type), time.monotonic()
                res, namespace, name, body = target(job)
                prefix = prefixes.get((id(res), namespace))
                if prefix is None:
                    prefix = prefixes[(id(res), namespace)] = base + res.collection(namespace)
                url = (
                    f"{prefix}/{quote_segment(name)}?{query}"
                    if query
                    else f"{prefix}/{quote_segment(name)}"
                )
                yield Job(
                    index,
                    method,
                    url,
                    body,
                    headers,
                    want=want(index) if want is not None else True,
                )

        force_refresh = getattr(self.api_client.configuration, "force_refresh", None)
        ready: dict[int, Obj | ApiError | None] = {}
        wanted = 0
        for job, answer in batch.stream(source()):
            self.requests += 1
            error: ApiError | None = None
            if isinstance(answer, OSError | http.client.HTTPException):
                error = connection_error(answer, server=self.server)
            else:
                status, data, retry_after = answer
                if 200 <= status <= 299:
                    ready[job.index] = decode(data) if job.want and data else None
                else:
                    error = from_status(status, data, http_reason=_phrase(status))
                    if isinstance(error, TransientApiError):
                        error.retry_after = retry_after
            if error is not None:
                if error.status == 401 and not job.refreshed and force_refresh is not None:
                    # an expiring token may have lapsed between two throttled refreshes
                    job.refreshed = True
                    force_refresh()
                    headers, renewed = self._batch_headers(content_type), time.monotonic()
                    job.headers = headers
                    batch.later(job, 0)
                    continue
                if isinstance(error, TransientApiError) and job.attempts < RETRIES:
                    wait = (
                        BACKOFF * 2**job.attempts
                        if error.retry_after is None
                        else error.retry_after
                    )
                    job.attempts += 1
                    batch.later(job, min(wait, MAX_RETRY_AFTER))
                    continue
                ready[job.index] = error
            while wanted in ready:
                yield ready.pop(wanted)
                wanted += 1

    def delete(
        self, res: Resource, namespace: str | None, name: str, *, dry_run: bool = False
    ) -> None:
        """Delete with background propagation; a missing object counts as deleted."""
        with contextlib.suppress(NotFoundError):
            self.request("DELETE", res.path(namespace, name), query=_delete_query(dry_run))

    def ref_of(self, obj: Obj) -> ObjectRef:
        return ObjectRef.of(obj)
