"""ApplySet membership (KEP-3659), the way ``kubectl apply --prune --applyset`` records it.

Each app on a target is one ApplySet whose parent is a Secret ``gitops-bot.<app>`` in the app's
namespace (kubectl's default parent type: ``--applyset=NAME -n NS`` means that Secret). The
parent carries the label ``applyset.kubernetes.io/id`` and the annotations
``applyset.kubernetes.io/tooling``, ``contains-group-kinds`` and ``additional-namespaces``; every
member carries ``applyset.kubernetes.io/part-of=<id>``. The id is computed exactly as kubectl
computes it, so kubectl sees the same set.

The bot also records the deployed commit and time on the parent (``gitops-bot.io/commit``,
``gitops-bot.io/applied-at``) and, from the deploy job, a digest of the objects it applied
(``gitops-bot.io/digest``: the next push compares digests instead of rendering this commit
again), written by the bot's own field manager so that kubectl's updates
of the parent (field manager ``<tool>-applyset``) never remove them.

Everything here is pure: ids, labels, the parent object, parsing a live parent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot import __version__
from bot.cluster.errors import ApplySetError
from bot.model import Obj

ID_LABEL = "applyset.kubernetes.io/id"
PART_OF_LABEL = "applyset.kubernetes.io/part-of"
TOOLING_ANNOTATION = "applyset.kubernetes.io/tooling"
GROUP_KINDS_ANNOTATION = "applyset.kubernetes.io/contains-group-kinds"
NAMESPACES_ANNOTATION = "applyset.kubernetes.io/additional-namespaces"
COMMIT_ANNOTATION = "gitops-bot.io/commit"
APPLIED_AT_ANNOTATION = "gitops-bot.io/applied-at"
DIGEST_ANNOTATION = "gitops-bot.io/digest"
RECREATE_ANNOTATION = "gitops-bot.io/recreate-on-immutable"

DEFAULT_TOOLING = f"gitops-bot/v{__version__}"
PARENT_PREFIX = "gitops-bot."

FOREIGN_TOOLING = (
    "ApplySet parent {parent} is managed by tooling {theirs!r}, not {ours!r}; the bot will not "
    "change a set that belongs to another tool (set GITOPS_APPLYSET_TOOLING to share it)"
)
WRONG_ID = "ApplySet parent {parent} has label {label}={got!r}, expected {want!r}"
LABEL_IN_INPUT = "{ref} already sets label {label}={got!r}; the bot manages that label"


def applyset_id(*, name: str, namespace: str, kind: str = "Secret", group: str = "") -> str:
    """kubectl's ApplySet id: ``applyset-<base64url(sha256(name.namespace.kind.group))>-v1``
    (URL-safe base64 without padding)."""
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return f"applyset-{base64.urlsafe_b64encode(digest).decode().rstrip('=')}-v1"


def parent_name(app: str) -> str:
    """The parent Secret's name for an app: ``gitops-bot.<app>``, lower-cased and with '_'
    (allowed in app names, not in object names) turned into '-'."""
    return PARENT_PREFIX + re.sub(r"[^a-z0-9.-]", "-", app.lower())


def group_kind(api_version: str, kind: str) -> str:
    """``Kind.group`` (``Kind`` for the core group), kubectl's GroupKind string."""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return f"{kind}.{group}" if group else kind


def split_group_kind(value: str) -> tuple[str, str]:
    """``Deployment.apps`` -> ``("apps", "Deployment")``; ``ConfigMap`` -> ``("", "ConfigMap")``."""
    kind, _, group = value.partition(".")
    return group, kind


def tooling_name(tooling: str) -> str:
    """The tool part of ``name/version`` (kubectl compares only this part)."""
    return tooling.rpartition("/")[0] if "/" in tooling else tooling


