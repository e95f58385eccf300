"""CustomResourceDefinitions as published in the wild (controller-gen's shape), held to the
structural-schema rules of the Kubernetes documentation, with the real kubectl and ``gitops-bot``.

The CRD below is what ``controller-gen crd`` writes for a kubebuilder type: root
``metadata: {type: object}``, two served versions with one storage version, the status
subresource, printer columns, and fields exercising every structural-schema rule the emulator
follows (embedded resources, preserved unknown fields, int-or-string, defaults inside arrays of
objects and ``additionalProperties``, nullable, a CEL rule it does not enforce).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import main
from bot.cli.apply import EXIT_OK
from tests.kube_emulator import EmulatorServer
from tests.kube_emulator.fixture import Kubectl

_VERSION_SCHEMA = """\
      openAPIV3Schema:
        description: Widget is the Schema for the widgets API.
        properties:
          apiVersion:
            description: |-
              APIVersion defines the versioned schema of this representation of an object.
              Servers should convert recognized schemas to the latest internal value, and
              may reject unrecognized values.
              More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources
            type: string
          kind:
            description: |-
              Kind is a string value representing the REST resource this object represents.
              Servers may infer this from the endpoint the client submits requests to.
              Cannot be updated.
              In CamelCase.
              More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds
            type: string
          metadata:
            type: object
          spec:
            description: WidgetSpec defines the desired state of Widget.
            properties:
              image:
                description: Image is the container image to run.
                minLength: 1
                type: string
              replicas:
                default: 1
                format: int32
                minimum: 0
                type: integer
              tier:
                default: standard
                enum:
                - standard
                - premium
                type: string
              ports:
                items:
                  properties:
                    name:
                      type: string
                    port:
                      format: int32
                      type: integer
                    protocol:
                      default: TCP
                      type: string
                    targetPort:
                      anyOf:
                      - type: integer
                      - type: string
                      x-kubernetes-int-or-string: true
                  required:
                  - port
                  type: object
                type: array
                x-kubernetes-list-map-keys:
                - port
                x-kubernetes-list-type: map
              limits:
                additionalProperties:
                  properties:
                    burst:
                      default: 10
                      type: integer
                    rate:
                      type: integer
                  type: object
                type: object
              owner:
                nullable: true
                type: string
              note:
                type: string
              config:
                type: object
                x-kubernetes-preserve-unknown-fields: true
              template:
                type: object
                x-kubernetes-embedded-resource: true
                x-kubernetes-preserve-unknown-fields: true
              sidecar:
                properties:
                  spec:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                type: object
                x-kubernetes-embedded-resource: true
            required:
            - image
            type: object
            x-kubernetes-validations:
            - message: premium widgets need at least two replicas
              rule: self.tier != 'premium' || self.replicas >= 2
          status:
            description: WidgetStatus defines the observed state of Widget.
            properties:
              phase:
                type: string
              readyReplicas:
                format: int32
                type: integer
            type: object
        type: object
"""

CRD = (
    """\
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    controller-gen.kubebuilder.io/version: v0.16.5
  name: widgets.example.com
spec:
  group: example.com
  names:
    kind: Widget
    listKind: WidgetList
    plural: widgets
    shortNames:
    - wd
    singular: widget
  scope: Namespaced
  versions:
  - additionalPrinterColumns:
    - jsonPath: .spec.replicas
      name: Replicas
      type: integer
    - jsonPath: .status.phase
      name: Phase
      type: string
    - jsonPath: .spec.image
      name: Image
      priority: 1
      type: string
    - jsonPath: .metadata.creationTimestamp
      name: Age
      type: date
    name: v1
    schema:
"""
    + _VERSION_SCHEMA
    + """\
    served: true
    storage: true
    subresources:
      status: {}
  - deprecated: true
    name: v1alpha1
    schema:
"""
    + _VERSION_SCHEMA
    + """\
    served: true
    storage: false
    subresources:
      status: {}
