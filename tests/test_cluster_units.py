"""Unit tests of the cluster engine's pure parts: targets, ApplySet ids and parents, error
classification, apply ordering and health judgement (no server needed)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from bot.cluster.applyset import (
    COMMIT_ANNOTATION,
    GROUP_KINDS_ANNOTATION,
    ID_LABEL,
    NAMESPACES_ANNOTATION,
    PART_OF_LABEL,
    TOOLING_ANNOTATION,
    ApplySet,
    applyset_id,
    group_kind,
    split_group_kind,
)
from bot.cluster.errors import (
    ApplySetError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotAllowedError,
    NotFoundError,
    TargetError,
    TransientApiError,
    from_status,
)
from bot.cluster.health import judge, needs_wait
from bot.cluster.plan import PHASE_CLUSTER, PHASE_FOUNDATION, PHASE_NAMESPACED, phase_of
from bot.cluster.targets import DEFAULT_TARGET, Targets
from bot.errors import PermanentError, TransientError
from bot.model import Health

# -- targets ----------------------------------------------------------------------------------


def test_clusters_file_parses_targets_and_resolves_relative_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text(
        "targets:\n"
        "  production:\n"
        "    kubeconfig: prod.kubeconfig\n"
        "    context: prod-admin\n"
        "    namespaces: [web, api]\n"
        "  staging:\n"
        "    in_cluster: true\n"
    )
    targets = Targets.from_settings(path)
    prod = targets["production"]
    assert prod.kubeconfig == tmp_path / "prod.kubeconfig"
    assert prod.context == "prod-admin"
    assert prod.namespaces == frozenset({"web", "api"})
    assert prod.cluster_scoped is False  # an allowlist implies no cluster-scoped objects
    assert targets["staging"].in_cluster and targets["staging"].cluster_scoped


def test_unset_clusters_file_means_one_default_target() -> None:
    targets = Targets.from_settings(None)
    assert list(targets) == [DEFAULT_TARGET]
    assert targets[DEFAULT_TARGET].kubeconfig is None


def test_unknown_target_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(TargetError, match=r"unknown target 'prod'.*default"):
        Targets.default()["prod"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("targets: {}\n", "should be non-empty"),
        ("targets:\n  a:\n    namespace: [x]\n", "Additional properties"),
        ("targets:\n  a:\n    namespaces: web\n", "targets.a.namespaces"),
        ("targets:\n  a:\n    in_cluster: true\n    kubeconfig: x\n", "mutually exclusive"),
        ("nope: 1\n", "'targets' is a required property"),
        ("targets: [\n", "not valid YAML"),
        ("targets:\n  a:\n    repositories: acme/*\n", "targets.a.repositories"),
        ("targets:\n  a:\n    repositories: [/acme]\n", "does not match"),
    ],
)
def test_invalid_clusters_file_says_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text(text)
    with pytest.raises(TargetError) as info:
        Targets.from_settings(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_allowlist_refuses_other_namespaces_and_cluster_scoped_objects(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("targets:\n  t:\n    namespaces: [web]\n")
    target = Targets.from_settings(path)["t"]
    target.check(kind="ConfigMap", namespace="web", name="x", label="ConfigMap web/x")
    target.check(kind="Namespace", namespace=None, name="web", label="Namespace web")
    with pytest.raises(NotAllowedError, match="namespace 'db' is not allowed"):
        target.check(kind="ConfigMap", namespace="db", name="x", label="ConfigMap db/x")
    with pytest.raises(NotAllowedError, match="namespace 'db' is not allowed"):
        target.check(kind="Namespace", namespace=None, name="db", label="Namespace db")
    with pytest.raises(NotAllowedError, match="cluster-scoped"):
        target.check(kind="ClusterRole", namespace=None, name="r", label="ClusterRole r")


def test_a_target_may_be_limited_to_some_repositories(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "targets:\n  prod:\n    repositories: [acme/prod-*, Acme/Platform]\n  dev: {}\n"
    )
    targets = Targets.from_settings(path)
    prod = targets["prod"]
    assert prod.repository_refusal("acme/prod-web") is None
    assert prod.repository_refusal("ACME/platform") is None  # names are case-insensitive
    assert prod.repository_refusal("acme/group/prod-web") is not None  # no match: prefix differs
    assert prod.repository_refusal("acme/web") == (
        "repository acme/web may not use target 'prod': the clusters file allows only "
        "acme/prod-*, Acme/Platform there"
    )
    assert "prod" in targets and "staging" not in targets  # no UnknownTargetError from `in`
    assert targets["dev"].repositories is None
    assert targets["dev"].repository_refusal("anyone/anything") is None


# -- ApplySet ---------------------------------------------------------------------------------


def test_applyset_id_is_kubectls_formula() -> None:
    digest = hashlib.sha256(b"gitops-bot.web.web.Secret.").digest()
    expected = "applyset-" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "-v1"
    assert applyset_id(name="gitops-bot.web", namespace="web") == expected
    assert ApplySet.for_app("web", "web").id == expected
    assert "=" not in expected and "+" not in expected and "/" not in expected


def test_group_kind_strings_match_kubectl() -> None:
    assert group_kind("apps/v1", "Deployment") == "Deployment.apps"
    assert group_kind("v1", "ConfigMap") == "ConfigMap"
    assert split_group_kind("Certificate.cert-manager.io") == ("cert-manager.io", "Certificate")
    assert split_group_kind("Secret") == ("", "Secret")


def test_parent_object_carries_kep_3659_metadata() -> None:
    aset = ApplySet.for_app("web", "web", tooling="gitops-bot/v1")
    parent = aset.parent_object(
        group_kinds={"Deployment.apps", "ConfigMap", "Namespace"}, namespaces={"web", "other"}
    )
    meta = parent["metadata"]
    assert parent["kind"] == "Secret" and meta["namespace"] == "web"
    assert meta["labels"] == {ID_LABEL: aset.id}
    assert meta["annotations"][TOOLING_ANNOTATION] == "gitops-bot/v1"
    assert meta["annotations"][GROUP_KINDS_ANNOTATION] == "ConfigMap,Deployment.apps,Namespace"
    assert meta["annotations"][NAMESPACES_ANNOTATION] == "other"  # the parent's own is implied
    assert aset.parent_field_manager() == "gitops-bot-applyset"


def test_member_label_added_and_foreign_label_refused() -> None:
    aset = ApplySet.for_app("web", "web")
    obj: dict[str, Any] = {"kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}}
    labelled = aset.label_member(obj, ref="ConfigMap web/a")
    assert labelled["metadata"]["labels"] == {"x": "1", PART_OF_LABEL: aset.id}
    assert obj["metadata"]["labels"] == {"x": "1"}  # the input is not modified
    with pytest.raises(ApplySetError):
        aset.label_member(
            {"metadata": {"name": "a", "labels": {PART_OF_LABEL: "applyset-x-v1"}}}, ref="a"
        )


def test_parent_of_foreign_tooling_is_refused_like_kubectl_does() -> None:
    aset = ApplySet.for_app("web", "web", tooling="gitops-bot/v0.1.0")
    live = {
        "metadata": {
            "labels": {ID_LABEL: aset.id},
            "annotations": {TOOLING_ANNOTATION: "kubectl/v1.37.1", GROUP_KINDS_ANNOTATION: ""},
        }
    }
    with pytest.raises(ApplySetError, match=r"managed by tooling 'kubectl/v1\.37\.1'"):
        aset.parse_parent(live)
    # another version of the same tool is fine (kubectl compares the name only)
    live["metadata"]["annotations"][TOOLING_ANNOTATION] = "gitops-bot/v9"
    live["metadata"]["annotations"][COMMIT_ANNOTATION] = "abc"
    state = aset.parse_parent(live)
    assert state.exists and state.commit == "abc" and state.namespaces == {"web"}
    assert not aset.parse_parent(None).exists


# -- errors -----------------------------------------------------------------------------------


def _status(code: int, reason: str, message: str) -> bytes:
    return (
        f'{{"kind":"Status","apiVersion":"v1","status":"Failure","code":{code},'
        f'"reason":"{reason}","message":"{message}"}}'
    ).encode()


@pytest.mark.parametrize(
    ("code", "reason", "cls", "transient"),
    [
        (403, "Forbidden", ForbiddenError, False),
        (404, "NotFound", NotFoundError, False),
        (409, "Conflict", ConflictError, False),
        (422, "Invalid", InvalidError, False),
        (429, "TooManyRequests", TransientApiError, True),
        (500, "InternalError", TransientApiError, True),
        (503, "ServiceUnavailable", TransientApiError, True),
    ],
)
def test_status_maps_to_error_with_retry_meaning(
    code: int, reason: str, cls: type, transient: bool
) -> None:
    err = from_status(code, _status(code, reason, "the server says so"))
    assert isinstance(err, cls)
    assert err.message == "the server says so" and err.reason == reason
    assert isinstance(err, TransientError if transient else PermanentError)
    assert err.to_object_error().transient is transient


def test_immutable_field_error_is_recognised_and_non_status_body_kept() -> None:
    err = from_status(
        422, _status(422, "Invalid", "spec.selector: Invalid value: field is immutable")
    )
    assert err.immutable
    other = from_status(502, b"<html>bad gateway</html>", http_reason="Bad Gateway")
    assert other.transient and "bad gateway" in other.message


# -- ordering ---------------------------------------------------------------------------------


def test_apply_phases_put_namespaces_and_crds_first() -> None:
    crd = "apiextensions.k8s.io/v1"
    assert phase_of("v1", "Namespace", namespaced=False) == PHASE_FOUNDATION
    assert phase_of(crd, "CustomResourceDefinition", namespaced=False) == PHASE_FOUNDATION
    assert (
        phase_of("rbac.authorization.k8s.io/v1", "ClusterRole", namespaced=False) == PHASE_CLUSTER
    )
    assert phase_of("apps/v1", "Deployment", namespaced=True) == PHASE_NAMESPACED
    assert PHASE_FOUNDATION < PHASE_CLUSTER < PHASE_NAMESPACED


# -- health -----------------------------------------------------------------------------------


def _deploy(generation: int, **status: object) -> dict[str, object]:
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": 2},
        "status": status,
    }


def test_deployment_health_follows_rollout_status() -> None:
    assert judge(_deploy(2, observedGeneration=1)).health is Health.PROGRESSING
    partial = judge(_deploy(2, observedGeneration=2, replicas=2, updatedReplicas=1))
    assert partial.health is Health.PROGRESSING and "1 out of 2" in partial.message
    old = judge(_deploy(2, observedGeneration=2, replicas=3, updatedReplicas=2))
    assert "old replicas are pending termination" in old.message
    done = judge(
        _deploy(2, observedGeneration=2, replicas=2, updatedReplicas=2, availableReplicas=2)
    )
    assert done.health is Health.HEALTHY
    failed = judge(
        _deploy(
            2,
            observedGeneration=2,
            conditions=[
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "web-1" has timed out progressing.',
                }
            ],
        )
    )
    assert failed.health is Health.DEGRADED and failed.reason == "ProgressDeadlineExceeded"


def test_statefulset_daemonset_and_job_health() -> None:
    sts = {
        "kind": "StatefulSet",
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": 1,
            "currentRevision": "a",
            "updateRevision": "b",
        },
    }
    assert judge(sts).health is Health.PROGRESSING
    sts["status"]["currentRevision"] = "b"  # type: ignore[index]
    assert judge(sts).health is Health.HEALTHY
    # with rollingUpdate set (as the server defaults it) kubectl counts updated pods instead
    sts["spec"] = {"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 1}}}
    sts["status"] = {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1}
    assert judge(sts).health is Health.PROGRESSING
    sts["status"]["updatedReplicas"] = 2  # type: ignore[index]
    assert judge(sts).health is Health.HEALTHY
    ds = {
        "kind": "DaemonSet",
        "metadata": {"generation": 3},
        "spec": {},
        "status": {
            "observedGeneration": 3,
            "desiredNumberScheduled": 2,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
        },
    }
    assert judge(ds).health is Health.PROGRESSING
    ds["status"]["numberAvailable"] = 2  # type: ignore[index]
    assert judge(ds).health is Health.HEALTHY
    job = {
        "kind": "Job",
        "metadata": {},
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        },
    }
    verdict = judge(job)
    assert verdict.health is Health.DEGRADED and verdict.reason == "BackoffLimitExceeded"
    assert judge({"kind": "ConfigMap"}).health is Health.UNKNOWN
    assert needs_wait("Deployment", "apps/v1") and not needs_wait("Deployment", "example.com/v1")


# -- retries ----------------------------------------------------------------------------------


def test_overload_answers_are_retried_with_retry_after(tmp_path: Path) -> None:
    import http.server
    import threading

    from bot.cluster.client import Cluster
    from bot.cluster.targets import Target

    answers = [
        (429, b'{"kind":"Status","reason":"TooManyRequests","message":"slow down"}'),
        (503, b"unavailable"),
        (200, b'{"kind":"Namespace","metadata":{"name":"x"}}'),
    ]
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            code, body = answers.pop(0)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{server.server_port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    try:
        with Cluster(Target(name="t", kubeconfig=kubeconfig)) as cluster:
            assert cluster.request("GET", "/api/v1/namespaces/x")["metadata"]["name"] == "x"
            answers.extend([(500, b"boom")] * 4)
            with pytest.raises(TransientApiError):
                cluster.request("GET", "/api/v1/namespaces/x")
            # 401: the credentials are refreshed once and the request retried, then it is final
            answers.extend([(401, b"{}"), (200, b'{"kind":"Namespace","metadata":{"name":"y"}}')])
            assert cluster.request("GET", "/api/v1/namespaces/y")["metadata"]["name"] == "y"
            answers.extend([(401, b"{}"), (401, b"{}")])
            with pytest.raises(PermanentError):
                cluster.request("GET", "/api/v1/namespaces/y")
    finally:
        server.shutdown()
    assert len(seen) == 3 + 4 + 2 + 2


def test_aggregated_discovery_document_maps_kinds_to_resources() -> None:
    from bot.cluster.client import RestMapper

    doc = [
        {
            "metadata": {"name": ""},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "configmaps",
                            "scope": "Namespaced",
                            "responseKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                        },
                        {
                            "resource": "namespaces",
                            "scope": "Cluster",
                            "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
                            "subresources": [{"subresource": "status"}],
                        },
                    ],
                }
            ],
        },
        {
            "metadata": {"name": "apps"},
            "versions": [
                {
                    "version": "v1",
                    "resources": [
                        {
                            "resource": "deployments",
                            "scope": "Namespaced",
                            "responseKind": {
                                "group": "apps",
                                "version": "v1",
                                "kind": "Deployment",
                            },
                        }
                    ],
                },
                {
                    "version": "v1beta1",
                    "resources": [
                        {
                            "resource": "deployments",
                            "scope": "Namespaced",
                            "responseKind": {
                                "group": "apps",
                                "version": "v1beta1",
                                "kind": "Deployment",
                            },
                        }
                    ],
                },
            ],
        },
    ]
    mapper = RestMapper.from_aggregated(doc)
    cm = mapper.lookup("v1", "ConfigMap")
    assert (
        cm is not None
        and cm.namespaced
        and cm.path("web", "a") == "/api/v1/namespaces/web/configmaps/a"
    )
    ns = mapper.lookup("v1", "Namespace")
    assert ns is not None and not ns.namespaced and ns.path(None, "web") == "/api/v1/namespaces/web"
    deploy = mapper.for_group_kind("apps", "Deployment")
    assert deploy is not None and deploy.version == "v1"  # the preferred (first) version
    assert deploy.collection("web") == "/apis/apps/v1/namespaces/web/deployments"
    assert mapper.lookup("apps/v2", "Deployment") is None


def test_an_unexpected_error_costs_one_app_not_the_run() -> None:
    from bot.cluster.runner import _run
    from bot.manifests import AppSpec, RenderedApp
    from bot.model import AppResult, Mode

    class Clusters:
        def get(self, name: str) -> object:
            return object()

    def one(cluster: object, app: RenderedApp) -> AppResult:
        if app.spec.name == "bad":
            raise TypeError("Object of type bytes is not JSON serializable")
        return AppResult(name=app.spec.name, target="default")

    apps = [RenderedApp(spec=AppSpec(name=n, path=n)) for n in ("bad", "good")]
    run = _run(apps, Clusters(), Mode.DEPLOY, one, skip_on_render_errors=True)  # type: ignore[arg-type]
    bad, good = run.apps
    assert [e.reason for e in bad.errors] == ["Internal"]
    assert "TypeError" in bad.errors[0].message
    assert good.errors == [] and good.name == "good"


def test_a_kubeconfig_that_is_not_yaml_is_named_without_quoting_it(tmp_path: Path) -> None:
    from bot.cluster import Cluster, Target
    from bot.cluster.errors import TargetError

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("users:\n- user: {token: abc-secret-token\n")
    with pytest.raises(TargetError) as info:
        Cluster(Target(name="prod", kubeconfig=kubeconfig))
    assert "not valid YAML" in str(info.value)
    assert "abc-secret-token" not in str(info.value)


def test_an_api_server_that_drops_packets_fails_after_the_connect_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blackholed address (here a listener whose accept queue is full: the kernel drops the
    SYNs, as a firewall does) fails each request after CONNECT_TIMEOUT, not REQUEST_TIMEOUT,
    and is not retried; before, discovery alone took 8 x REQUEST_TIMEOUT (8 minutes) before a
    preview fell back to the offline diff. A refused port is still retried (fast)."""
    import contextlib
    import socket
    import time

    from bot.cluster import client
    from bot.cluster.client import Cluster
    from bot.cluster.targets import Target

    monkeypatch.setattr(client, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(client, "BACKOFF", 0.01)
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()  # nothing listens there

    def kubeconfig(server_port: int) -> Path:
        path = tmp_path / f"kubeconfig-{server_port}"
        path.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{server_port}', "
            "insecure-skip-tls-verify: true}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        )
        return path

    try:
        with Cluster(Target(name="t", kubeconfig=kubeconfig(port))) as cluster:
            started = time.monotonic()
            with pytest.raises(TransientApiError, match="cannot reach the API server"):
                cluster.request("GET", "/api")
            assert cluster.requests == 1  # not retried by us (urllib3 reconnects once)
            namespaces = client.Resource("", "v1", "Namespace", "namespaces", False)
            (result,) = cluster.get_many([(namespaces, None, "default")])
            assert isinstance(result, TransientApiError), result
            assert cluster.requests == 2
            # both paths gave up after the connect timeout (REQUEST_TIMEOUT is 60 s)
            assert time.monotonic() - started < 20
        with Cluster(Target(name="t", kubeconfig=kubeconfig(refused_port))) as cluster:
            with pytest.raises(TransientApiError, match="cannot reach the API server"):
                cluster.request("GET", "/api")
            assert cluster.requests == 1 + client.RETRIES
    finally:
        for filler in fillers:
            filler.close()
        blackhole.close()
