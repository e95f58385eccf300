"""One Secret in the bot's own cluster, for ``/setup/github-app``'s ``secret:<ns>/<name>`` store
(:mod:`bot.app_credentials`): is it there, and create it.

The cluster is the default target's (``$KUBECONFIG``'s current context, else the pod's service
account), reached through :class:`~bot.cluster.client.Cluster` and so the official client. The
Secret is created, never replaced (an existing one answers 409, reported as such). Errors are
the cluster engine's :class:`~bot.cluster.errors.KubeError` s, whose messages never hold the
values sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from bot.cluster.client import Cluster
from bot.cluster.errors import ConflictError, KubeError, NotFoundError
from bot.cluster.targets import Target

MANAGED_BY = {"app.kubernetes.io/managed-by": "gitops-bot"}


def _path(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets"
    return f"{base}/{quote(name, safe='')}" if name else base


def _cluster() -> Cluster:
    # $KUBECONFIG as it is now (the official loader reads it once, at import): the first file
    # of the list that exists, else the loader's defaults and the in-cluster service account.
    paths = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    kubeconfig = next((p for p in paths if p.exists()), None)
    return Cluster(Target(name="bot", kubeconfig=kubeconfig), concurrency=1)


def secret_exists(namespace: str, name: str) -> bool:
    """Whether the Secret exists (raises :class:`KubeError` when the cluster cannot say)."""
    with _cluster() as cluster:
        try:
            cluster.request("GET", _path(namespace, name))
        except NotFoundError:
            return False
    return True


def create_secret(
    namespace: str,
    name: str,
    values: Mapping[str, str],
    *,
    annotations: Mapping[str, str] | None = None,
) -> None:
    """Create an Opaque Secret holding ``values`` (``stringData``). Raises :class:`KubeError`:
    ``ConflictError`` (409 AlreadyExists) when one of that name exists (it is left alone)."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "annotations": dict(annotations or {}),
        },
        "type": "Opaque",
        "stringData": dict(values),
    }
    with _cluster() as cluster:
        cluster.request("POST", _path(namespace), body=body)


__all__ = ["ConflictError", "KubeError", "create_secret", "secret_exists"]