"""
)

WIDGET = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: {name}
  namespace: web
  labels: {{app: shop}}
  annotations: {{team: checkout}}
spec:
  image: {image}
  ports:
  - {{port: 80, targetPort: http}}
  - {{port: 443, targetPort: 8443, protocol: TCP}}
  limits:
    api: {{rate: 5}}
  config: {{anything: [1, 2], nested: {{deep: true}}}}
  template:
    apiVersion: v1
    kind: ConfigMap
    metadata: {{name: from-template, labels: {{x: z}}}}
    data: {{k: v}}
  sidecar:
    apiVersion: v1
    kind: Pod
    metadata: {{name: helper}}
    spec: {{containers: [{{name: c, image: busybox}}]}}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n"


def widget(name: str = "w1", image: str = "shop:1") -> str:
    return WIDGET.format(name=name, image=image)


def install(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE + CRD)
    kubectl.ok("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s")


def test_controller_gen_crd_keeps_metadata_and_follows_the_structural_schema(
    kubectl: Kubectl,
) -> None:
    install(kubectl)
    out = kubectl.ok("apply", "--server-side", "-f", "-", stdin=widget())
    assert "widget.example.com/w1 serverside-applied" in out
    obj = kubectl.get("widget", "w1", "-n", "web")
    meta = obj["metadata"]
    # the root metadata is never pruned by the schema's `metadata: {type: object}`
    assert (meta["name"], meta["namespace"]) == ("w1", "web")
    assert meta["labels"] == {"app": "shop"}
    assert meta["annotations"] == {"team": "checkout"}
    assert meta["generation"] == 1 and meta["uid"]
    spec = obj["spec"]
    assert spec["replicas"] == 1 and spec["tier"] == "standard"  # defaults
    # defaults inside an array of objects and inside additionalProperties values
    assert spec["ports"] == [
        {"port": 80, "targetPort": "http", "protocol": "TCP"},
        {"port": 443, "targetPort": 8443, "protocol": "TCP"},
    ]
    assert spec["limits"] == {"api": {"rate": 5, "burst": 10}}
    assert spec["config"] == {"anything": [1, 2], "nested": {"deep": True}}
    # embedded resources keep apiVersion, kind and metadata whatever their properties say
    assert spec["template"]["kind"] == "ConfigMap"
    assert spec["template"]["metadata"] == {"name": "from-template", "labels": {"x": "z"}}
    assert spec["sidecar"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    assert "status" not in obj  # the status subresource: the main resource ignores status

    # a create (a JSON body, where null means null): nullable keeps its null, a null where the
    # schema is not nullable is dropped, or replaced by the default when there is one
    nulls = widget("w3").replace(
        "spec:\n  image", "spec:\n  owner: null\n  note: null\n  tier: null\n  image", 1
    )
    kubectl.ok("create", "-f", "-", stdin=nulls)
    spec3 = kubectl.get("widget", "w3", "-n", "web")["spec"]
    assert spec3["owner"] is None
    assert "note" not in spec3
    assert spec3["tier"] == "standard"

    table = kubectl.ok("get", "widgets", "-n", "web")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "REPLICAS", "PHASE", "AGE"]
    assert table.count("\n") == 3  # w1 and w3
    assert row.split()[:2] == ["w1", "1"]
    assert len(row.split()) == 3  # kubectl leaves the cell of a missing value (no phase) blank
    wide = kubectl.ok("get", "wd", "-n", "web", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "REPLICAS", "PHASE", "IMAGE", "AGE"]  # priority 1: wide
    assert "shop:1" in wide[1].split()

    # the second served version answers with its own apiVersion, same object
    read = kubectl("get", "widgets.v1alpha1.example.com", "w1", "-n", "web", "-o", "yaml")
    assert "Warning: example.com/v1alpha1 Widget is deprecated; use example.com/v1 Widget" in (
        read.stderr
    )
    old = yaml.safe_load(read.stdout)
    assert old["apiVersion"] == "example.com/v1alpha1"
    assert old["metadata"]["uid"] == meta["uid"]
    crd = kubectl.get("crd", "widgets.example.com")
    assert crd["status"]["storedVersions"] == ["v1"]


def test_server_side_apply_update_status_and_server_side_diff(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    install(kubectl)
    manifest = tmp_path / "w1.yaml"
    manifest.write_text(widget())
    kubectl.ok("apply", "--server-side", "-f", str(manifest))
    same = kubectl("diff", "--server-side", "-f", str(manifest))
    assert (same.returncode, same.stdout) == (0, ""), same.stderr

    manifest.write_text(widget(image="shop:2"))
    changed = kubectl("diff", "--server-side", "-f", str(manifest))
    assert changed.returncode == 1, changed.stderr
    assert "-  image: shop:1" in changed.stdout and "+  image: shop:2" in changed.stdout
    assert "generation: 2" in changed.stdout
    assert kubectl.get("widget", "w1", "-n", "web")["spec"]["image"] == "shop:1"  # a dry run

    kubectl.ok("apply", "--server-side", "-f", str(manifest))
    obj = kubectl.get("widget", "w1", "-n", "web")
    assert (obj["spec"]["image"], obj["metadata"]["generation"]) == ("shop:2", 2)

    # status goes through the status subresource, and does not bump the generation
    kubectl.ok(
        "patch", "widget", "w1", "-n", "web", "--subresource=status", "--type=merge",
        "-p", '{"status": {"phase": "Ready", "readyReplicas": 1}}',
    )  # fmt: skip
    obj = kubectl.get("widget", "w1", "-n", "web")
    assert obj["status"] == {"phase": "Ready", "readyReplicas": 1}
    assert obj["metadata"]["generation"] == 2
    assert kubectl.ok("get", "widget", "w1", "-n", "web").splitlines()[1].split()[2] == "Ready"
    # an apply to the main resource leaves status alone
    kubectl.ok("apply", "--server-side", "-f", str(manifest))
    assert kubectl.get("widget", "w1", "-n", "web")["status"]["phase"] == "Ready"


def test_schema_violations_are_refused_with_the_real_wording(kubectl: Kubectl) -> None:
    install(kubectl)
    bad = widget().replace("image: shop:1", "image: ''")
    bad = bad.replace("spec:\n  image", "spec:\n  tier: gold\n  replicas: -1\n  image", 1)
    proc = kubectl("apply", "--server-side", "-f", "-", stdin=bad)
    assert proc.returncode == 1
    err = proc.stderr
    assert 'The Widget "w1" is invalid' in err  # kubectl's wording of a 422 Invalid
    assert 'spec.tier: Unsupported value: "gold": supported values: "standard", "premium"' in err
    assert (
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
        in err
    )
    assert (
        'spec.image: Invalid value: "": spec.image in body should be at least 1 chars long' in err
    )
    wrong_type = kubectl("create", "-f", "-", stdin=widget().replace("port: 80,", "port: '80',"))
    assert (
        'spec.ports[0].port: Invalid value: "80": spec.ports[0].port in body must be of type '
        'integer: "string"'
    ) in wrong_type.stderr

    missing = kubectl(
        "apply", "--server-side", "-f", "-", stdin=widget().replace("  image: shop:1\n", "")
    )
    assert "spec.image: Required value" in missing.stderr
    embedded = widget().replace("    apiVersion: v1\n    kind: Pod\n", "")
    no_kind = kubectl("apply", "--server-side", "-f", "-", stdin=embedded)
    assert "spec.sidecar.apiVersion: Required value: must not be empty" in no_kind.stderr
    assert "spec.sidecar.kind: Required value: must not be empty" in no_kind.stderr
    # CEL rules (x-kubernetes-validations) are not evaluated by the emulator: documented
    premium = widget().replace("spec:\n  image", "spec:\n  tier: premium\n  image", 1)
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=premium)


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(kubectl: Kubectl) -> None:
    install(kubectl)
    extra = widget().replace("spec:\n  image", "spec:\n  colour: red\n  image", 1)
    extra = extra.replace("  labels: {app: shop}\n", "  labels: {app: shop}\n  shoeSize: 42\n")
    warned = kubectl("apply", "--server-side", "--validate=warn", "-f", "-", stdin=extra)
    assert warned.returncode == 0, warned.stderr
    assert 'unknown field "spec.colour"' in warned.stderr
    assert 'unknown field "metadata.shoeSize"' in warned.stderr
    obj = kubectl.get("widget", "w1", "-n", "web")
    assert "colour" not in obj["spec"] and "shoeSize" not in obj["metadata"]
    strict = kubectl("apply", "--server-side", "-f", "-", stdin=extra.replace("w1", "w2"))
    assert strict.returncode == 1  # kubectl's default: --validate=strict
    assert (
        "failed to create typed patch object (web/w2; example.com/v1, Kind=Widget): "
        ".metadata.shoeSize: field not declared in schema"
    ) in strict.stderr


def test_root_metadata_schema_may_only_restrict_name_and_generate_name(kubectl: Kubectl) -> None:
    labels = CRD.replace(
        "          metadata:\n            type: object\n",
        "          metadata:\n            type: object\n            properties:\n"
        "              labels: {type: object}\n",
    )
    refused = kubectl("apply", "--server-side", "-f", "-", stdin=labels)
    assert refused.returncode == 1
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden: must not "
        "specify anything other than name and generateName, but metadata is implicitly specified"
    ) in refused.stderr

    short = CRD.replace(
        "          metadata:\n            type: object\n",
        "          metadata:\n            type: object\n            properties:\n"
        "              name: {type: string, maxLength: 5}\n",
    )
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=NAMESPACE + short)
    kubectl.ok("wait", "--for=condition=Established", "crd/widgets.example.com")
    kubectl.ok("apply", "--server-side", "-f", "-", stdin=widget("w1"))
    long = kubectl("apply", "--server-side", "-f", "-", stdin=widget("widget-1"))
    assert long.returncode == 1
    assert "metadata.name: Too long: may not be more than 5 bytes" in long.stderr


def test_prune_custom_resources_through_an_applyset_with_kubectl(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    install(kubectl)
    directory = tmp_path / "set"
    directory.mkdir()
    (directory / "widgets.yaml").write_text(widget("w1") + "---\n" + widget("w2"))
    applyset = ("--server-side", "--prune", "--applyset=widgets", "-n", "web")
    out = kubectl.ok("apply", *applyset, "-f", str(directory))
    assert "widget.example.com/w2 serverside-applied" in out
    parent = kubectl.get("secret", "widgets", "-n", "web")
    kinds = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
    assert kinds == "Widget.example.com"

    (directory / "widgets.yaml").write_text(widget("w1", image="shop:2"))
    out = kubectl.ok("apply", *applyset, "-f", str(directory))
    assert "widget.example.com/w2 pruned" in out
    assert kubectl("get", "widget", "w2", "-n", "web").returncode == 1
    assert kubectl.get("widget", "w1", "-n", "web")["spec"]["image"] == "shop:2"


GITOPS_YAML = "version: 1\napps:\n- name: shop\n  path: shop\n  namespace: web\n"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, files: dict[str, str | None]) -> str:
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "change")
    return _git(repo, "rev-parse", "HEAD")


def _bot_apply(repo: Path, kubeconfig: str, ref: str, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        ["apply", "--repo", str(repo), "--kubeconfig", kubeconfig, "--format", "json",
         "--ref", ref, *extra],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    report: dict[str, Any] = json.loads(result.stdout)["apps"][0]
    return report


def test_gitops_bot_creates_updates_previews_and_prunes_custom_resources(
    kubeconfig: str, kube_emulator: EmulatorServer, kubectl: Kubectl, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    first = _commit(
        repo,
        {
            ".gitops.yaml": GITOPS_YAML,
            "shop/crd.yaml": NAMESPACE + CRD,
            "shop/w1.yaml": widget("w1"),
            "shop/w2.yaml": widget("w2"),
        },
    )
    created = _bot_apply(repo, kubeconfig, first)
    assert {o["name"] for o in created["created"]} >= {"widgets.example.com", "w1", "w2"}
    assert kubectl.get("widget", "w2", "-n", "web")["metadata"]["labels"]["app"] == "shop"

    second = _commit(repo, {"shop/w1.yaml": widget("w1", image="shop:2"), "shop/w2.yaml": None})
    preview = _bot_apply(repo, kubeconfig, second, "--dry-run")
    assert [o["name"] for o in preview["updated"]] == ["w1"]
    assert [o["name"] for o in preview["deleted"]] == ["w2"]
    assert kubectl.get("widget", "w1", "-n", "web")["spec"]["image"] == "shop:1"

    applied = _bot_apply(repo, kubeconfig, second)
    assert [o["name"] for o in applied["updated"]] == ["w1"]
    assert [o["name"] for o in applied["deleted"]] == ["w2"]
    assert kubectl.get("widget", "w1", "-n", "web")["spec"]["image"] == "shop:2"
    assert kubectl("get", "widget", "w2", "-n", "web").returncode == 1
    stored = kube_emulator.store.get(("example.com", "widgets"), "web", "w1")
    assert stored is not None and stored["metadata"]["labels"]["app"] == "shop"


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            "type: object\nproperties:\n  spec: {properties: {a: {type: string}}}\n",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: "
            "must not be empty for specified object fields",
        ),
        (
            "properties:\n  spec: {type: object}\n",
            "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty "
            "at the root",
        ),
    ],
)
def test_non_structural_schemas_are_refused(kubectl: Kubectl, schema: str, message: str) -> None:
    crd = yaml.safe_load(CRD)
    crd["spec"]["versions"] = crd["spec"]["versions"][:1]
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = yaml.safe_load(schema)
    refused = kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(crd))
    assert refused.returncode == 1
    assert message in refused.stderr
