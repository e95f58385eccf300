"""Normalize, mask and diff Kubernetes objects: the pure core shared by every engine.

The offline diff (base commit vs head commit), the live preview (server-side dry-run result vs the
live object), the deploy report and drift detection all turn a pair of objects into one unified
YAML diff with the functions here, so they agree on three things:

* **what is noise** — :func:`normalize` drops the fields only the API server writes;
* **what is secret** — :func:`mask_secrets` replaces every Secret value by a placeholder that says
  whether the value is the same or changed, and nothing else;
* **what a diff looks like** — :func:`object_diff` dumps both sides in one canonical YAML form.

No I/O here: plain dicts in, strings and :mod:`bot.model` results out.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml

from bot.model import (
    AppResult,
    Change,
    Manifest,
    Obj,
    ObjectChange,
    ObjectError,
    ObjectHealth,
    ObjectRef,
    RunResult,
    Source,
)

__all__ = [
    "LAST_APPLIED_ANNOTATION",
    "REDACTED",
    "REDACTED_AFTER",
    "REDACTED_BEFORE",
    "diff_app",
    "dump_yaml",
    "is_secret",
    "mask_secrets",
    "normalize",
    "object_diff",
    "redact_values",
    "secret_values",
]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Placeholders for Secret values. They never depend on the value (no length, no hash), only on
# whether the two sides hold the same value, so a diff shows "key added / removed / changed".
REDACTED = "<redacted>"
REDACTED_BEFORE = "<redacted: before>"
REDACTED_AFTER = "<redacted: after>"

PRUNE_OFF_NOTE = "{ref} is no longer in Git but is left in the cluster because prune is off"

# metadata fields the API server sets or maintains itself; a manifest never declares them:
_SERVER_METADATA_FIELDS = (
    "managedFields",  # server-side apply bookkeeping, rewritten on every write
    "resourceVersion",  # optimistic-concurrency token, changes on every write
    "uid",  # assigned at creation
    "generation",  # bumped by the server on spec changes
    "creationTimestamp",  # set at creation (kubectl's generated YAML even carries it as null)
    "selfLink",  # deprecated, still returned by old servers
    "deletionTimestamp",  # set when deletion starts (finalizers pending)
    "deletionGracePeriodSeconds",  # set together with deletionTimestamp
)

# annotations written by tools or controllers rather than by the author of the manifest:
_SERVER_ANNOTATIONS = (
    # kubectl's client-side-apply copy of the whole manifest: a second copy of everything,
    # including Secret values, and absent with server-side apply
    LAST_APPLIED_ANNOTATION,
    # the Deployment controller's rollout counter
    "deployment.kubernetes.io/revision",
)

# The canonical key order of a dumped object: the fields people look for first, then the rest
# alphabetically (nested mappings are alphabetical throughout, like `kubectl diff`).
_TOP_LEVEL_ORDER = ("apiVersion", "kind", "metadata", "spec", "data")
_METADATA_ORDER = ("name", "namespace")


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data; several times faster than copy.deepcopy and, unlike it,
    never shares sub-objects (which YAML would otherwise dump as anchors and aliases)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def normalize(obj: Obj) -> Obj:
    """A copy of ``obj`` without what only the server writes.

    Dropped, because a manifest in Git never declares them and they change on their own:

    * ``metadata.managedFields``, ``resourceVersion``, ``uid``, ``generation``,
      ``creationTimestamp``, ``selfLink``, ``deletionTimestamp``, ``deletionGracePeriodSeconds``;
    * ``status`` as a whole (the controllers' report, not desired state);
    * the annotations ``kubectl.kubernetes.io/last-applied-configuration`` (kubectl's copy of the
      previous manifest) and ``deployment.kubernetes.io/revision`` (the rollout counter);
    * ``metadata.annotations`` / ``metadata.labels`` when that leaves them empty (or they were
      empty or null to begin with), so ``labels: {}`` equals no labels.

    Nothing else is dropped — not even server defaults such as a Service's ``clusterIP``: the live
    diff compares the server-side dry-run result of applying with the live object, both already
    defaulted by the same server, so defaults cancel out and only real changes remain.
    """
    return _strip(_copy(obj))


def _strip(obj: Obj) -> Obj:
    """``obj`` without the server-written fields, copying only the mappings it changes (the
    top level, metadata and annotations); everything below is shared with ``obj``. For callers
    that never let the result escape, this saves most of a deep copy."""
    out: Obj = dict(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in _SERVER_METADATA_FIELDS}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            meta["annotations"] = {
                k: v for k, v in annotations.items() if k not in _SERVER_ANNOTATIONS
            }
        for key in ("annotations", "labels"):
            if key in meta and not meta[key]:
                del meta[key]
        out["metadata"] = meta
    return out


def is_secret(obj: Obj | None) -> bool:
    """Whether values in ``obj`` must be masked: any object of kind Secret.

    The core Secret is ``v1``; an object of kind ``Secret`` in another API group is masked too,
    because masking too much only hides a diff while masking too little prints a secret."""
    return isinstance(obj, dict) and obj.get("kind") == "Secret"


class _Invalid:
    """A data value that is not valid base64: compared by its raw text, never decoded."""

    __slots__ = ("raw",)

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Invalid) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def _as_text(value: Any) -> str:
    # YAML may give an int or bool (`a: 1`) or null; the API would reject some of these, but the
    # diff must still compare them and must not crash.
    return "" if value is None else str(value)


def _decode(value: Any) -> bytes | _Invalid:
    text = _as_text(value)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return _Invalid(text)


def _secret_values_by_key(obj: Obj) -> dict[Any, bytes | _Invalid] | None:
    """The decoded values of a Secret, with ``stringData`` folded into ``data`` as the API server
    does it (stringData wins for a key in both); None when ``data``/``stringData`` is malformed."""
    values: dict[Any, bytes | _Invalid] = {}
    data = obj.get("data")
    string_data = obj.get("stringData")
    if data is not None and not isinstance(data, dict):
        return None
    if string_data is not None and not isinstance(string_data, dict):
        return None
    for key, value in (data or {}).items():
        values[key] = _decode(value)
    for key, value in (string_data or {}).items():
        values[key] = _as_text(value).encode()
    return values


def _mask_side(
    obj: Obj,
    values: dict[Any, bytes | _Invalid] | None,
    other: dict[Any, bytes | _Invalid] | None,
    *,
    has_other: bool,
    same_whole: bool,
    changed: str,
) -> Obj:
    """One side of a Secret with its values masked against the other side's values."""
    out: Obj = dict(obj)  # shallow: only top-level keys and metadata are replaced
    out.pop("stringData", None)
    out.pop("data", None)
    if values is None:
        # malformed data (not a mapping): hide it whole rather than guess which parts are values
        out["data"] = REDACTED if same_whole else changed
    elif values:  # an empty data map is stored as no data at all (omitempty)
        out["data"] = {
            key: changed
            if has_other and other is not None and key in other and other[key] != value
            else REDACTED
            for key, value in values.items()
        }
    return out


def _mask_last_applied(obj: Obj, other: Obj | None, changed: str) -> Obj:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict) or LAST_APPLIED_ANNOTATION not in annotations:
        return obj
    theirs: Any = None
    if other is not None:
        other_meta = other.get("metadata")
        if isinstance(other_meta, dict) and isinstance(other_meta.get("annotations"), dict):
            theirs = other_meta["annotations"].get(LAST_APPLIED_ANNOTATION)
    same = other is None or theirs == annotations[LAST_APPLIED_ANNOTATION]
    new_annotations = dict(annotations)
    new_annotations[LAST_APPLIED_ANNOTATION] = REDACTED if same else changed
    out = dict(obj)
    out["metadata"] = dict(meta, annotations=new_annotations)
    return out


