"""Validation of built-in kinds on create and update: the real apiserver's checks and wording.

Covers what clients trip over most: names (RFC 1123 / DNS-1035), labels, required fields,
workload selectors matching template labels, containers needing name and image, Service ports,
and immutable fields. ``validate`` returns a list of FieldError; the caller answers 422 Invalid.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from .crd import schema_errors as crd_schema_errors
from .errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from .resources import ResourceType
from .selectors import match_label_selector_object

__all__ = ["FieldError", "forbidden", "not_supported", "required", "validate"]

Obj = dict[str, Any]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
MSG_DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
MSG_QUALIFIED = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
MSG_CONFIG_KEY = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
MSG_IMMUTABLE = "field is immutable"
MSG_SELECTOR_MISMATCH = "`selector` does not match template `labels`"
MSG_STS_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
    "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)

# Kinds whose names are DNS-1123 labels / DNS-1035 labels / path segments instead of subdomains.
_LABEL_NAMES = {"Namespace"}
_DNS1035_NAMES = {"Service"}
_PATH_SEGMENT_NAMES = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def _name_errors(kind: str, name: str) -> list[FieldError]:
    if kind in _PATH_SEGMENT_NAMES:
        if name in (".", ".."):
            return [invalid("metadata.name", name, f"may not be '{name}'")]
        for bad in ("/", "%"):
            if bad in name:
                return [invalid("metadata.name", name, f"may not contain '{bad}'")]
        return []
    if kind in _DNS1035_NAMES:
        errs = []
        if len(name) > 63:
            errs.append(invalid("metadata.name", name, "must be no more than 63 characters"))
        if not DNS1035_LABEL.match(name):
            errs.append(invalid("metadata.name", name, MSG_DNS1035))
        return errs
    if kind in _LABEL_NAMES:
        errs = []
        if len(name) > 63:
            errs.append(invalid("metadata.name", name, "must be no more than 63 characters"))
        if not DNS1123_LABEL.match(name):
            errs.append(invalid("metadata.name", name, MSG_LABEL))
        return errs
    errs = []
    if len(name) > 253:
        errs.append(invalid("metadata.name", name, "must be no more than 253 characters"))
    if not DNS1123_SUBDOMAIN.match(name):
        errs.append(invalid("metadata.name", name, MSG_SUBDOMAIN))
    return errs


def _label_errors(labels: Any, path: str = "metadata.labels") -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return errs
    for k, v in labels.items():
        problem = _label_key_problem(k)
        if problem is not None:
            errs.append(invalid(path, k, problem))
        if not isinstance(v, str):
            continue
        problem = _label_value_problem(v)
        if problem is not None:
            errs.append(invalid(path, v, problem))
    return errs


# Label keys and values repeat across objects and writes: each is checked once.
@functools.lru_cache(maxsize=8192)
def _label_key_problem(k: str) -> str | None:
    name = k.rsplit("/", 1)[-1]
    prefix = k[: -len(name) - 1] if "/" in k else ""
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        return MSG_QUALIFIED
    if prefix and not DNS1123_SUBDOMAIN.match(prefix):
        return "prefix part " + MSG_SUBDOMAIN
    return None


@functools.lru_cache(maxsize=8192)
def _label_value_problem(v: str) -> str | None:
    if len(v) > 63:
        return "must be no more than 63 characters"
    if not LABEL_VALUE.match(v):
        return MSG_LABEL_VALUE
    return None


def _go_selector(sel: Any) -> str:
    sel = sel if isinstance(sel, dict) else {}
    ml = sel.get("matchLabels")
    mls = (
        "map[string]string(nil)"
        if not ml
        else "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(ml.items())) + "}"
    )
    me = (
        "[]v1.LabelSelectorRequirement(nil)"
        if not sel.get("matchExpressions")
        else "[]v1.LabelSelectorRequirement{...}"
    )
    return f"v1.LabelSelector{{MatchLabels:{mls}, MatchExpressions:{me}}}"


def _invalid_raw(field: str, text: str, why: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, f"Invalid value: {text}: {why}")


def _pod_spec_errors(
    spec: Any, path: str, *, restart_policies: list[str] | None
) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [required(path)]
    containers = spec.get("containers")
    if not containers:
        errs.append(required(f"{path}.containers"))
    seen: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or ()):
            cp = f"{path}.{key}[{i}]"
            if not isinstance(c, dict):
                errs.append(required(cp))
                continue
            name = c.get("name")
            if not name:
                errs.append(required(f"{cp}.name"))
            elif not DNS1123_LABEL.match(str(name)):
                errs.append(invalid(f"{cp}.name", name, MSG_LABEL))
            elif name in seen:
                errs.append(duplicate(f"{cp}.name", name))
            else:
                seen.add(name)
            if not c.get("image") and key == "containers":
                errs.append(required(f"{cp}.image"))
            for j, port in enumerate(c.get("ports") or ()):
                cport = (port or {}).get("containerPort")
                if not isinstance(cport, int) or not 1 <= cport <= 65535:
                    errs.append(
                        invalid(
                            f"{cp}.ports[{j}].containerPort",
                            cport or 0,
                            "must be between 1 and 65535, inclusive",
                        )
                    )
            errs.extend(_resource_errors(c.get("resources"), f"{cp}.resources"))
            pp = c.get("imagePullPolicy")
            if pp is not None and pp not in ("Always", "IfNotPresent", "Never"):
                errs.append(
                    not_supported(f"{cp}.imagePullPolicy", pp, ["Always", "IfNotPresent", "Never"])
                )
    rp = spec.get("restartPolicy")
    if restart_policies is not None and rp not in restart_policies:
        errs.append(not_supported(f"{path}.restartPolicy", rp or "", restart_policies))
    return errs


QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIXES = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    **{s: Fraction(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
}


def parse_quantity(value: Any) -> Fraction | None:
    """A resource.Quantity's value (``500m``, ``1Gi``, ``2``, ``1e3``), or None if it is none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Fraction(value)
    if not isinstance(value, str):
        return None
    m = QUANTITY.match(value)
    if m is None:
        return None
    number, suffix = m.groups()
    try:
        base = Fraction(number)
    except ValueError:
        return None
    if suffix in _SUFFIXES:
        return base * _SUFFIXES[suffix]
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return base * Fraction(10) ** int(suffix[1:])
    return None


