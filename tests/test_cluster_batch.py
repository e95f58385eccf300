"""Tests of ``Cluster.apply_many`` and the pycurl batch under it: answers in input order, the
same results as one request per thread, TLS verified against the kubeconfig's CA, per-object
errors, retries of 429 (with Retry-After) and dropped connections, 401 token refresh, and the
adaptive window of requests in flight."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

import bot.cluster.client as client_mod
from bot.cluster.client import Cluster, Resource, _throttle_refresh
from bot.cluster.errors import ApiError, NotFoundError, TransientApiError
from bot.cluster.targets import Target
from bot.cluster.transport import START_WINDOW, CurlBatch, Job
from tests.scripted_http import ScriptedServer

pytest.importorskip("pycurl")

CONFIGMAPS = Resource(
    group="", version="v1", kind="ConfigMap", plural="configmaps", namespaced=True
)


def configmap(name: str, namespace: str = "default", **data: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


# -- against the emulator (TLS, real server-side apply) ----------------------------------------


@pytest.fixture
def cluster(kubeconfig: str) -> Iterator[Cluster]:
    with Cluster(Target(name="t", kubeconfig=Path(kubeconfig)), concurrency=4) as c:
        yield c


def test_batch_answers_in_input_order_like_one_request_per_thread(
    cluster: Cluster, kubeconfig: str
) -> None:
    assert cluster._batching, "pycurl is installed: the batch path must be the one tested"
    objs = [configmap(f"cm-{i:03d}", index=str(i)) for i in range(60)]
    objs[7]["metadata"]["namespace"] = "missing"  # the server refuses this one object
    jobs = [(CONFIGMAPS, o) for o in objs]
    got = list(cluster.apply_many(jobs, field_manager="t", want=lambda n: n % 2 == 0))
    assert len(got) == len(objs)
    assert isinstance(got[7], NotFoundError)
    for n, answer in enumerate(got):
        if n == 7:
            continue
        if n % 2:
            assert answer is None  # not wanted: not decoded
        else:
            assert isinstance(answer, dict)
            assert answer["metadata"]["name"] == f"cm-{n:03d}"
            assert answer["data"] == {"index": str(n)}

    # The same objects through the threaded path (no pycurl) give the same answers.
    with Cluster(Target(name="t", kubeconfig=Path(kubeconfig)), concurrency=4) as threaded:
        threaded._batching = False
        again = list(threaded.apply_many(jobs, field_manager="t", dry_run=True))
    ours = list(cluster.apply_many(jobs, field_manager="t", dry_run=True))
    assert [type(a) for a in again] == [type(a) for a in ours]
    for a, b in zip(again, ours, strict=True):
        if isinstance(a, ApiError):
            assert isinstance(b, ApiError)
            assert (a.status, a.reason, a.message) == (b.status, b.reason, b.message)
        else:
            assert isinstance(a, dict) and isinstance(b, dict)
            assert a["data"] == b["data"] and a["metadata"]["name"] == b["metadata"]["name"]


def test_batched_deletes_count_missing_objects_as_deleted(
    cluster: Cluster, kubeconfig: str
) -> None:
    names = [f"gone-{i}" for i in range(10)]
    list(cluster.apply_many([(CONFIGMAPS, configmap(n)) for n in names], field_manager="t"))
    jobs = [(CONFIGMAPS, "default", n) for n in [*names, "never-existed"]]
    assert list(cluster.delete_many(jobs, dry_run=True)) == [None] * len(jobs)
    assert all(cluster.get(CONFIGMAPS, "default", n) is not None for n in names)
    assert list(cluster.delete_many(jobs)) == [None] * len(jobs)
    assert all(cluster.get(CONFIGMAPS, "default", n) is None for n in names)
    # a refused delete is that object's error, in its place; the threaded path agrees
    readonly = Target(name="t", kubeconfig=Path(kubeconfig), context="emulator-readonly")
    with Cluster(readonly, concurrency=2) as limited:
        list(cluster.apply_many([(CONFIGMAPS, configmap("kept"))], field_manager="t"))
        batched = list(limited.delete_many([(CONFIGMAPS, "default", "kept")]))
        limited._batching = False
        threaded = list(limited.delete_many([(CONFIGMAPS, "default", "kept")]))
    for got in (batched, threaded):
        assert isinstance(got[0], ApiError) and got[0].status == 403
    assert cluster.get(CONFIGMAPS, "default", "kept") is not None


def test_batched_gets_answer_objects_none_for_missing_and_errors_in_place(
    cluster: Cluster, kubeconfig: str
) -> None:
    here = [(CONFIGMAPS, configmap(f"here-{i}")) for i in range(5)]
    list(cluster.apply_many(here, field_manager="t"))
    jobs = [(CONFIGMAPS, "default", f"here-{i}") for i in range(5)]
    jobs.insert(2, (CONFIGMAPS, "default", "absent"))
    got = list(cluster.get_many(jobs))
    assert got[2] is None
    assert [o["metadata"]["name"] for o in got if isinstance(o, dict)] == [
        f"here-{i}" for i in range(5)
    ]
    web = Target(name="t", kubeconfig=Path(kubeconfig), context="emulator-namespace-web")
    with Cluster(web, concurrency=2) as limited:
        batched = list(limited.get_many(jobs[:1]))
        limited._batching = False
        threaded = list(limited.get_many(jobs[:1]))
    for answer in (batched[0], threaded[0]):
        assert isinstance(answer, ApiError) and answer.status == 403


def test_batch_verifies_tls_against_the_kubeconfig_ca(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF", 0.001)
    [ok] = cluster.apply_many([(CONFIGMAPS, configmap("ok"))], field_manager="t")
    assert isinstance(ok, dict)
    configuration = cluster.api_client.configuration
    monkeypatch.setattr(configuration, "ssl_ca_cert", None)  # the system CAs did not sign it
    untrusted = CurlBatch(configuration, connections=1)
    try:
        job = Job(0, "GET", f"{configuration.host}/version", None, [])
        [(_job, outcome)] = list(untrusted.stream([job]))
    finally:
        untrusted.close()
    assert isinstance(outcome, OSError)
    assert "certificate" in str(outcome).lower()
    monkeypatch.setattr(configuration, "verify_ssl", False)  # the kubeconfig's insecure flag
    insecure = CurlBatch(configuration, connections=1)
    try:
        job = Job(0, "GET", f"{configuration.host}/version", None, [])
        [(_job, outcome)] = list(insecure.stream([job]))
    finally:
        insecure.close()
    assert not isinstance(outcome, BaseException) and outcome[0] == 200


def test_a_url_with_control_characters_is_refused_before_sending(cluster: Cluster) -> None:
    import http.client

    batch = CurlBatch(cluster.api_client.configuration, connections=1)
    try:
        job = Job(0, "GET", f"{cluster.api_client.configuration.host}/api/v1/x y", None, [])
        [(_job, outcome)] = list(batch.stream([job]))
    finally:
        batch.close()
    assert isinstance(outcome, http.client.InvalidURL)


# -- against a scripted server -----------------------------------------------------------------


def answer(status: str, body: bytes = b"{}", *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *extra]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def scripted_cluster(server: ScriptedServer, token: str = "first") -> Cluster:
    configuration = k8s_client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.port}"
    configuration.api_key = {"BearerToken": token}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return Cluster(
        Target(name="t", kubeconfig=Path("unused")),
        concurrency=1,
        api_client=k8s_client.ApiClient(configuration),
    )


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits shrunk (backoff 1 ms, Retry-After capped at 50 ms); returns the waits."""
    monkeypatch.setattr(client_mod, "BACKOFF", 0.001)
    monkeypatch.setattr(client_mod, "MAX_RETRY_AFTER", 0.05)
    waits: list[float] = []
    later = CurlBatch.later

    def spy(self: CurlBatch, job: Job, delay: float) -> None:
        waits.append(delay)
        later(self, job, delay)

    monkeypatch.setattr(CurlBatch, "later", spy)
    return waits


