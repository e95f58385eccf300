"""Which Kubernetes kinds are cluster-scoped, without asking a cluster.

Offline rendering has to decide whether an object gets the app's namespace. Built-in kinds are
listed here (from ``kubectl api-resources --namespaced=false`` on Kubernetes 1.3x); a
CustomResourceDefinition declared in the same app tells the scope of its kind; any other kind is
assumed namespaced (most custom resources are), and the cluster engine corrects that with the
API server's discovery when it has a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

GroupKind = tuple[str, str]
"""(API group, kind); the core group is ''."""

CLUSTER_SCOPED: frozenset[GroupKind] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("authentication.k8s.io", "TokenReview"),
        ("authentication.k8s.io", "SelfSubjectReview"),
        ("authorization.k8s.io", "SelfSubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectRulesReview"),
        ("authorization.k8s.io", "SubjectAccessReview"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("certificates.k8s.io", "ClusterTrustBundle"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("internal.apiserver.k8s.io", "StorageVersion"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "IPAddress"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("node.k8s.io", "RuntimeClass"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("resource.k8s.io", "DeviceClass"),
        ("resource.k8s.io", "ResourceSlice"),
        ("resource.k8s.io", "DeviceTaintRule"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("storage.k8s.io", "VolumeAttributesClass"),
        ("storagemigration.k8s.io", "StorageVersionMigration"),
    }
)


def group_of(api_version: str) -> str:
    """'apps/v1' -> 'apps'; 'v1' -> ''."""
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def crd_scopes(objects: Iterable[Mapping[str, Any]]) -> dict[GroupKind, bool]:
    """{(group, kind): cluster_scoped} for the CustomResourceDefinitions among ``objects``."""
    scopes: dict[GroupKind, bool] = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        if group_of(str(obj.get("apiVersion") or "")) != "apiextensions.k8s.io":
            continue
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            continue
        names = spec.get("names")
        kind = names.get("kind") if isinstance(names, dict) else None
        group = spec.get("group")
        if isinstance(kind, str) and isinstance(group, str):
            scopes[(group, kind)] = spec.get("scope") == "Cluster"
    return scopes


def is_cluster_scoped(group: str, kind: str, crds: Mapping[GroupKind, bool] | None = None) -> bool:
    """Whether objects of (group, kind) have no namespace; unknown kinds count as namespaced."""
    if crds and (group, kind) in crds:
        return crds[(group, kind)]
    return (group, kind) in CLUSTER_SCOPED
