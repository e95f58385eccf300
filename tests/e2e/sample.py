"""The small GitOps repository the journeys use: two apps of plain YAML, a ConfigMap to change
and a Secret whose values must never be printed."""

from __future__ import annotations

SECRET_BEFORE = "hunter2-before-4f1c"
SECRET_AFTER = "hunter2-after-9d2e"


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def configmap(name: str, greeting: str) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
        f"data:\n  greeting: {greeting}\n"
    )


def secret(password: str) -> str:
    return (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-credentials\ntype: Opaque\n"
        f"stringData:\n  password: {password}\n"
    )


FILES: dict[str, str | bytes | None] = {
    ".gitops.yaml": (
        "version: 1\napps:\n"
        # forceConflicts: the merge takes back fields edited by hand (else it would conflict)
        "  - {name: web, path: web, namespace: web, forceConflicts: true}\n"
        "  - {name: api, path: api, namespace: api}\n"
    ),
    "web/namespace.yaml": namespace("web"),
    "web/config.yaml": configmap("web-config", "hello"),
    "web/secret.yaml": secret(SECRET_BEFORE),
    "api/namespace.yaml": namespace("api"),
    "api/config.yaml": configmap("api-config", "hello"),
}

CHANGE: dict[str, str | bytes | None] = {
    "web/config.yaml": configmap("web-config", "bonjour"),
    "web/secret.yaml": secret(SECRET_AFTER),
}
"""The pull request's first commit: a ConfigMap value and a Secret value changed."""

SECOND_CHANGE: dict[str, str | bytes | None] = {"web/config.yaml": configmap("web-config", "salut")}

HAND_EDIT = ("patch", "configmap", "web-config", "-n", "web", "--type=merge",
             "-p", '{"data": {"greeting": "hola"}}')  # fmt: skip
"""kubectl arguments of an edit by hand in the cluster, which a /sync then shows as drift."""