@dataclass(frozen=True)
class ParentState:
    """What a live parent says: the recorded kinds and namespaces, and the deployed commit."""

    exists: bool
    group_kinds: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    commit: str | None = None
    applied_at: str | None = None
    tooling: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class ApplySet:
    """One app's ApplySet on one target."""

    name: str
    namespace: str
    tooling: str = DEFAULT_TOOLING
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", applyset_id(name=self.name, namespace=self.namespace))

    @classmethod
    def for_app(cls, app: str, namespace: str, *, tooling: str = DEFAULT_TOOLING) -> ApplySet:
        return cls(name=parent_name(app), namespace=namespace, tooling=tooling)

    @property
    def label(self) -> str:
        return f"Secret {self.namespace}/{self.name}"

    @property
    def selector(self) -> str:
        return f"{PART_OF_LABEL}={self.id}"

    def parent_field_manager(self) -> str:
        """The field manager of the ApplySet metadata on the parent: kubectl's convention."""
        return f"{tooling_name(self.tooling)}-applyset"

    def label_member(self, obj: Obj, *, ref: str) -> Obj:
        """A copy of ``obj`` carrying the part-of label (metadata copied, the rest shared)."""
        meta = dict(obj.get("metadata") or {})
        labels = dict(meta.get("labels") or {})
        got = labels.get(PART_OF_LABEL)
        if got is not None and got != self.id:
            raise ApplySetError(LABEL_IN_INPUT.format(ref=ref, label=PART_OF_LABEL, got=got))
        labels[PART_OF_LABEL] = self.id
        meta["labels"] = labels
        out = dict(obj)
        out["metadata"] = meta
        return out

    def parent_object(self, *, group_kinds: Iterable[str], namespaces: Iterable[str]) -> Obj:
        """The parent's ApplySet metadata as an apply patch (kubectl's fields, nothing else)."""
        extra = sorted({ns for ns in namespaces if ns and ns != self.namespace})
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {ID_LABEL: self.id},
                "annotations": {
                    TOOLING_ANNOTATION: self.tooling,
                    GROUP_KINDS_ANNOTATION: ",".join(sorted(set(group_kinds))),
                    NAMESPACES_ANNOTATION: ",".join(extra),
                },
            },
        }

    def commit_patch(self, *, commit: str, applied_at: str, digest: str | None = None) -> Obj:
        """The bot's own record on the parent (applied with the bot's field manager, so a
        record without ``digest`` removes an older one: it would describe another commit)."""
        annotations = {COMMIT_ANNOTATION: commit, APPLIED_AT_ANNOTATION: applied_at}
        if digest:
            annotations[DIGEST_ANNOTATION] = digest
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": annotations,
            },
        }

    def parse_parent(self, live: Obj | None) -> ParentState:
        """The state of the live parent; raises :class:`ApplySetError` when it belongs to other
        tooling or carries the wrong id (kubectl refuses the same way)."""
        if live is None:
            return ParentState(exists=False)
        meta = live.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        tooling = annotations.get(TOOLING_ANNOTATION)
        if tooling is not None and tooling_name(tooling) != tooling_name(self.tooling):
            raise ApplySetError(
                FOREIGN_TOOLING.format(parent=self.label, theirs=tooling, ours=self.tooling)
            )
        got = labels.get(ID_LABEL)
        if tooling is not None and got != self.id:
            raise ApplySetError(
                WRONG_ID.format(parent=self.label, label=ID_LABEL, got=got, want=self.id)
            )
        gks = annotations.get(GROUP_KINDS_ANNOTATION) or ""
        nss = annotations.get(NAMESPACES_ANNOTATION) or ""
        return ParentState(
            exists=True,
            group_kinds=frozenset(g for g in gks.split(",") if g),
            namespaces=frozenset({self.namespace, *(n for n in nss.split(",") if n)}),
            commit=annotations.get(COMMIT_ANNOTATION) or None,
            applied_at=annotations.get(APPLIED_AT_ANNOTATION) or None,
            tooling=tooling,
            digest=annotations.get(DIGEST_ANNOTATION) or None,
        )