def test_request_bytes_of_a_batched_apply() -> None:
    server = ScriptedServer([answer("201 Created", b'{"kind":"ConfigMap"}')])
    try:
        with scripted_cluster(server) as cluster:
            obj = configmap("a b", "ns", k="v")
            [got] = cluster.apply_many([(CONFIGMAPS, obj)], field_manager="bot", force=True)
    finally:
        server.close()
    assert got == {"kind": "ConfigMap"}
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == (
        b"PATCH /api/v1/namespaces/ns/configmaps/a%20b?fieldManager=bot&force=true HTTP/1.1"
    )
    assert b"Content-Type: application/apply-patch+yaml" in lines
    assert b"Accept: application/json" in lines
    assert b"Authorization: Bearer first" in lines
    assert not any(line.lower().startswith(b"expect") for line in lines)
    assert (
        body
        == b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a b","namespace":"ns"},"data":{"k":"v"}}'
    )


def test_429_is_retried_after_the_servers_retry_after(fast_retries: list[float]) -> None:
    server = ScriptedServer(
        [
            answer(
                "429 Too Many Requests", b'{"kind":"Status","message":"slow"}', "Retry-After: 2"
            ),
            answer("503 Service Unavailable", b"down"),
            answer("200 OK", b'{"kind":"ConfigMap","metadata":{"name":"x"}}'),
        ]
    )
    try:
        with scripted_cluster(server) as cluster:
            [got] = cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t")
    finally:
        server.close()
    assert got == {"kind": "ConfigMap", "metadata": {"name": "x"}}
    assert len(server.requests) == 3
    # Retry-After (2 s, capped at 50 ms here) for the 429; the doubling backoff for the 503
    assert fast_retries == [0.05, 0.002]


