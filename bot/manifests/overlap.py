"""One object, one app: finding objects that two apps declare for the same target.

Each app deploys through its own ApplySet, so an object declared by two apps on one target
would be taken over by whichever deployed last (its ``part-of`` label flips), and a prune by
one app deletes what the other still declares: what a preview shows would no longer be what a
merge does. Such an object is an error of **both** apps, naming both declarations with
``file:line`` and the fix; an app with errors is neither previewed as deployable nor applied.

Identity is (API group, kind, namespace, name) after the namespace defaulting of
:func:`bot.manifests.validate.validate_objects`, so two apps whose objects name no namespace
collide only when they default to the same one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from bot.model import Manifest, ObjectError, Source

if TYPE_CHECKING:
    from bot.manifests.render import RenderedApp

REASON = "SharedObject"
# The report prints the object and its file:line before the message: it names the others.
MSG_SHARED = (
    "declared by {count} apps on target {target!r}: {owners}. Two apps must never own one "
    "object (each deploy would take it over, and one app's prune would delete it from under the "
    "other): give them different targets or namespaces in .gitops.yaml"
)
MSG_SHARED_ONE_CLUSTER = (
    "declared by {count} apps sent to the one cluster given on the command line: {owners}. Two "
    "apps must never own one object: choose the apps to send with --app"
)

Key = tuple[str, str, str, str]


def _where(source: Source) -> str:
    return f"{source.file}:{source.line}" if source.line else source.file


def mark_shared_objects(
    rendered: Sequence[RenderedApp],
    *,
    one_target: str | None = None,
    involving: Collection[str] | None = None,
) -> set[str]:
    """Add an error to every app of ``rendered`` that declares an object another app of
    ``rendered`` declares on the same target; return the names of the apps marked.

    ``one_target`` names the one cluster every app is sent to (the CLI's ``--kubeconfig``):
    then all apps count as one target whatever their ``target``. With ``involving``, only
    objects that one of those apps declares count (a preview of some apps does not blame
    two other apps for what they share)."""
    owners: dict[tuple[str, Key], list[tuple[RenderedApp, Manifest]]] = {}
    for app in rendered:
        target = one_target or app.spec.target
        for manifest in app.manifests:
            owners.setdefault((target, manifest.ref.key), []).append((app, manifest))
    template = MSG_SHARED_ONE_CLUSTER if one_target else MSG_SHARED
    marked: set[str] = set()
    for (target, _key), holders in owners.items():
        if len(holders) < 2:  # an app declares an object once (validation refuses twice)
            continue
        if involving is not None and not any(app.spec.name in involving for app, _ in holders):
            continue
        listed = ", ".join(f"{app.spec.name!r} ({_where(m.source)})" for app, m in holders)
        for app, manifest in holders:
            app.errors.append(
                ObjectError(
                    template.format(count=len(holders), target=target, owners=listed),
                    ref=manifest.ref,
                    file=manifest.source.file,
                    line=manifest.source.line,
                    reason=REASON,
                )
            )
            marked.add(app.spec.name)
    return marked