def mask_secrets(old: Obj | None, new: Obj | None) -> tuple[Obj | None, Obj | None]:
    """Both sides with every Secret value replaced by a placeholder.

    ``stringData`` is folded into ``data`` first and values are compared decoded, so
    ``stringData: {a: x}`` equals ``data: {a: base64(x)}``; a value that is not valid base64 is
    compared by its raw text. A key whose value is the same on both sides (or that exists on one
    side only) becomes ``<redacted>``; a changed value becomes ``<redacted: before>`` on the old
    side and ``<redacted: after>`` on the new one. The placeholders depend on nothing but that
    comparison — not the length, not a hash — so the diff reveals which keys were added, removed
    or changed and nothing about any value. The ``kubectl.kubernetes.io/last-applied-configuration``
    annotation of a Secret (a copy of its values) is masked the same way.

    Non-Secrets are returned as they are (not copied). Secrets are returned as new dicts; the
    inputs are never modified. This is the one masking function for every engine.
    """
    old_secret, new_secret = is_secret(old), is_secret(new)
    if not old_secret and not new_secret:
        return old, new
    old_values = _secret_values_by_key(old) if old is not None and old_secret else None
    new_values = _secret_values_by_key(new) if new is not None and new_secret else None
    both = old is not None and new is not None and old_secret and new_secret
    # for malformed data the only safe comparison is of the raw fields as a whole
    same_whole = not both or (
        old is not None
        and new is not None
        and (old.get("data"), old.get("stringData")) == (new.get("data"), new.get("stringData"))
    )
    masked_old: Obj | None = old
    masked_new: Obj | None = new
    if old is not None and old_secret:
        masked_old = _mask_side(
            old,
            old_values,
            new_values,
            has_other=both,
            same_whole=same_whole,
            changed=REDACTED_BEFORE,
        )
        masked_old = _mask_last_applied(masked_old, new if both else None, REDACTED_BEFORE)
    if new is not None and new_secret:
        masked_new = _mask_side(
            new,
            new_values,
            old_values,
            has_other=both,
            same_whole=same_whole,
            changed=REDACTED_AFTER,
        )
        masked_new = _mask_last_applied(masked_new, old if both else None, REDACTED_AFTER)
    return masked_old, masked_new


