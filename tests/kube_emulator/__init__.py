"""A local Kubernetes API server for tests and benchmarks, held to the real kubectl and Python client.

Start it in-process (``EmulatorServer``), through the pytest fixtures in
``tests.kube_emulator.fixture`` (``kube_emulator``, ``kubeconfig``, ``kubeconfig_client_cert``,
``kubectl``; see its docstring), or standalone with
``python -m tests.kube_emulator --port PORT --kubeconfig PATH [--controller-delay S]``.
One port on 127.0.0.1 speaks both plain HTTP (``.url``, handy for raw clients and benchmarks) and
HTTPS with a throw-away CA (``.https_url``): kubeconfigs written by ``write_kubeconfig`` use HTTPS
with the CA embedded, because client-go (kubectl) never sends a bearer token over plain HTTP.
The real kubectl and the ``kubernetes`` Python client use them unchanged. Tests that can also run
against a real cluster use the ``kubeconfig`` fixture: when the environment variable
``GITOPS_TEST_KUBECONFIG`` is set it returns that path instead (and the emulator is not used).

Emulated (checked against the Kubernetes API reference and the real kubectl 1.37):

- Discovery: /version, /api, /api/v1, /apis, /apis/{g}, /apis/{g}/{v}, aggregated discovery
  (apidiscovery.k8s.io/v2, which kubectl asks for first) on /api and /apis, and /openapi/v2 (JSON;
  an empty document when only protobuf is accepted), /openapi/v3 with the real 1.37 schemas of built-in kinds
  (from the kubernetes-validate package) plus CRD schemas.
- Kinds: Namespace, ConfigMap, Secret, Service, ServiceAccount, Pod, PVC, Event, Endpoints, Node,
  PV, LimitRange, ResourceQuota, Deployment, StatefulSet, DaemonSet, ReplicaSet, ControllerRevision,
  Job, CronJob, Ingress, IngressClass, NetworkPolicy, Role(Binding), ClusterRole(Binding),
  HorizontalPodAutoscaler (autoscaling/v2 only), PodDisruptionBudget, StorageClass, PriorityClass,
  CustomResourceDefinition, SelfSubjectReview and SelfSubjectAccessReview (answered, never
  stored); CRDs become Established at once and their kinds are served
  (namespaced or cluster-scoped) until the CRD is deleted (which deletes the instances).
- GET, LIST (labelSelector =, ==, !=, in, notin, exists, !key; fieldSelector on metadata.name,
  metadata.namespace and a few per-kind fields; limit/continue), WATCH (resourceVersion resume,
  410 Expired past the event log, sendInitialEvents with bookmark, selectors), POST, PUT, PATCH
  (server-side apply with managedFields, conflicts and force; strategic merge, JSON merge and JSON
  patch — see merge.py), DELETE (propagationPolicy Orphan/Background/Foreground, preconditions,
  finalizers, dependents deleted through ownerReferences at once), deletecollection, the status and
  scale subresources, dryRun=All on every write, fieldManager (required for apply),
  fieldValidation (Strict: 400 with the real wording, Warn (default): dropped with a Warning
  header, Ignore: dropped) checked against the real 1.37 schemas, Table responses for kubectl's
  printing.
- Real Status errors: NotFound (``deployments.apps "x" not found``, ``namespaces "x" not found``),
  AlreadyExists, Conflict (stale resourceVersion, apply conflicts), Invalid with causes, Forbidden
  with the RBAC message shape, Unauthorized, unknown resources (``the server could not find the
  requested resource``), MethodNotAllowed, UnsupportedMediaType. A Secret whose ``data`` is not
  base64 fails where a real server's Go decoding fails, in its words and byte offsets: 400 on
  create/update, 422 Invalid (field ``patch``) on a patch, 500 with no reason on an apply.
- metadata: uid, resourceVersion (one monotonic counter), generation (bumped on spec changes only,
  for the kinds that have it), creationTimestamp, managedFields; no-op writes store nothing.
- A new cluster's state: namespaces default, kube-system, kube-public, kube-node-lease, each with a
  ``default`` ServiceAccount and a ``kube-root-ca.crt`` ConfigMap; Service ``default/kubernetes``;
  one Ready Node ``kube-emulator``.
- Defaulting of built-in kinds (defaults.py); validation with the real wording (validation.py)
  including immutable fields, RBAC rules and bindings, PodDisruptionBudgets, NetworkPolicies,
  Ingresses and requests above limits; values of the wrong JSON type refused as each decoder of a
  real server words it (fields.py: 400 on create/update, 500 "failed to create typed patch
  object" on apply).
- CRDs as published in the wild (controller-gen's shape) with the structural-schema rules of the
  Kubernetes documentation (crd.py): the root's apiVersion/kind/metadata never pruned or
  defaulted (root ``metadata`` may only restrict name/generateName, else the CRD is refused),
  ``x-kubernetes-embedded-resource``, ``-preserve-unknown-fields``, ``-int-or-string``, defaults
  at any depth (arrays of objects, ``additionalProperties``), ``nullable``, several served
  versions with one storage version (conversion ``None``; deprecated versions warn), the status
  subresource, printer columns (typed cells, priority, JSONPath filters). Not enforced: CEL
  rules (``x-kubernetes-validations``), ``format``, ``oneOf``/``anyOf``/``allOf``/``not``,
  conversion webhooks.
- A controller thread (controller.py) standing in for kube-controller-manager, the scheduler and
  the kubelet of one node (``kube-emulator``): Deployments make ReplicaSets (``<name>-<hash>``,
  ``pod-template-hash``, revisions, RollingUpdate within maxSurge/maxUnavailable, Recreate,
  rollbacks, history limit), ReplicaSets, StatefulSets (ordinals, PVCs, ControllerRevisions,
  partitioned rolling updates) and DaemonSets make Pods with owner references; Pods run
  ``controller_delay`` seconds after creation. Images tagged ``broken`` wait in ``ErrImagePull``
  then ``ImagePullBackOff``, images tagged ``crash`` in ``CrashLoopBackOff`` (kubelet's reasons
  and messages); Deployments then hit ProgressDeadlineExceeded after their own
  ``progressDeadlineSeconds`` without progress. Jobs complete without Pods.
- Auth: bearer tokens ``admin``, ``readonly`` (get/list/watch), ``namespace-web`` (all verbs in
  namespace ``web`` only); unknown or missing token: 401. Client certificates (mTLS) signed by the
  emulator's CA, tried before tokens as kube-apiserver does: CommonName is the user, each
  Organization a group; ``system:masters`` may do everything, a certificate of a token user's
  name has that user's permissions, anyone else none (403). ``client_certificate()`` issues them,
  ``write_kubeconfig(auth="certificate")`` writes ``client-certificate-data``/``client-key-data``.
  ``kubectl auth whoami`` (SelfSubjectReview) and ``kubectl auth can-i`` (SelfSubjectAccessReview)
  answer from the same permissions.
- HTTP/1.1 only, plain and TLS on one port (ALPN offers ``http/1.1``; clients that offer h2, as
  libcurl may, fall back to HTTP/1.1).

Speed: benchmarks are bound by the emulator's CPU per write, so the hot path is kept lean
(``./dev bench emulator`` prints it: about 0.07-0.09 ms per created object and 0.1-0.12 ms per
re-apply in-process on the project's machine, of which the type check of built-in kinds takes
about 0.01 ms, plus roughly 0.035 ms of HTTP/TLS per request; the controller is off there):
one event-loop thread serves all connections (no thread switch per request; see server.py),
hand-parsed HTTP heads, ``orjson`` for JSON when it is installed (a test-only dependency; the
standard library otherwise), apply comparisons limited to fields other managers own, one walk
of the configuration for a create, cached managedFields encodings (see merge.py); in a process
of its own (not under pytest) the survivors of full garbage collections are frozen.

Not emulated: HTTP/2; RBAC objects (Role/RoleBinding are stored, not enforced: permissions come
from the fixed users, see auth.py); admission webhooks; protobuf and CBOR responses (JSON only;
protobuf request bodies are decoded for Namespace, ConfigMap, Secret, ServiceAccount and the
reviews, which ``kubectl create <generator>`` and ``kubectl auth`` send; others get 415); Pods of
Jobs and CronJobs, graceful Pod termination, scheduling constraints, volume provisioning, logs,
exec, port-forward; Events; conversion webhooks (CRD versions differ only by apiVersion); CEL
validation rules (``x-kubernetes-validations``); several versions of one built-in group (e.g.
autoscaling/v1); quota and limit ranges; an eventually consistent garbage collector (dependents
go at once).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

import yaml

from . import fields
from .api import Emulator
from .auth import CERTIFICATE_SUBJECTS
from .controller import Controller
from .server import _Server, make_server
from .store import Store
from .tls import ClientCertificate, client_certificate, tls_files

__all__ = ["EmulatorServer"]

_P = TypeVar("_P", str, "os.PathLike[str]")


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, what survived moves to the permanent generation."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def _settle_long_lived_objects() -> None:
    """In a process of its own, keep the cyclic garbage collector off the emulator's data.

    Stored objects are acyclic JSON trees (freed by reference counting) and the API schemas
    are loaded once: full collections traversed them again and again, a good part of the
    emulator's CPU per request once it holds thousands of objects. So the schemas are loaded
    now, and whatever survives a full collection is frozen (``gc.freeze``). Under pytest the
    process belongs to the tests, and the collector is left as it is.
    """
    if "pytest" in sys.modules or _freeze_survivors in gc.callbacks:
        return
    fields.unknown_fields_ready()
    gc.collect()
    gc.freeze()
    gc.callbacks.append(_freeze_survivors)


class EmulatorServer:
    """The emulator on a local port, with its controller thread."""

    def __init__(
        self,
        *,
        controller_delay: float = 0.2,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        latency: float = 0.0,
        controller: bool = True,
    ) -> None:
        self.emulator = Emulator(controller_delay=controller_delay)
        self._latency = latency
        # Off for benchmarks that wait for no rollout: on a real cluster controllers run in
        # kube-controller-manager, not on the API server's CPU.
        self._controller_enabled = controller
        self.controller = Controller(self.emulator, delay=controller_delay)
        self._host = host
        self._port = port
        self._verbose = verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def tokens(self) -> dict[str, str]:
        """Bearer tokens by role name: admin, readonly, namespace-web."""
        return self.emulator.tokens

    @property
    def store(self) -> Store:
        return self.emulator.store

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Plain-HTTP URL (no TLS): for raw HTTP clients and benchmarks."""
        return f"http://{self._host}:{self.port}"

    @property
    def https_url(self) -> str:
        """The same port over TLS (what kubeconfigs use: client-go sends tokens only over TLS)."""
        return f"https://{self._host}:{self.port}"

    @property
    def ca_file(self) -> str:
        """PEM file of the CA that signed the server certificate."""
        return tls_files().ca_file

    def start(self) -> EmulatorServer:
        if self._server is not None:
            return self
        self.emulator.stopping.clear()
        _settle_long_lived_objects()
        self._server = make_server(
            self.emulator, self._host, self._port, verbose=self._verbose, latency=self._latency
        )
        self.emulator.server_address = f"{self._host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="kube-emulator-http",
            daemon=True,
        )
        self._thread.start()
        if self._controller_enabled:
            self.controller.start()
        return self

    def stop(self) -> None:
        self.emulator.stopping.set()
        self.controller.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        """Back to a fresh cluster (same port and tokens)."""
        with self.emulator.store.lock:
            self.emulator.reset()
            self.controller.reset()

    def client_certificate(
        self, user: str = "admin", *, groups: Sequence[str] = ()
    ) -> ClientCertificate:
        """A client certificate this server accepts (mTLS). For the named users (``admin``,
        ``readonly``, ``namespace-web``) it authenticates as that user: admin's subject is
        ``CN=kubernetes-admin, O=system:masters``. Any other ``user`` becomes the CommonName, with
        ``groups`` as Organizations (``system:masters`` may do everything; other users nothing)."""
        if user in CERTIFICATE_SUBJECTS and not groups:
            common_name, organizations = CERTIFICATE_SUBJECTS[user]
            return client_certificate(common_name, organizations)
        return client_certificate(user, tuple(groups))

    def kubeconfig_dict(self, *, user: str = "admin", auth: str = "token") -> dict[str, Any]:
        """A kubeconfig with one context per named user; the current one is ``user``'s.
        ``auth="token"``: bearer tokens; ``auth="certificate"``: client certificates
        (``client-certificate-data``/``client-key-data``, no token)."""
        if user not in self.tokens:
            raise KeyError(f"unknown user {user!r}; known: {sorted(self.tokens)}")
        if auth not in ("token", "certificate"):
            raise ValueError(f"auth must be 'token' or 'certificate', not {auth!r}")
        contexts = []
        users = []
        for name, token in self.tokens.items():
            if auth == "token":
                credentials = {"token": token}
            else:
                cert = self.client_certificate(name)
                credentials = {
                    "client-certificate-data": cert.cert_data_b64,
                    "client-key-data": cert.key_data_b64,
                }
            users.append({"name": name, "user": credentials})
            contexts.append(
                {
                    "name": f"emulator-{name}",
                    "context": {"cluster": "kube-emulator", "user": name, "namespace": "default"},
                }
            )
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kube-emulator",
                    "cluster": {
                        "server": self.https_url,
                        "certificate-authority-data": tls_files().ca_data_b64,
                    },
                }
            ],
            "users": users,
            "contexts": contexts,
            "current-context": f"emulator-{user}",
            "preferences": {},
        }

    def write_kubeconfig(self, path: _P, *, user: str = "admin", auth: str = "token") -> _P:
        """Write ``kubeconfig_dict(user=user, auth=auth)`` to ``path`` (mode 0600); returns ``path``."""
        text = yaml.safe_dump(self.kubeconfig_dict(user=user, auth=auth), sort_keys=False)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
        return path

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
