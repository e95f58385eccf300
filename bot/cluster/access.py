"""What the bot may do on a cluster, asked of the API server itself (``gitops-bot doctor``).

Each question is one SelfSubjectAccessReview, the request ``kubectl auth can-i`` sends: the
API server answers with the same authorizers (RBAC, webhooks, node) that judge the bot's real
requests, so a "yes" here is a "yes" for the deploy. (A SelfSubjectRulesReview would list every
rule in one request, but the API documents it as possibly incomplete, and webhook authorizers
do not answer it.) Questions go out a few at a time through :meth:`Cluster.request`, and
identical ones are asked once.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bot.cluster.client import Cluster
from bot.cluster.errors import ApiError

REVIEWS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
MAX_PARALLEL = 8


@dataclass(frozen=True)
class Attributes:
    """One "may I": a verb on a resource (``group`` '' for the core group), in a namespace
    (None: cluster-scoped or every namespace), optionally on one object by name."""

    verb: str
    group: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    def label(self) -> str:
        """As ``kubectl auth can-i`` takes it: ``create namespaces/docs``,
        ``patch deployments.apps -n web``."""
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        if self.name:
            what += f"/{self.name}"
        where = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{where}"

    def body(self) -> dict[str, Any]:
        attributes: dict[str, str] = {
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
        }
        if self.namespace:
            attributes["namespace"] = self.namespace
        if self.name:
            attributes["name"] = self.name
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }


@dataclass(frozen=True)
class Answer:
    """The API server's answer: ``allowed`` None when the question could not be asked (the
    review itself refused, the server unreachable); ``reason`` is the authorizer's reason, the
    evaluation error, or the error."""

    attributes: Attributes
    allowed: bool | None
    reason: str = ""


def server_version(cluster: Cluster) -> str:
    """The API server's version (``/version``'s ``gitVersion``, e.g. ``v1.31.2``)."""
    found = cluster.request("GET", "/version")
    if isinstance(found, dict):
        return str(found.get("gitVersion") or "unknown")
    return "unknown"


def _ask(cluster: Cluster, attributes: Attributes) -> Answer:
    try:
        review = cluster.request("POST", REVIEWS, body=attributes.body())
    except ApiError as exc:
        return Answer(attributes, None, str(exc))
    status = (review or {}).get("status") or {}
    reason = str(status.get("reason") or status.get("evaluationError") or "")
    return Answer(attributes, bool(status.get("allowed")) and not status.get("denied"), reason)


def may(cluster: Cluster, questions: Sequence[Attributes]) -> list[Answer]:
    """The answer to each question, in input order (each distinct one asked once)."""
    distinct = list(dict.fromkeys(questions))
    workers = max(1, min(MAX_PARALLEL, cluster.concurrency, len(distinct)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = dict(zip(distinct, pool.map(lambda q: _ask(cluster, q), distinct), strict=True))
    return [answers[q] for q in questions]