def _resource_errors(resources: Any, path: str) -> list[FieldError]:
    """Requests may not exceed limits (ValidateResourceRequirements)."""
    if not isinstance(resources, dict):
        return []
    limits = resources.get("limits") if isinstance(resources.get("limits"), dict) else {}
    requests = resources.get("requests") if isinstance(resources.get("requests"), dict) else {}
    errs: list[FieldError] = []
    for name, quantity in requests.items():
        if name not in limits:
            continue
        want, cap = parse_quantity(quantity), parse_quantity(limits[name])
        if want is not None and cap is not None and want > cap:
            errs.append(
                invalid(
                    f"{path}.requests",
                    str(quantity),
                    f"must be less than or equal to {name} limit of {limits[name]}",
                )
            )
    return errs


def _workload(obj: Obj, old: Obj | None, *, kind: str, restart: list[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        errs.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    sel = spec.get("selector")
    tmpl: Obj = spec["template"] if isinstance(spec.get("template"), dict) else {}
    labels = ((tmpl.get("metadata") or {}).get("labels")) or {}
    if not sel:
        errs.append(required("spec.selector"))
    elif not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(
            _invalid_raw(
                "spec.selector", _go_selector(sel), f"empty selector is invalid for {kind.lower()}"
            )
        )
    elif not match_label_selector_object(sel, labels):
        errs.append(invalid("spec.template.metadata.labels", labels, MSG_SELECTOR_MISMATCH))
    errs.extend(_label_errors(labels, "spec.template.metadata.labels"))
    errs.extend(_pod_spec_errors(tmpl.get("spec"), "spec.template.spec", restart_policies=restart))
    if old is not None:
        old_spec = old.get("spec") or {}
        if kind == "StatefulSet":
            mutable = {
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            }
            if {k: v for k, v in spec.items() if k not in mutable} != {
                k: v for k, v in old_spec.items() if k not in mutable
            }:
                errs.append(forbidden("spec", MSG_STS_FORBIDDEN))
        elif sel != old_spec.get("selector"):
            errs.append(_invalid_raw("spec.selector", _go_selector(sel), MSG_IMMUTABLE))
    return errs


def _v_Deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = _workload(obj, old, kind="Deployment", restart=["Always"])
    spec = obj.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") not in (None, "RollingUpdate", "Recreate"):
        errs.append(
            not_supported("spec.strategy.type", strategy.get("type"), ["Recreate", "RollingUpdate"])
        )
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate"):
        errs.append(
            forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        )
    pds = spec.get("progressDeadlineSeconds")
    mrs = spec.get("minReadySeconds") or 0
    if isinstance(pds, int) and pds <= mrs:
        errs.append(
            invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")
        )
    return errs


def _v_ReplicaSet(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _workload(obj, old, kind="ReplicaSet", restart=["Always"])


def _v_StatefulSet(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = _workload(obj, old, kind="StatefulSet", restart=["Always"])
    pmp = (obj.get("spec") or {}).get("podManagementPolicy")
    if pmp not in (None, "OrderedReady", "Parallel"):
        errs.append(not_supported("spec.podManagementPolicy", pmp, ["OrderedReady", "Parallel"]))
    return errs


def _v_DaemonSet(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _workload(obj, old, kind="DaemonSet", restart=["Always"])


def _v_Job(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    tmpl = spec.get("template") or {}
    errs.extend(
        _pod_spec_errors(
            tmpl.get("spec"), "spec.template.spec", restart_policies=["OnFailure", "Never"]
        )
    )
    if old is not None:
        old_spec = old.get("spec") or {}
        if tmpl != old_spec.get("template"):
            errs.append(
                _invalid_raw(
                    "spec.template",
                    "core.PodTemplateSpec{" + json.dumps(tmpl, sort_keys=True)[:200] + "}",
                    MSG_IMMUTABLE,
                )
            )
        if spec.get("selector") != old_spec.get("selector"):
            errs.append(
                _invalid_raw("spec.selector", _go_selector(spec.get("selector")), MSG_IMMUTABLE)
            )
        if spec.get("completions") != old_spec.get("completions"):
            errs.append(invalid("spec.completions", spec.get("completions"), MSG_IMMUTABLE))
    return errs


def _v_CronJob(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if not spec.get("schedule"):
        errs.append(required("spec.schedule"))
    tmpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    errs.extend(
        _pod_spec_errors(
            tmpl.get("spec"),
            "spec.jobTemplate.spec.template.spec",
            restart_policies=["OnFailure", "Never"],
        )
    )
    cp = spec.get("concurrencyPolicy")
    if cp not in (None, "Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", cp, ["Allow", "Forbid", "Replace"]))
    return errs


def _v_Pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _pod_spec_errors(
        obj.get("spec"), "spec", restart_policies=["Always", "OnFailure", "Never"]
    )


def _v_Service(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    svc_type = spec.get("type")
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if svc_type not in types:
        errs.append(not_supported("spec.type", svc_type, types))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and svc_type != "ExternalName" and not headless:
        errs.append(required("spec.ports"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            continue
        name = p.get("name")
        if len(ports) > 1 and not name:
            errs.append(required(f"spec.ports[{i}].name"))
        elif name and name in names:
            errs.append(duplicate(f"spec.ports[{i}].name", name))
        if name:
            names.add(name)
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(
                invalid(
                    f"spec.ports[{i}].port", port or 0, "must be between 1 and 65535, inclusive"
                )
            )
        proto = p.get("protocol")
        if proto not in ("TCP", "UDP", "SCTP"):
            errs.append(not_supported(f"spec.ports[{i}].protocol", proto, ["SCTP", "TCP", "UDP"]))
    if svc_type == "ExternalName" and not spec.get("externalName"):
        errs.append(required("spec.externalName"))
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if (
            old_ip
            and old_ip != "None"
            and svc_type != "ExternalName"
            and spec.get("clusterIP") != old_ip
        ):
            errs.append(
                invalid(
                    "spec.clusterIPs[0]", [spec.get("clusterIP") or ""], "may not change once set"
                )
            )
    return errs


def _immutable_data(obj: Obj, old: Obj | None) -> list[FieldError]:
    if old is None or not old.get("immutable"):
        return []
    errs = []
    for key in ("data", "binaryData"):
        if obj.get(key) != old.get(key):
            errs.append(forbidden(key, "field is immutable when `immutable` is set"))
    if not obj.get("immutable"):
        errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs


def _config_keys(obj: Obj) -> list[FieldError]:
    errs = []
    for key in ("data", "binaryData"):
        for k in obj.get(key) or {}:
            if len(k) > 253 or not CONFIG_KEY.match(k):
                errs.append(invalid(f"{key}[{k}]", k, MSG_CONFIG_KEY))
    return errs


def _v_ConfigMap(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _config_keys(obj) + _immutable_data(obj, old)


def _v_Secret(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = _config_keys(obj) + _immutable_data(obj, old)
    if old is not None and obj.get("type") != old.get("type"):
        errs.append(invalid("type", obj.get("type"), MSG_IMMUTABLE))
    return errs


RBAC_GROUP = "rbac.authorization.k8s.io"


def _policy_rules(obj: Obj, *, namespaced: bool) -> list[FieldError]:
    """ValidatePolicyRule for each of ``rules``."""
    errs: list[FieldError] = []
    for i, rule in enumerate(obj.get("rules") or ()):
        path = f"rules[{i}]"
        rule = rule if isinstance(rule, dict) else {}
        if not rule.get("verbs"):
            errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
        urls = rule.get("nonResourceURLs")
        if urls:
            if namespaced:
                errs.append(
                    invalid(
                        f"{path}.nonResourceURLs",
                        urls,
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                errs.append(
                    invalid(
                        f"{path}.nonResourceURLs",
                        urls,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.get("apiGroups"):
            errs.append(
                required(f"{path}.apiGroups", "resource rules must supply at least one api group")
            )
        if not rule.get("resources"):
            errs.append(
                required(f"{path}.resources", "resource rules must supply at least one resource")
            )
    return errs


def _v_Role(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _policy_rules(obj, namespaced=True)


def _v_ClusterRole(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _policy_rules(obj, namespaced=False)


def _binding(obj: Obj, old: Obj | None, *, namespaced: bool) -> list[FieldError]:
    """ValidateRoleBinding / ValidateClusterRoleBinding and their subjects."""
    errs: list[FieldError] = []
    ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), [RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name"))
    for i, subject in enumerate(obj.get("subjects") or ()):
        path = f"subjects[{i}]"
        subject = subject if isinstance(subject, dict) else {}
        if not subject.get("name"):
            errs.append(required(f"{path}.name"))
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                errs.append(not_supported(f"{path}.apiGroup", subject["apiGroup"], [""]))
            if not namespaced and not subject.get("namespace"):
                errs.append(required(f"{path}.namespace"))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != RBAC_GROUP:
                errs.append(
                    not_supported(f"{path}.apiGroup", subject.get("apiGroup", ""), [RBAC_GROUP])
                )
        else:
            errs.append(
                not_supported(f"{path}.kind", kind or "", ["ServiceAccount", "User", "Group"])
            )
    if old is not None and obj.get("roleRef") != old.get("roleRef"):
        errs.append(
            _invalid_raw(
                "roleRef",
                "rbac.RoleRef{" + json.dumps(obj.get("roleRef"), sort_keys=True) + "}",
                "cannot change roleRef",
            )
        )
    return errs


def _v_RoleBinding(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _binding(obj, old, namespaced=True)


def _v_ClusterRoleBinding(obj: Obj, old: Obj | None) -> list[FieldError]:
    return _binding(obj, old, namespaced=False)


PERCENT = re.compile(r"^[0-9]+%$")
MSG_PERCENT = (
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
    "'93%', regex used for validation is '[0-9]+%')"
)


def _int_or_string_repr(value: Any) -> str:
    """How a field error prints an intstr.IntOrString (Go's %#v of the struct)."""
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{json.dumps(value)}}}"
    return f'intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:""}}'


def _positive_int_or_percent(value: Any, path: str) -> list[FieldError]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, str):
        if not PERCENT.match(value):
            return [_invalid_raw(path, _int_or_string_repr(value), MSG_PERCENT)]
        if int(value[:-1]) > 100:
            return [_invalid_raw(path, _int_or_string_repr(value), "must not be greater than 100%")]
    elif isinstance(value, int) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def _v_PodDisruptionBudget(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    errs: list[FieldError] = []
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errs.append(
            _invalid_raw(
                "spec",
                "policy.PodDisruptionBudgetSpec{...}",
                "minAvailable and maxUnavailable cannot be both set",
            )
        )
    for key in ("minAvailable", "maxUnavailable"):
        if spec.get(key) is not None:
            errs.extend(_positive_int_or_percent(spec[key], f"spec.{key}"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("AlwaysAllow", "IfHealthyBudget"):
        errs.append(
            not_supported(
                "spec.unhealthyPodEvictionPolicy", policy, ["AlwaysAllow", "IfHealthyBudget"]
            )
        )
    return errs


IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MSG_PORT_RANGE = "must be between 1 and 65535, inclusive"


def _port_name_errors(name: str, path: str) -> list[FieldError]:
    """IsValidPortName: at most 15 characters, lowercase letters, digits and '-', a letter."""
    if len(name) > 15:
        return [invalid(path, name, "must be no more than 15 characters")]
    if not IANA_SVC_NAME.match(name):
        return [
            invalid(
                path, name, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
            )
        ]
    if "--" in name:
        return [invalid(path, name, "must not contain consecutive hyphens")]
    if not any(ch.isalpha() for ch in name):
        return [invalid(path, name, "must contain at least one letter (a-z)")]
    return []


def _network_policy_ports(ports: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for j, port in enumerate(ports or ()):
        port = port if isinstance(port, dict) else {}
        pp = f"{path}.ports[{j}]"
        protocol = port.get("protocol")
        if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
            errs.append(not_supported(f"{pp}.protocol", protocol, ["SCTP", "TCP", "UDP"]))
        number = port.get("port")
        if isinstance(number, int) and not 1 <= number <= 65535:
            errs.append(invalid(f"{pp}.port", number, MSG_PORT_RANGE))
        elif isinstance(number, str):
            errs.extend(_port_name_errors(number, f"{pp}.port"))
    return errs


def _v_NetworkPolicy(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    errs: list[FieldError] = []
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or ()):
            rule = rule if isinstance(rule, dict) else {}
            path = f"spec.{direction}[{i}]"
            errs.extend(_network_policy_ports(rule.get("ports"), path))
            for k, peer in enumerate(rule.get(peers_key) or ()):
                peer = peer if isinstance(peer, dict) else {}
                given = [
                    p
                    for p in ("podSelector", "namespaceSelector", "ipBlock")
                    if peer.get(p) is not None
                ]
                where = f"{path}.{peers_key}[{k}]"
                if not given:
                    errs.append(required(where, "must specify a peer"))
                elif "ipBlock" in given and len(given) > 1:
                    errs.append(forbidden(where, "may not specify more than 1 peer"))
    for i, policy_type in enumerate(spec.get("policyTypes") or ()):
        if policy_type not in ("Ingress", "Egress"):
            errs.append(not_supported(f"spec.policyTypes[{i}]", policy_type, ["Egress", "Ingress"]))
    return errs


def _ingress_backend(backend: Any, path: str) -> list[FieldError]:
    """validateIngressBackend."""
    backend = backend if isinstance(backend, dict) else {}
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return []
    if not isinstance(service, dict):
        return [invalid(path, "", "resource or service backend is required")]
    errs: list[FieldError] = []
    if not service.get("name"):
        errs.append(required(f"{path}.service.name"))
    port = service.get("port") if isinstance(service.get("port"), dict) else {}
    name, number = port.get("name"), port.get("number")
    if name and number:
        errs.append(invalid(path, "", "cannot set both port name & port number"))
    elif name:
        errs.extend(_port_name_errors(str(name), f"{path}.service.port.name"))
    elif number:
        if not isinstance(number, int) or not 1 <= number <= 65535:
            errs.append(invalid(f"{path}.service.port.number", number, MSG_PORT_RANGE))
    else:
        errs.append(required(f"{path}.service.port", "port name or number is required"))
    return errs


def _v_Ingress(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    errs: list[FieldError] = []
    if spec.get("defaultBackend") is not None:
        errs.extend(_ingress_backend(spec["defaultBackend"], "spec.defaultBackend"))
    elif not spec.get("rules"):
        errs.append(
            _invalid_raw(
                "spec",
                "networking.IngressSpec{...}",
                "either `defaultBackend` or `rules` must be specified",
            )
        )
    for i, rule in enumerate(spec.get("rules") or ()):
        for j, p in enumerate(((rule or {}).get("http") or {}).get("paths") or ()):
            p = p if isinstance(p, dict) else {}
            where = f"spec.rules[{i}].http.paths[{j}]"
            pt = p.get("pathType")
            if not pt:
                errs.append(required(f"{where}.pathType", "pathType must be specified"))
            elif pt not in ("Exact", "Prefix", "ImplementationSpecific"):
                errs.append(
                    not_supported(
                        f"{where}.pathType", pt, ["Exact", "ImplementationSpecific", "Prefix"]
                    )
                )
            elif pt in ("Exact", "Prefix") and not str(p.get("path", "")).startswith("/"):
                errs.append(invalid(f"{where}.path", p.get("path", ""), "must be an absolute path"))
            errs.extend(_ingress_backend(p.get("backend"), f"{where}.backend"))
    return errs


def _v_PersistentVolumeClaim(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    if not spec.get("accessModes"):
        errs.append(required("spec.accessModes"))
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        errs.append(required("spec.resources[storage]"))
    if old is not None:
        a = {k: v for k, v in spec.items() if k not in ("resources", "volumeAttributesClassName")}
        b = {
            k: v
            for k, v in (old.get("spec") or {}).items()
            if k not in ("resources", "volumeAttributesClassName")
        }
        if a != b:
            errs.append(
                forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                )
            )
    return errs


def _v_CustomResourceDefinition(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    if not group:
        errs.append(required("spec.group"))
    if not names.get("plural"):
        errs.append(required("spec.names.plural"))
    if not names.get("kind"):
        errs.append(required("spec.names.kind"))
    name = obj["metadata"].get("name", "")
    if group and names.get("plural") and name != f"{names['plural']}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errs.append(not_supported("spec.scope", scope or "", ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(
            required("spec.versions", "must have exactly one version marked as storage version")
        )
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        errs.append(
            invalid("spec.versions", "", "must have exactly one version marked as storage version")
        )
    for i, v in enumerate(versions):
        if isinstance(v, dict) and not ((v.get("schema") or {}).get("openAPIV3Schema")):
            errs.append(
                required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required")
            )
    if isinstance(versions, list):
        errs.extend(crd_schema_errors(versions))
    if old is not None:
        if scope != (old.get("spec") or {}).get("scope"):
            errs.append(invalid("spec.scope", scope, MSG_IMMUTABLE))
        if group != (old.get("spec") or {}).get("group"):
            errs.append(invalid("spec.group", group, MSG_IMMUTABLE))
    return errs


VALIDATORS: dict[str, Callable[[Obj, Obj | None], list[FieldError]]] = {
    name[len("_v_") :]: fn
    for name, fn in list(globals().items())
    if name.startswith("_v_") and callable(fn)
}


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
    """All validation errors of ``obj`` (``old`` is the stored object on update)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    errs: list[FieldError] = []
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs.extend(_name_errors(rt.kind, name))
    if rt.namespaced and not meta.get("namespace"):
        errs.append(required("metadata.namespace"))
    errs.extend(_label_errors(meta.get("labels")))
    ann = meta.get("annotations")
    if isinstance(ann, dict) and sum(len(k) + len(str(v)) for k, v in ann.items()) > 262144:
        errs.append(
            FieldError(
                "FieldValueTooLong",
                "metadata.annotations",
                "Too long: must have at most 262144 bytes",
            )
        )
    if not rt.crd:
        fn = VALIDATORS.get(rt.kind)
        if fn is not None:
            errs.extend(fn(obj, old))
    return errs


# ---------------------------------------------------------------------------- Secret data
_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_NEWLINES = (0x0A, 0x0D)


def base64_error_offset(text: str) -> int | None:
    """Where Go's ``base64.StdEncoding`` stops decoding ``text`` (its ``CorruptInputError``
    offset, in bytes), or None when it decodes. Go skips CR and LF anywhere and wants padding:
    the offsets follow ``decodeQuantum`` so the message matches a real server's byte for byte."""
    src = text.encode()
    si, n = 0, len(src)
    while True:
        j = 0
        while j < 4:
            if si == n:
                return None if j == 0 else si - j
            c = src[si]
            si += 1
            if c in _B64_ALPHABET:
                j += 1
                continue
            if c in _NEWLINES:
                continue
            if c != ord("=") or j in (0, 1):
                return si - 1
            if j == 2:  # "==" expected; the first "=" is consumed
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    return n
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            return si if si < n else None  # trailing garbage after the padding
        if si == n:
            return None


def secret_data_problem(obj: Obj) -> str | None:
    """Why a Secret's ``data`` strings cannot be decoded into the Go type (``map[string][]byte``),
    in the decoder's words, or None. Values are never quoted: only the byte offset is."""
    data = obj.get("data")
    if not isinstance(data, dict):
        return None
    for value in data.values():
        if not isinstance(value, str):
            continue  # null is no value; other types are the type check's (fields.wrong_type)
        offset = base64_error_offset(value)
        if offset is not None:
            return f"illegal base64 data at input byte {offset}"
    return None