def test_overload_that_lasts_ends_as_that_objects_transient_error(
    fast_retries: list[float],
) -> None:
    server = ScriptedServer(
        lambda request: (
            answer("500 Internal Server Error", b"boom")
            if b"/configmaps/x?" in request
            else answer("200 OK", b'{"kind":"ConfigMap"}')
        )
    )
    try:
        with scripted_cluster(server) as cluster:
            got = list(
                cluster.apply_many(
                    [(CONFIGMAPS, configmap("x")), (CONFIGMAPS, configmap("y"))], field_manager="t"
                )
            )
    finally:
        server.close()
    assert isinstance(got[0], TransientApiError) and got[0].status == 500
    assert got[1] == {"kind": "ConfigMap"}  # one object's failure never stops the others
    assert len(fast_retries) == client_mod.RETRIES
    assert sum(b"/configmaps/x?" in r for r in server.requests) == 1 + client_mod.RETRIES


def test_dropped_connection_is_retried_on_a_new_one(fast_retries: list[float]) -> None:
    server = ScriptedServer([None, answer("200 OK", b'{"kind":"ConfigMap"}')])
    try:
        with scripted_cluster(server) as cluster:
            [got] = cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t")
    finally:
        server.close()
    assert got == {"kind": "ConfigMap"}
    assert len(server.requests) == 2 and server.connections == 2


def test_unreachable_server_is_a_transient_error_per_object(fast_retries: list[float]) -> None:
    server = ScriptedServer([])
    server.close()  # nobody listens on that port any more
    with scripted_cluster(server) as cluster:
        got = list(cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t"))
    assert isinstance(got[0], TransientApiError)
    assert "cannot reach the API server" in got[0].message


def test_401_refreshes_the_token_once_and_retries() -> None:
    server = ScriptedServer(
        [
            answer("401 Unauthorized", b'{"kind":"Status","reason":"Unauthorized"}'),
            answer("200 OK", b'{"kind":"ConfigMap"}'),
            answer("401 Unauthorized", b'{"kind":"Status","reason":"Unauthorized"}'),
            answer("401 Unauthorized", b'{"kind":"Status","reason":"Unauthorized"}'),
        ]
    )
    tokens = iter(["second", "third", "fourth"])
    refreshed: list[str] = []
    try:
        with scripted_cluster(server) as cluster:
            configuration = cluster.api_client.configuration

            def hook(config: k8s_client.Configuration) -> None:
                # what the kubeconfig loader's exec/OIDC refresh does: a new token
                config.api_key["BearerToken"] = next(tokens)
                refreshed.append(config.api_key["BearerToken"])

            configuration.refresh_api_key_hook = hook
            configuration.force_refresh = _throttle_refresh(configuration)
            [got] = cluster.apply_many([(CONFIGMAPS, configmap("x"))], field_manager="t")
            assert got == {"kind": "ConfigMap"}
            # a second 401 on the refreshed token is final
            [final] = cluster.apply_many([(CONFIGMAPS, configmap("y"))], field_manager="t")
            assert isinstance(final, ApiError) and final.status == 401
    finally:
        server.close()
    auth = [
        line
        for request in server.requests
        for line in request.split(b"\r\n")
        if line.startswith(b"Authorization")
    ]
    # the first request ran on the first refresh's token, the retry on the forced one
    assert auth[0] == f"Authorization: Bearer {refreshed[0]}".encode()
    assert auth[1] == f"Authorization: Bearer {refreshed[1]}".encode()
    assert len(server.requests) == 4


# -- the adaptive window -----------------------------------------------------------------------


def test_window_grows_while_round_trips_stay_fast_and_shrinks_when_they_queue() -> None:
    configuration = k8s_client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    batch = CurlBatch(configuration, connections=16)
    try:
        assert batch.window == START_WINDOW
        # latency-bound: every answer as fast as the fastest -> grows to the bound
        for _ in range(200):
            batch._observe(0.005)
        assert batch.window == 16
        # server-bound: round trips grow with the window -> shrinks to a few queued requests
        for _ in range(2000):
            batch._observe(0.005 * batch.window)
        assert 2 <= batch.window <= 4
        # round trips far above the fastest: still a few in flight, never fewer than 2
        for _ in range(200):
            batch._observe(1.0)
        assert 2 <= batch.window <= 4
    finally:
        batch.close()
    single = CurlBatch(configuration, connections=1)
    try:
        for _ in range(50):
            single._observe(0.001)
        assert single.window == 1  # GITOPS_KUBE_CONCURRENCY=1 means one at a time
    finally:
        single.close()


@pytest.mark.timeout(20)
def test_closing_after_an_exception_mid_batch_does_not_hang() -> None:
    """A loop over a batch's answers left by an exception (Celery's soft time limit, a failing
    progress callback) leaves the batch loop suspended; closing the cluster must still end,
    and the error must reach the caller."""
    server = ScriptedServer(lambda request: answer("200 OK", b'{"kind":"ConfigMap"}'))
    try:
        with pytest.raises(RuntimeError, match="mid-batch"), scripted_cluster(server) as cluster:
            answers = cluster.apply_many(
                [(CONFIGMAPS, configmap(f"c{i}")) for i in range(5)], field_manager="bot"
            )
            for n, _answer in enumerate(answers):
                if n == 1:
                    raise RuntimeError("mid-batch")
    finally:
        server.close()
