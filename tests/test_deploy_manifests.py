"""The bot's own deployment (deploy/): every kustomization renders, passes strict schema
validation, is accepted by an API server (server-side dry run), and keeps its promises.

Rendered as an operator would, following docs/deploy.md: the base; the example overlay with its
Secrets made from the committed templates; and the example with each documented component
switched on (a managed Redis; cluster-wide rights and named namespaces to create). Then, on the
rendered objects: locked-down pods, Redis behind a password and reachable only from the bot's
pods, RBAC no wider than what the bot does, disruption budgets that let drains proceed, worker
liveness from the heartbeat probe, exactly one beat, and a Dockerfile pinned by digest whose
build context holds what it copies and nothing else.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = os.path.dirname(sys.executable)
KUBECTL = shutil.which("kubectl", path=BIN) or "kubectl"
KUBERNETES_VALIDATE = shutil.which("kubernetes-validate", path=BIN) or "kubernetes-validate"

Obj = dict[str, Any]

BOT_PODS = ("gitops-bot-web", "gitops-bot-worker", "gitops-bot-beat")
ALLOWED_VERBS = {"get", "list", "create", "patch", "delete"}
FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection"}


@dataclass(frozen=True)
class Variant:
    """One way docs/deploy.md tells an operator to build the deployment."""

    path: str  # the kustomization to render, relative to deploy/
    components: tuple[str, ...] = ()  # switched on in overlays/example/bot, as documented
    redis_env: str = "password=0123456789abcdef0123456789abcdef\n"
    namespaces: tuple[str, ...] = ()  # that must exist before it is applied


EXAMPLE_NAMESPACES = ("gitops-bot", "web", "api")
VARIANTS = {
    "base": Variant("base"),
    "example": Variant("overlays/example", namespaces=EXAMPLE_NAMESPACES),
    "example+external-redis": Variant(
        "overlays/example",
        components=("external-redis",),
        redis_env="url=rediss://:0123456789abcdef@redis.example.internal:6380/0\n",
        namespaces=EXAMPLE_NAMESPACES,
    ),
    "example+cluster-access+create-namespaces": Variant(
        "overlays/example",
        components=("cluster-access", "create-namespaces"),
        namespaces=EXAMPLE_NAMESPACES,
    ),
}
CREATED_NAMESPACES = ["preview-docs"]


def _switch_on(tree: Path, variant: Variant) -> None:
    """Do to a copy of deploy/ what docs/deploy.md says: copy the Secret templates, uncomment the
    components (and, for create-namespaces, the patch naming the namespaces)."""
    secrets = tree / "overlays" / "example" / "bot" / "secrets"
    shutil.copy(secrets / "bot.example.env", secrets / "bot.env")
    (secrets / "redis.env").write_text(variant.redis_env)
    if not variant.components:
        return
    path = tree / "overlays" / "example" / "bot" / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    kustomization["components"] += [f"../../../components/{c}" for c in variant.components]
    if "create-namespaces" in variant.components:
        kustomization["patches"].append(
            {
                "target": {"kind": "ClusterRole", "name": "gitops-bot-create-namespaces"},
                "patch": yaml.safe_dump(
                    [
                        {
                            "op": "replace",
                            "path": "/rules/0/resourceNames",
                            "value": CREATED_NAMESPACES,
                        }
                    ]
                ),
            }
        )
    path.write_text(yaml.safe_dump(kustomization))


@functools.cache
def rendered_text(name: str, workdir: str) -> str:
    variant = VARIANTS[name]
    tree = Path(workdir) / name
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("bot.env", "redis.env"))
    _switch_on(tree, variant)
    result = subprocess.run(
        [KUBECTL, "kustomize", str(tree / variant.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("deploy"))


def render(name: str, workdir: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(rendered_text(name, workdir)) if doc]


def find(objs: Iterable[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(objs: Iterable[Obj]) -> dict[str, Obj]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet")
    }


def pod_labels(objs: Iterable[Obj]) -> dict[str, dict[str, str]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet")
    }


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def env_of(container: Obj) -> list[Obj]:
    return list(container.get("env") or [])


# ------------------------------------------------------------------------- render and validate


def test_every_kustomization_in_deploy_is_covered_by_a_variant() -> None:
    """A kustomization or component added to deploy/ without a variant here would go untested."""
    covered = {"base", "overlays/example", "overlays/example/bot", "overlays/example/access"}
    covered |= {f"components/{c}" for v in VARIANTS.values() for c in v.components}
    covered.add("components/ingress")  # in the example overlay itself
    found = {str(p.parent.relative_to(DEPLOY)) for p in DEPLOY.rglob("kustomization.yaml")}
    assert found == covered


@pytest.mark.parametrize("name", VARIANTS)
def test_it_renders_and_passes_strict_schema_validation(
    name: str, workdir: str, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(rendered_text(name, workdir))
    result = subprocess.run(
        [KUBERNETES_VALIDATE, "--strict", "--quiet", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert render(name, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_the_api_server_accepts_it(
    name: str, workdir: str, kubeconfig: str, tmp_path: Path
) -> None:
    variant = VARIANTS[name]
    kubectl = [KUBECTL, "--kubeconfig", kubeconfig]
    if variant.namespaces:  # the operator creates these first (docs/deploy.md)
        namespaces = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
            for n in variant.namespaces
        ]
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump_all(namespaces),
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
    manifest = tmp_path / "bot.yaml"
    manifest.write_text(rendered_text(name, workdir))
    # The base leaves namespaces unset: it goes where -n says; overlays name theirs.
    where = [] if variant.namespaces else ["--namespace", "default"]
    result = subprocess.run(
        [*kubectl, "apply", "--server-side", "--dry-run=server", *where, "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    objs = render(name, workdir)
    applied = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(applied) == len(objs), result.stdout
    assert all(line.endswith("serverside-applied (server dry run)") for line in applied), (
        result.stdout
    )


# ------------------------------------------------------------------------------ pods


@pytest.mark.parametrize("name", VARIANTS)
def test_every_process_of_the_procfile_is_deployed_and_locked_down(name: str, workdir: str) -> None:
    specs = pod_specs(render(name, workdir))
    assert set(BOT_PODS) <= set(specs)
    for pod, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, pod
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", pod
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, pod
            assert context["readOnlyRootFilesystem"] is True, pod
            assert context["capabilities"]["drop"] == ["ALL"], pod
            assert "memory" in container["resources"]["limits"], pod


@pytest.mark.parametrize("name", VARIANTS)
def test_only_the_workers_get_a_cluster_token(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    account = one(objs, "ServiceAccount", "gitops-bot")
    assert account["automountServiceAccountToken"] is False
    for pod, spec in pod_specs(objs).items():
        if pod == "gitops-bot-worker":
            assert spec["serviceAccountName"] == "gitops-bot"
            assert spec["automountServiceAccountToken"] is True
        else:
            assert spec.get("serviceAccountName") in (None, "default"), pod
            assert spec["automountServiceAccountToken"] is False, pod


def test_the_image_runs_as_the_user_the_pods_declare(workdir: str) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user, "the Dockerfile must name a numeric USER uid:gid"
    for pod in BOT_PODS:
        context = pod_specs(render("example", workdir))[pod]["securityContext"]
        assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user.groups(), pod


def test_the_example_sets_image_namespace_and_secret_references(workdir: str) -> None:
    objs = render("example", workdir)
    base_image = {
        c["image"] for s in pod_specs(render("base", workdir)).values() for c in s["containers"]
    }
    images = {
        c["image"]
        for pod, spec in pod_specs(objs).items()
        if pod in BOT_PODS
        for c in spec["containers"]
    }
    assert len(images) == 1 and not images & base_image, images
    for obj in objs:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "RoleBinding"):
            assert obj["metadata"]["namespace"] == "gitops-bot", obj["metadata"]["name"]
    secrets = {s["metadata"]["name"] for s in find(objs, "Secret")}
    configmaps = {c["metadata"]["name"] for c in find(objs, "ConfigMap")}
    for pod, spec in pod_specs(objs).items():
        for container in spec["containers"]:
            for source in container.get("envFrom") or []:
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, pod
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, pod
            for var in env_of(container):
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    secret = one(objs, "Secret", ref["name"])
                    assert ref["key"] in secret["data"], (pod, var["name"])


@pytest.mark.parametrize("name", VARIANTS)
def test_exactly_one_beat(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    beat = one(objs, "Deployment", "gitops-bot-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}  # never two during a rollout
    labels = beat["spec"]["template"]["metadata"]["labels"]
    for budget in find(objs, "PodDisruptionBudget"):
        assert not selects(budget["spec"]["selector"], labels), budget["metadata"]["name"]
    assert not find(objs, "HorizontalPodAutoscaler")


def test_web_probes_are_healthz_and_readyz(workdir: str) -> None:
    web = pod_specs(render("example", workdir))["gitops-bot-web"]["containers"][0]
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert web["readinessProbe"]["httpGet"]["path"].startswith("/readyz")


def test_worker_liveness_is_the_heartbeat_probe(workdir: str) -> None:
    spec = pod_specs(render("example", workdir))["gitops-bot-worker"]
    probe = spec["containers"][0]["livenessProbe"]
    command = probe["exec"]["command"]
    assert command[:3] == ["python", "-m", "workers.liveness"]
    max_age = float(command[command.index("--max-age") + 1])
    assert (
        max_age >= 3 * Settings().worker_heartbeat
    )  # a busy loop that misses a beat or two is not dead
    # a hung worker is not given the long grace period meant for a deploy to finish
    assert probe["terminationGracePeriodSeconds"] < spec["terminationGracePeriodSeconds"]


# ------------------------------------------------------------------------------ Redis


@pytest.mark.parametrize("name", ["base", "example", "example+cluster-access+create-namespaces"])
def test_redis_has_a_password_and_redis_url_is_built_from_it(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    redis = pod_specs(objs)["gitops-bot-redis"]["containers"][0]
    env = {v["name"]: v for v in env_of(redis)}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
    secret_name = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--appendonly") + 1] == "yes"
    # a job the webhook answered 2xx for is on disk: everysec loses it to a kill during a fsync
    assert args[args.index("--appendfsync") + 1] == "always"
    service = one(objs, "Service", "gitops-bot-redis")
    for pod in BOT_PODS:
        container = pod_specs(objs)[pod]["containers"][0]
        names = [v["name"] for v in env_of(container)]
        # Kubernetes expands $(REDIS_PASSWORD) only when it is defined earlier in the list.
        assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), pod
        by_name = {v["name"]: v for v in env_of(container)}
        assert by_name["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": secret_name,
            "key": "password",
        }, pod
        url = by_name["REDIS_URL"]["value"]
        assert url == f"redis://:$(REDIS_PASSWORD)@{service['metadata']['name']}:6379/0", pod
    for configmap in find(objs, "ConfigMap"):  # the password itself is in no manifest
        assert not any("REDIS" in key for key in configmap["data"]), configmap["metadata"]


def test_external_redis_removes_the_in_cluster_one_and_takes_the_url_from_the_secret(
    workdir: str,
) -> None:
    objs = render("example+external-redis", workdir)
    assert "gitops-bot-redis" not in pod_specs(objs)
    assert not find(objs, "Service", "gitops-bot-redis")
    for policy in find(objs, "NetworkPolicy"):  # nothing left that only made sense in-cluster
        assert "gitops-bot-redis" not in yaml.safe_dump(policy), policy["metadata"]["name"]
    for pod in BOT_PODS:
        env = env_of(pod_specs(objs)[pod]["containers"][0])
        assert [v["name"] for v in env] == ["REDIS_URL"], pod
        ref = env[0]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "url" and ref["name"].startswith("gitops-bot-redis"), pod
        assert "value" not in env[0], pod


# ------------------------------------------------------------------------------ NetworkPolicies


def policies_for(objs: list[Obj], labels: Mapping[str, str], direction: str) -> list[Obj]:
    return [
        p
        for p in find(objs, "NetworkPolicy")
        if direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], labels)
    ]


@pytest.mark.parametrize("name", ["base", "example"])
def test_redis_is_reachable_only_from_the_bots_pods(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    labels = pod_labels(objs)
    policies = policies_for(objs, labels["gitops-bot-redis"], "Ingress")
    assert policies, "no ingress policy selects Redis: every pod could reach it"
    allowed_from: set[str] = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            assert peers, f"{policy['metadata']['name']}: a rule open to every source"
            for peer in peers:
                assert set(peer) == {"podSelector"}, peer  # same namespace, no IP blocks
                allowed_from |= {p for p, ls in labels.items() if selects(peer["podSelector"], ls)}
            assert [p["port"] for p in rule["ports"]] == ["redis"]
    assert allowed_from == set(BOT_PODS)
    assert policies_for(objs, labels["gitops-bot-redis"], "Egress")  # Redis calls nobody


@pytest.mark.parametrize("name", ["base", "example"])
def test_only_the_web_port_and_the_workers_metrics_port_take_connections(
    name: str, workdir: str
) -> None:
    objs = render(name, workdir)
    labels = pod_labels(objs)
    specs = pod_specs(objs)
    open_port = {"gitops-bot-web": "http", "gitops-bot-worker": "metrics"}
    for pod in ("gitops-bot-web", "gitops-bot-worker", "gitops-bot-beat"):
        policies = policies_for(objs, labels[pod], "Ingress")
        assert policies, f"{pod}: no ingress policy, every connection allowed"
        rules = [r for p in policies for r in p["spec"].get("ingress") or []]
        if pod in open_port:
            assert rules == [{"ports": [{"port": open_port[pod], "protocol": "TCP"}]}], pod
            assert [p["name"] for p in specs[pod]["containers"][0]["ports"]] == [open_port[pod]]
        else:
            assert rules == [], pod


@pytest.mark.parametrize("name", ["base", "example"])
def test_web_and_workers_are_scraped_where_they_serve_metrics(name: str, workdir: str) -> None:
    """The scrape annotations name the port each process serves /metrics on, and the worker's
    port is the one GITOPS_WORKER_METRICS_PORT makes it serve."""
    objs = render(name, workdir)
    deployments = {d["metadata"]["name"]: d for d in find(objs, "Deployment")}
    for pod, port_name in (("gitops-bot-web", "http"), ("gitops-bot-worker", "metrics")):
        template = deployments[pod]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        (container,) = template["spec"]["containers"]
        (port,) = [p for p in container["ports"] if p["name"] == port_name]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port["containerPort"])
        assert annotations["prometheus.io/path"] == "/metrics"
        if pod == "gitops-bot-worker":
            (settings,) = [
                c for c in find(objs, "ConfigMap") if c["metadata"]["name"].startswith(
                    "gitops-bot-settings")
            ]  # fmt: skip
            assert settings["data"]["GITOPS_WORKER_METRICS_PORT"] == str(port["containerPort"])
            refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
            assert refs == [settings["metadata"]["name"]]
    beat = deployments["gitops-bot-beat"]["spec"]["template"]
    assert "prometheus.io/scrape" not in (beat["metadata"].get("annotations") or {})


@pytest.mark.parametrize("name", ["base", "example"])
def test_web_and_beat_reach_only_redis_and_dns(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    labels = pod_labels(objs)
    for pod in ("gitops-bot-web", "gitops-bot-beat"):
        rules = [
            r
            for p in policies_for(objs, labels[pod], "Egress")
            for r in p["spec"].get("egress") or []
        ]
        assert rules, pod
        for rule in rules:
            ports = {(p["port"], p["protocol"]) for p in rule["ports"]}
            if rule.get("to"):
                (peer,) = rule["to"]
                targets = {p for p, ls in labels.items() if selects(peer["podSelector"], ls)}
                assert targets == {"gitops-bot-redis"} and ports == {(6379, "TCP")}, rule
            else:
                assert ports == {(53, "UDP"), (53, "TCP")}, rule
    assert not policies_for(objs, labels["gitops-bot-worker"], "Egress")  # forges, clusters


# ------------------------------------------------------------------------------ RBAC


def rules_of(objs: list[Obj], kind: str, name: str) -> list[Obj]:
    return list(one(objs, kind, name)["rules"])


def bindings_of_the_bot(objs: list[Obj]) -> list[Obj]:
    account = one(objs, "ServiceAccount", "gitops-bot")
    me = {
        "kind": "ServiceAccount",
        "name": "gitops-bot",
        "namespace": account["metadata"]["namespace"],
    }
    return [
        b
        for b in [*find(objs, "RoleBinding"), *find(objs, "ClusterRoleBinding")]
        if me in b["subjects"]
    ]


@pytest.mark.parametrize("name", VARIANTS)
def test_no_role_is_wider_than_what_the_bot_does(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    if name == "base":  # unnamespaced: an overlay names the namespace
        one(objs, "ServiceAccount", "gitops-bot")["metadata"]["namespace"] = "default"
    for role in [*find(objs, "ClusterRole"), *find(objs, "Role")]:
        for rule in role["rules"]:
            where = f"{role['metadata']['name']}: {rule}"
            assert not {"*"} & {*rule["apiGroups"], *rule["resources"]}, where
            assert not FORBIDDEN_VERBS & set(rule["verbs"]), where
            assert "rbac.authorization.k8s.io" not in rule["apiGroups"], where
            if role["metadata"]["name"] != "gitops-bot-doctor":
                assert set(rule["verbs"]) <= ALLOWED_VERBS, where
            if "namespaces" in rule["resources"]:
                # an empty list would allow every name
                assert rule.get("resourceNames"), where
    for binding in [*find(objs, "RoleBinding"), *find(objs, "ClusterRoleBinding")]:
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")
        assert binding["roleRef"]["name"].startswith("gitops-bot-"), binding["metadata"]
        # every subject is the rendered ServiceAccount (catches a namespace left behind)
        account = one(objs, "ServiceAccount", "gitops-bot")
        for subject in binding["subjects"]:
            assert subject == {
                "kind": "ServiceAccount",
                "name": "gitops-bot",
                "namespace": account["metadata"]["namespace"],
            }, binding["metadata"]["name"]


@pytest.mark.parametrize("name", ["base", "example", "example+external-redis"])
def test_cluster_wide_the_bot_may_only_review_its_own_access(name: str, workdir: str) -> None:
    objs = render(name, workdir)
    if name == "base":
        one(objs, "ServiceAccount", "gitops-bot")["metadata"]["namespace"] = "default"
    cluster_bindings = [b for b in bindings_of_the_bot(objs) if b["kind"] == "ClusterRoleBinding"]
    assert [b["roleRef"]["name"] for b in cluster_bindings] == ["gitops-bot-doctor"]
    assert rules_of(objs, "ClusterRole", "gitops-bot-doctor") == [
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews"],
            "verbs": ["create"],
        }
    ]


def test_the_example_grants_the_apps_rights_per_namespace(workdir: str) -> None:
    objs = render("example", workdir)
    per_namespace = {
        b["metadata"]["namespace"]: b["roleRef"]
        for b in bindings_of_the_bot(objs)
        if b["kind"] == "RoleBinding"
    }
    assert set(per_namespace) == {"web", "api"}
    assert all(ref["kind"] == "ClusterRole" for ref in per_namespace.values())
    assert {ref["name"] for ref in per_namespace.values()} == {"gitops-bot-apps"}


def test_the_apps_role_covers_applysets_apply_and_prune(workdir: str) -> None:
    rules = rules_of(render("example", workdir), "ClusterRole", "gitops-bot-apps")
    # server-side apply: patch, and create for a new object; live diff and prune: get, list;
    # prune: delete. ApplySet parents are Secrets in the app's namespace. The health wait only
    # lists the pods of rollouts (and their ReplicaSets, ControllerRevisions).
    for rule in rules:
        if rule["verbs"] == ["list"]:
            assert set(rule["resources"]) <= {"pods", "replicasets", "controllerrevisions"}, rule
            continue
        assert set(rule["verbs"]) == ALLOWED_VERBS, rule
    core = next(r for r in rules if r["apiGroups"] == [""])
    assert "secrets" in core["resources"]


def test_wider_rights_are_opt_in_components(workdir: str) -> None:
    objs = render("example+cluster-access+create-namespaces", workdir)
    cluster_roles = {
        b["roleRef"]["name"] for b in bindings_of_the_bot(objs) if b["kind"] == "ClusterRoleBinding"
    }
    assert cluster_roles == {
        "gitops-bot-doctor",
        "gitops-bot-apps",
        "gitops-bot-create-namespaces",
    }
    (rule,) = rules_of(objs, "ClusterRole", "gitops-bot-create-namespaces")
    assert rule == {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "resourceNames": CREATED_NAMESPACES,
        "verbs": ["get", "create", "patch"],
    }


# ------------------------------------------------------------------------------ disruptions


@pytest.mark.parametrize("name", ["base", "example"])
def test_disruption_budgets_keep_the_web_up_and_never_block_a_drain(
    name: str, workdir: str
) -> None:
    objs = render(name, workdir)
    labels = pod_labels(objs)
    budgets = find(objs, "PodDisruptionBudget")
    for pod in ("gitops-bot-web", "gitops-bot-worker"):
        (budget,) = [b for b in budgets if selects(b["spec"]["selector"], labels[pod])]
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", pod
        replicas = one(objs, "Deployment", pod)["spec"]["replicas"]
        if "minAvailable" in budget["spec"]:
            assert budget["spec"]["minAvailable"] < replicas, f"{pod}: a drain could never evict"
        else:
            assert budget["spec"]["maxUnavailable"] >= 1, pod
    for pod in ("gitops-bot-redis", "gitops-bot-beat"):  # one replica each: a budget blocks drains
        assert not [b for b in budgets if selects(b["spec"]["selector"], labels[pod])], pod


# ------------------------------------------------------------------------------ Ingress


def test_the_ingress_exposes_only_the_webhooks(workdir: str) -> None:
    objs = render("example", workdir)
    (ingress,) = find(objs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == ingress["spec"]["tls"][0]["hosts"][0] != "gitops-bot.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/", "Prefix")
    backend = path["backend"]["service"]
    service = one(objs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(objs)["gitops-bot-web"])
    assert not find(render("base", workdir), "Ingress")  # optional


# ------------------------------------------------------------------------------ Secret templates

SECRETS = DEPLOY / "overlays" / "example" / "bot" / "secrets"


def test_secret_templates_hold_placeholders_only() -> None:
    templates = sorted(SECRETS.glob("*.example.env"))
    assert [t.name for t in templates] == ["bot.example.env", "redis.example.env"]
    for template in templates:
        for line in template.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            assert value.startswith("replace-with-"), f"{template.name}: {key} has a value"


def test_filled_in_secrets_are_ignored_by_git_and_the_templates_are_not() -> None:
    def ignored(name: str) -> bool:
        return (
            subprocess.run(
                ["git", "-C", str(ROOT), "check-ignore", "-q", str(SECRETS / name)],
                timeout=30,
            ).returncode
            == 0
        )

    assert ignored("bot.env") and ignored("redis.env")
    assert not ignored("bot.example.env") and not ignored("redis.example.env")


# ------------------------------------------------------------------------------ image


def test_the_dockerfile_pins_its_base_image_by_digest() -> None:
    froms = re.findall(r"^FROM (\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert froms, "no FROM line"
    for image in froms:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing, then name what the image needs"
    included = {p[1:] for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for args in re.findall(r"^COPY (.+)$", (DEPLOY / "Dockerfile").read_text(), re.M):
        copied |= {s.rstrip("/") for s in args.split()[:-1] if not s.startswith("--")}
    assert copied == included
    for source in copied:
        assert (ROOT / source).exists(), source


# ------------------------------------------------------------------------------ docs


def test_the_deploy_guide_names_every_component_and_the_doctor_placeholder() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for component in sorted(p.name for p in (DEPLOY / "components").iterdir()):
        assert f"components/{component}" in guide, component
    assert "gitops-bot doctor --repo" in guide
    readme = (ROOT / "README.md").read_text()
    assert "## Deploying the bot" in readme and "docs/deploy.md" in readme
