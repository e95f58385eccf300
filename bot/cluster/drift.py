"""Drift: what in the cluster differs from Git at the commit last deployed.

Drift is the live preview of re-applying the deployed commit: an object changed by hand shows
as an update (back to Git), a member deleted by hand as a creation, a member Git no longer
declares as a deletion (when prune is on). The dry-run forces field ownership, because the
question is "what differs", not "who owns it now": a field taken over by ``kubectl edit``
still shows as drift rather than as a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.cluster.apply import DeployedCommit, deployed_commit
from bot.cluster.applyset import DEFAULT_TOOLING
from bot.cluster.client import Cluster
from bot.cluster.plan import AppSpecLike
from bot.cluster.preview import DEFAULT_FIELD_MANAGER, preview_app
from bot.model import AppResult, Manifest

NEVER_DEPLOYED = "{app} has no deployed commit recorded on {target}: nothing to compare"


def drift_app(
    cluster: Cluster,
    spec: AppSpecLike,
    manifests: Sequence[Manifest],
    *,
    commit: str | None,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    tooling: str = DEFAULT_TOOLING,
) -> AppResult:
    """The drift of one app: ``manifests`` must be rendered from ``commit``, the commit
    :func:`deployed_commit` reports (the caller checks it out; git lives elsewhere)."""
    return preview_app(
        cluster,
        spec,
        manifests,
        field_manager=field_manager,
        commit=commit,
        tooling=tooling,
        force=True,
    )


__all__ = ["NEVER_DEPLOYED", "DeployedCommit", "deployed_commit", "drift_app"]