def secret_values(obj: Obj) -> list[str]:
    """Every Secret value in ``obj`` in each form it could be printed in: the raw ``data`` text,
    its decoded text (when it is UTF-8) and each ``stringData`` value with its base64 form.

    Empty for non-Secrets. Tests and the report's self-checks use it to assert that no value
    ever appears in any output."""
    if not is_secret(obj):
        return []
    found: list[str] = []
    data = obj.get("data")
    if isinstance(data, dict):
        for value in data.values():
            text = _as_text(value)
            found.append(text)
            decoded = _decode(value)
            if isinstance(decoded, bytes):
                with contextlib.suppress(UnicodeDecodeError):
                    found.append(decoded.decode())
    string_data = obj.get("stringData")
    if isinstance(string_data, dict):
        for value in string_data.values():
            text = _as_text(value)
            found.append(text)
            found.append(base64.b64encode(text.encode()).decode())
    # a value can only leak if it is printed; '' cannot be found in any output meaningfully
    return [v for v in dict.fromkeys(found) if v]


# -- canonical YAML ---------------------------------------------------------------------------


def _key(key: Any) -> tuple[str, str]:
    # mixed key types (YAML allows int keys) must still sort deterministically
    return (type(key).__name__, str(key))


def _ordered(value: Any, first: Sequence[str] = ()) -> Any:
    if isinstance(value, dict):
        keys = [k for k in first if k in value]
        keys += sorted((k for k in value if k not in first), key=_key)
        return {
            k: _ordered(value[k], _METADATA_ORDER if k == "metadata" and first else ())
            for k in keys
        }
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Block-style YAML, no anchors/aliases, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: Any, value: str) -> Any:
    # A literal block makes a changed line of an embedded file one changed line of the diff.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(obj: Obj) -> str:
    """``obj`` as block-style YAML in the canonical key order (apiVersion, kind, metadata, spec,
    data, then the rest alphabetically; nested mappings alphabetical; metadata name and
    namespace first). Long lines are never folded."""
    text: str = yaml.dump(
        _ordered(obj, _TOP_LEVEL_ORDER),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
    return text


def _label(side: str, ref: ObjectRef) -> str:
    return f"{side}/{ref}"


def _prepare(old: Obj | None, new: Obj | None) -> tuple[Obj | None, Obj | None]:
    # _strip, not normalize: the results are only compared and dumped, never handed out
    return mask_secrets(
        _strip(old) if old is not None else None,
        _strip(new) if new is not None else None,
    )


def _unified(old: Obj | None, new: Obj | None, *, ref: ObjectRef, labels: tuple[str, str]) -> str:
    old_lines = dump_yaml(old).splitlines(keepends=True) if old is not None else []
    new_lines = dump_yaml(new).splitlines(keepends=True) if new is not None else []
    lines = difflib.unified_diff(
        old_lines,
        new_lines,
        fromfile=_label(labels[0], ref) if old is not None else "/dev/null",
        tofile=_label(labels[1], ref) if new is not None else "/dev/null",
        n=3,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def object_diff(
    old: Obj | None,
    new: Obj | None,
    *,
    ref: ObjectRef,
    labels: tuple[str, str] = ("live", "desired"),
) -> str:
    """The unified diff of two versions of one object, normalized and with Secrets masked.

    Headers read ``--- live/Deployment web/guestbook`` / ``+++ desired/Deployment web/guestbook``
    (``labels`` names the two sides, e.g. ``("base", "head")`` offline); a missing side is
    ``/dev/null``, so a creation shows every line added. Returns '' when both sides are equal."""
    old_n, new_n = _prepare(old, new)
    if old_n == new_n:
        return ""
    return _unified(old_n, new_n, ref=ref, labels=labels)


def _index(manifests: Iterable[Manifest]) -> dict[tuple[str, str, str, str], Manifest]:
    # Duplicates are the manifest engine's error to report (it names both files); here the
    # first declaration wins so the diff stays deterministic.
    index: dict[tuple[str, str, str, str], Manifest] = {}
    for manifest in manifests:
        index.setdefault(manifest.ref.key, manifest)
    return index


def diff_app(
    *,
    app: str,
    target: str,
    old: Sequence[Manifest],
    new: Sequence[Manifest],
    commit: str | None = None,
    prune: bool = True,
    labels: tuple[str, str] = ("base", "head"),
) -> AppResult:
    """The offline diff of one app: ``old`` (e.g. rendered at the base commit) vs ``new`` (head).

    Objects are matched by :attr:`ObjectRef.key` (group, kind, namespace, name), so a change of
    API version only (``apps/v1beta2`` → ``apps/v1``) is an update, not a delete plus a create.
    Each object becomes one :class:`ObjectChange` (CREATE / UPDATE / DELETE / UNCHANGED) with its
    masked diff and the source of the new side (the old side's for deletions). With ``prune``
    off, objects only in ``old`` are not deletions: they get a note in :attr:`AppResult.notes`.
    Changes are sorted by key, so the output is stable whatever the input order.
    """
    old_index = _index(old)
    new_index = _index(new)
    result = AppResult(name=app, target=target, commit=commit)
    changes: list[tuple[tuple[str, str, str, str], ObjectChange]] = []
    for key, manifest in new_index.items():
        ref = manifest.ref
        before = old_index.get(key)
        if before is None:
            _, new_n = _prepare(None, manifest.obj)
            diff = _unified(None, new_n, ref=ref, labels=labels)
            changes.append((key, _change(ref, Change.CREATE, diff, manifest.source)))
            continue
        old_n, new_n = _prepare(before.obj, manifest.obj)
        if old_n == new_n:
            changes.append((key, _change(ref, Change.UNCHANGED, "", manifest.source)))
        else:
            diff = _unified(old_n, new_n, ref=ref, labels=labels)
            changes.append((key, _change(ref, Change.UPDATE, diff, manifest.source)))
    for key, manifest in old_index.items():
        if key in new_index:
            continue
        ref = manifest.ref
        if not prune:
            result.notes.append(PRUNE_OFF_NOTE.format(ref=ref))
            continue
        old_n, _ = _prepare(manifest.obj, None)
        diff = _unified(old_n, None, ref=ref, labels=labels)
        changes.append((key, _change(ref, Change.DELETE, diff, manifest.source)))
    changes.sort(key=lambda item: item[0])
    result.changes = [change for _, change in changes]
    result.notes.sort()
    return result


def _change(ref: ObjectRef, change: Change, diff: str, source: Source | None) -> ObjectChange:
    return ObjectChange(ref=ref, change=change, diff=diff, source=source)


# -- defence in depth: values known to be secret, wherever they turn up ----------------------

MIN_REDACT_LENGTH = 4  # shorter values ("1", "yes") would blank out ordinary words


def rendered_secret_values(manifests: Iterable[Manifest]) -> list[str]:
    """Every Secret value declared in ``manifests`` (for :func:`redact_values`)."""
    return [value for m in manifests if is_secret(m.obj) for value in secret_values(m.obj)]


def redact_values(
    result: RunResult, values: Iterable[str], *, min_length: int = MIN_REDACT_LENGTH
) -> RunResult:
    """A copy of ``result`` with every occurrence of any of ``values`` replaced by
    ``<redacted>`` in diffs, error messages, notes and health messages.

    Diffs are already masked by :func:`mask_secrets`; this catches what masking cannot see — a
    server error message or a controller condition that quotes a value back. Callers pass
    :func:`secret_values` of the Secrets they rendered. Values shorter than ``min_length`` are
    skipped, since replacing them would mangle ordinary text. ``result`` is not modified."""
    wanted = sorted({v for v in values if len(v) >= min_length}, key=len, reverse=True)
    if not wanted:
        return result
    pattern = re.compile("|".join(re.escape(v) for v in wanted))

    def scrub(text: str) -> str:
        return pattern.sub(REDACTED, text) if text else text

    return dataclasses.replace(
        result,
        apps=[_redact_app(app, scrub) for app in result.apps],
        errors=[_redact_error(e, scrub) for e in result.errors],
    )


def _redact_error(error: ObjectError, scrub: Callable[[str], str]) -> ObjectError:
    return dataclasses.replace(error, message=scrub(error.message))


def _redact_app(app: AppResult, scrub: Callable[[str], str]) -> AppResult:
    return dataclasses.replace(
        app,
        changes=[
            dataclasses.replace(
                c, diff=scrub(c.diff), pr_diff=scrub(c.pr_diff), drift_diff=scrub(c.drift_diff)
            )
            for c in app.changes
        ],
        errors=[_redact_error(e, scrub) for e in app.errors],
        health=[_redact_health(h, scrub) for h in app.health],
        notes=[scrub(n) for n in app.notes],
        restarts=[
            dataclasses.replace(r, reasons=tuple(scrub(x) for x in r.reasons)) for r in app.restarts
        ],
    )


def _redact_health(health: ObjectHealth, scrub: Callable[[str], str]) -> ObjectHealth:
    return dataclasses.replace(health, reason=scrub(health.reason), message=scrub(health.message))
