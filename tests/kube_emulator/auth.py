"""Authentication (bearer tokens, client certificates) and a tiny fixed RBAC for the emulator.

Tokens: ``admin`` (everything), ``readonly`` (get/list/watch everywhere), ``namespace-web``
(everything inside namespace ``web``, nothing cluster-scoped). An unknown or missing token is 401.
Client certificates (mTLS, see tls.py) are tried first, as kube-apiserver's x509 authenticator
is: CommonName is the user, each Organization a group. Group ``system:masters`` may do everything
(the real apiserver grants it without RBAC); a certificate naming one of the token users' names
gets that user's permissions; any other user is authenticated and may do nothing (403).
Denials produce the real Forbidden message shape.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

READ_VERBS = frozenset({"get", "list", "watch"})


@dataclass(frozen=True)
class User:
    """An authenticated identity and what it may do."""

    name: str
    role: str  # "admin" | "readonly" | "namespace" | "none"
    namespace: str = ""
    groups: tuple[str, ...] = ()

    def allows(self, verb: str, *, namespace: str | None, namespaced: bool) -> bool:
        if self.role == "admin":
            return True
        if self.role == "readonly":
            return verb in READ_VERBS
        if self.role == "namespace":
            return namespaced and namespace == self.namespace
        return False


USERS: dict[str, User] = {
    "admin": User("kubernetes-admin", "admin", groups=("system:masters",)),
    "readonly": User(
        "system:serviceaccount:default:readonly",
        "readonly",
        groups=("system:serviceaccounts", "system:serviceaccounts:default"),
    ),
    "namespace-web": User(
        "system:serviceaccount:web:deployer",
        "namespace",
        "web",
        groups=("system:serviceaccounts", "system:serviceaccounts:web"),
    ),
}


MASTERS = "system:masters"

# The subject (CommonName, Organizations) of each named user's client certificate: the admin's is
# what kubeadm's admin.conf has always carried.
CERTIFICATE_SUBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", (MASTERS,)),
    "readonly": (USERS["readonly"].name, USERS["readonly"].groups),
    "namespace-web": (USERS["namespace-web"].name, USERS["namespace-web"].groups),
}


def certificate_user(name: str, groups: tuple[str, ...]) -> User:
    """What the user of a verified client certificate may do."""
    if MASTERS in groups:
        return User(name, "admin", groups=groups)
    for user in USERS.values():
        if user.name == name:
            return User(name, user.role, user.namespace, groups)
    return User(name, "none", groups=groups)


def make_tokens() -> dict[str, str]:
    """A fresh random token per user name (so tests cannot hard-code them by accident)."""
    return {name: f"{name}-{secrets.token_hex(12)}" for name in USERS}


def forbidden_message(
    user: User,
    verb: str,
    *,
    resource: str,
    group: str,
    subresource: str,
    name: str,
    namespace: str | None,
) -> str:
    """The apiserver's wording, e.g. ``deployments.apps "x" is forbidden: User "u" cannot get
    resource "deployments" in API group "apps" in the namespace "web"``."""
    gr = f"{resource}.{group}" if group else resource
    target = f'{gr} "{name}"' if name else gr
    res = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return f'{target} is forbidden: User "{user.name}" cannot {verb} resource "{res}" in API group "{group}" {scope}'
