"""Safe, bounded YAML/JSON loading for files of a checkout.

Everything the bot reads from a repository is untrusted. This module is the one place that turns
bytes into Python objects, with limits that make hostile input fail fast with a clear message:

* file size (default 5 MB per file),
* nesting depth (default 100 levels),
* alias expansion: every node's *expanded* size is computed while composing, so a
  "billion laughs" file is refused as soon as its expanded size passes the limit, before any
  large object is built; the number of alias nodes is bounded too,
* duplicate mapping keys are an error (YAML parsers silently keep the last one, so the object
  Git shows and the object applied could differ),
* every path must resolve inside the checkout (symlinks escaping it are refused).

The parser is libyaml's (``CParser``) when available; objects are built straight from its events
in one loop (:class:`_Builder`) so the limits are enforced per node, before anything large is
built. Timestamps stay strings, as Kubernetes reads them.

Process-wide state: none. Nothing read from a repository is kept between calls — no parsed-file
cache, no cache of scalar values — so a long-running worker holds no Secret value (nor any other
value) of a job it has finished (tests/test_manifests_loader.py searches the garbage
collector's view of the process for them). Parsing every file of a job costs a few
milliseconds per thousand objects more than reusing earlier parses did.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from bot.errors import RenderError

_Parser: Any
try:  # libyaml parses several times faster; PyYAML's own parser is the fallback
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _Parser = yaml.SafeLoader  # only its event methods (get_event) are used


@dataclass(frozen=True)
class Limits:
    """Bounds applied to every file read from a repository."""

    max_file_bytes: int = 5 * 1024 * 1024
    max_depth: int = 100
    max_aliases: int = 10_000
    max_expanded_nodes: int = 2_000_000  # per file, aliases counted as often as they expand


DEFAULT_LIMITS = Limits()
RENDERED_LIMITS = Limits(max_file_bytes=100 * 1024 * 1024, max_expanded_nodes=50_000_000)
"""Limits for the output of kustomize/helm: a whole app in one stream, so larger."""

MSG_TOO_BIG = "file is {size} bytes, more than the limit of {limit} bytes"
MSG_TOO_DEEP = "YAML nesting deeper than {limit} levels"
MSG_TOO_MANY_ALIASES = "more than {limit} YAML aliases"
MSG_EXPANSION = (
    "YAML aliases expand to more than {limit} nodes (a 'billion laughs' file?); refusing to load it"
)
MSG_MERGE_TYPE = "a merge key (<<) needs a mapping or a list of mappings"
MSG_MERGE_POSITION = "a merge key (<<) can only be a mapping key; quote it ('<<') for the text"
MSG_RECURSIVE = "recursive YAML alias (a node containing itself)"
MSG_DUPLICATE_KEY = "duplicate key {key!r} (first on line {first})"
MSG_OUTSIDE = "{path} resolves outside the repository checkout; refusing to read it"


class _Limited(Exception):
    """Raised while building; turned into a RenderError with file and line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _KubeResolver(Resolver):
    """YAML 1.1 implicit types minus timestamps: Kubernetes keeps `2024-01-01` a string."""


_KubeResolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in Resolver.yaml_implicit_resolvers.items()
}

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_STRING_TAGS = frozenset({_STR, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"})
_BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}
_IMPLICIT = _KubeResolver.yaml_implicit_resolvers
_SCALAR_CONSTRUCTORS = SafeConstructor.yaml_constructors
MSG_BAD_SCALAR = "the value does not fit its tag {tag}"
MSG_BINARY = (
    "!!binary values cannot be sent to Kubernetes (objects travel as JSON): write the base64 "
    "text as a plain string, e.g. under a Secret's or ConfigMap's data/binaryData"
)
MSG_NOT_FINITE = "NaN and infinite numbers cannot be sent to Kubernetes (objects travel as JSON)"


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


_NO_KEY = object()


def _resolve_plain(value: str) -> str:
    for tag, regexp in _IMPLICIT.get(value[:1], ()):
        if regexp.match(value):
            return tag  # type: ignore[no-any-return]
    return _STR


class _Frame:
    """A mapping or sequence being built."""

    __slots__ = (
        "anchor",
        "container",
        "event",
        "is_map",
        "key",
        "key_events",
        "lines",
        "merges",
        "start",
    )

    def __init__(self, container: Any, anchor: str | None, start: int, event: Any) -> None:
        self.container = container
        self.event = event  # the start event, for its line when needed
        self.is_map = isinstance(container, dict)
        self.anchor = anchor
        self.start = start
        self.key: Any = _NO_KEY
        # the start event of each key, in insertion order, for "first on line N"
        self.key_events: list[Any] = []
        self.merges: list[Any] | None = None
        self.lines: list[int] | None = None  # item lines of a top-level `items:` sequence


class _Builder:
    """Builds Python objects straight from parser events, enforcing :class:`Limits`.

    Skipping PyYAML's node graph and generator-based constructor makes this faster than
    ``yaml.CSafeLoader`` while checking depth, alias count, expanded size (every alias costs
    the size of what it points to) and duplicate keys as it goes."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._constructor = SafeConstructor()

    def scalar(self, event: Any) -> Any:
        value: str = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value
            tag = _resolve_plain(value)
            if tag is _STR or tag == _STR:
                return value
        if tag in _STRING_TAGS:
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return _BOOLS[value.lower()]
        if tag == _INT and value.isdigit() and (value == "0" or value[0] != "0"):
            return int(value)
        if tag == _MERGE:
            return _MERGE_KEY
        make = _SCALAR_CONSTRUCTORS.get(tag)
        line = event.start_mark.line + 1
        if make is None or tag in (_MAP, _SEQ):
            raise _Limited(f"unsupported YAML tag {tag!r}", line)
        try:
            made = make(self._constructor, ScalarNode(tag, value, event.start_mark, event.end_mark))
        except (ValueError, TypeError):
            # Python's message would quote the value, and the value may be a secret.
            raise _Limited(MSG_BAD_SCALAR.format(tag=_short_tag(tag)), line) from None
        if isinstance(made, bytes):
            raise _Limited(MSG_BINARY, line)
        if isinstance(made, float) and not math.isfinite(made):
            raise _Limited(MSG_NOT_FINITE, line)
        if made is not None and not isinstance(made, str | int | float):
            # !!set, !!omap, !!pairs on a scalar: PyYAML hands back an unfinished generator
            raise _Limited(f"unsupported YAML tag {tag!r}", line)
        return made

    def documents(self, parser: Any) -> Iterator[Document]:
        # Hot loop: event classes and limits live in locals, and line numbers are computed
        # only where needed (errors, document starts, `items:` entries).
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
        limits = self.limits
        max_depth = limits.max_depth
        max_expanded = limits.max_expanded_nodes
        index = 0
        no_key, merge_key = _NO_KEY, _MERGE_KEY
        get_event = parser.get_event
        # counted over the whole file, so many documents cannot add up to a bomb either
        expanded = 0
        aliases = 0
        while True:
            event = get_event()
            kind = type(event)
            if kind is yaml.StreamEndEvent:
                return
            if kind is not yaml.DocumentStartEvent:
                continue
            anchors: dict[str, tuple[Any, int]] = {}
            building: set[str] = set()
            stack: list[_Frame] = []
            root: Any = None
            root_line = event.start_mark.line + 1
            items_lines: list[int] | None = None
            while True:
                event = get_event()
                kind = type(event)
                if kind is scalar_event:
                    if event.tag is None and not event.implicit[0]:
                        value = event.value  # quoted: always a string
                    else:
                        value = self.scalar(event)
                    expanded += 1
                    if event.anchor is not None:
                        anchors[event.anchor] = (value, 1)
                    # the common case, inlined: a scalar key or value inside a collection
                    if stack:
                        parent = stack[-1]
                        container = parent.container
                        if parent.is_map:
                            key = parent.key
                            if key is no_key:
                                if value in container:
                                    first = parent.key_events[list(container).index(value)]
                                    raise _Limited(
                                        MSG_DUPLICATE_KEY.format(key=value, first=_line(first)),
                                        _line(event),
                                    )
                                parent.key = value
                                if value is not merge_key:  # merged keys arrive at the end
                                    parent.key_events.append(event)
                            elif key is merge_key:
                                raise _Limited(MSG_MERGE_TYPE, _line(event))
                            elif value is merge_key:
                                raise _Limited(MSG_MERGE_POSITION, _line(event))
                            else:
                                container[key] = value
                                parent.key = no_key
                        else:
                            if value is merge_key:
                                raise _Limited(MSG_MERGE_POSITION, _line(event))
                            container.append(value)
                            if parent.lines is not None:
                                parent.lines.append(_line(event))
                        continue
                    is_scalar = True
                    start = event
                elif kind is map_start or kind is seq_start:
                    if len(stack) >= max_depth:
                        raise _Limited(MSG_TOO_DEEP.format(limit=max_depth), _line(event))
                    is_map = kind is map_start
                    tag = event.tag
                    if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                        raise _Limited(f"unsupported YAML tag {tag!r}", _line(event))
                    frame = _Frame({} if is_map else [], event.anchor, expanded, event)
                    if event.anchor is not None:
                        building.add(event.anchor)
                    if not stack:
                        root_line = _line(event)
                    elif (
                        not is_map
                        and len(stack) == 1
                        and stack[0].is_map
                        and stack[0].key == "items"
                    ):
                        frame.lines = []
                    stack.append(frame)
                    continue
                elif kind is map_end or kind is seq_end:
                    frame = stack.pop()
                    value = frame.container
                    if frame.merges:
                        _apply_merges(value, frame.merges, _line(event))
                    expanded += 1
                    weight = expanded - frame.start
                    if frame.anchor is not None:
                        building.discard(frame.anchor)
                        anchors[frame.anchor] = (value, weight)
                    if frame.lines is not None:
                        items_lines = frame.lines
                    is_scalar = False
                    start = frame.event  # where this collection started, for its parent
                elif kind is alias_event:
                    name = event.anchor
                    if name in building:
                        raise _Limited(MSG_RECURSIVE, _line(event))
                    if name not in anchors:
                        raise _Limited(f"undefined YAML alias {name!r}", _line(event))
                    value, weight = anchors[name]
                    aliases += 1
                    if aliases > limits.max_aliases:
                        raise _Limited(
                            MSG_TOO_MANY_ALIASES.format(limit=limits.max_aliases), _line(event)
                        )
                    expanded += weight
                    is_scalar = not isinstance(value, dict | list)
                    start = event
                elif kind is yaml.DocumentEndEvent:
                    if items_lines is not None and not (
                        isinstance(root, dict) and isinstance(root.get("items"), list)
                    ):
                        items_lines = None
                    yield Document(index=index, line=root_line, data=root, item_lines=items_lines)
                    index += 1
                    break
                else:  # pragma: no cover - the parser emits nothing else inside a document
                    continue
                if expanded > max_expanded:
                    raise _Limited(MSG_EXPANSION.format(limit=max_expanded), _line(start))
                if value is merge_key and (
                    not stack or not stack[-1].is_map or stack[-1].key is not no_key
                ):
                    raise _Limited(MSG_MERGE_POSITION, _line(start))
                if not stack:
                    root = value
                    if kind is not map_end and kind is not seq_end:
                        root_line = _line(event)
                    continue
                parent = stack[-1]
                if parent.is_map:
                    if parent.key is no_key:
                        if not is_scalar:
                            raise _Limited("mapping keys must be plain values", _line(start))
                        if value in parent.container:
                            first = parent.key_events[list(parent.container).index(value)]
                            raise _Limited(
                                MSG_DUPLICATE_KEY.format(key=value, first=_line(first)),
                                _line(start),
                            )
                        parent.key = value
                        if value is not merge_key:  # merged keys arrive at the end
                            parent.key_events.append(start)
                    else:
                        if parent.key is merge_key:
                            if parent.merges is None:
                                parent.merges = []
                            parent.merges.append(value)
                        else:
                            parent.container[parent.key] = value
                        parent.key = no_key
                else:
                    parent.container.append(value)
                    if parent.lines is not None:
                        parent.lines.append(_line(start))


def _line(event: Any) -> int:
    """The 1-based line an event starts on."""
    return int(event.start_mark.line) + 1


class _MergeKey:
    """Marker for the YAML merge key ``<<``."""


_MERGE_KEY = _MergeKey()


def _apply_merges(target: dict[Any, Any], merges: list[Any], line: int) -> None:
    """YAML merge keys: explicit keys win, then earlier merged mappings over later ones."""
    for merged in merges:
        sources = merged if isinstance(merged, list) else [merged]
        for source in sources:
            if not isinstance(source, dict):
                raise _Limited(MSG_MERGE_TYPE, line)
            for key, value in source.items():
                target.setdefault(key, value)


@dataclass
class Document:
    """One document of a file: 0-based index, 1-based start line and value.

    ``item_lines`` holds the start line of each entry of a top-level ``items:`` list (for
    ``kind: List``) when the document came from YAML."""

    index: int
    line: int
    data: Any
    item_lines: list[int] | None = None


def load_documents(text: str, *, name: str, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Every document of a YAML stream; raises :class:`RenderError` naming ``name`` and the
    line."""
    parser = _Parser(text)
    try:
        return list(_Builder(limits).documents(parser))
    except _Limited as exc:
        raise RenderError(exc.message, file=name, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise RenderError(
            f"invalid YAML: {problem}", file=name, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise RenderError(f"invalid YAML: {exc}", file=name) from None
    except (ValueError, TypeError):  # never quote Python's text: it may carry a secret value
        raise RenderError("invalid YAML value", file=name) from None
    finally:
        parser.dispose()


def load_json(text: str, *, name: str, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A JSON file as one document (line 1). JSON has no aliases; depth is still bounded."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RenderError(f"invalid JSON: {exc.msg}", file=name, line=exc.lineno) from None
    except RecursionError:
        raise RenderError(MSG_TOO_DEEP.format(limit=limits.max_depth), file=name) from None
    if _depth(data, limits.max_depth) > limits.max_depth:
        raise RenderError(MSG_TOO_DEEP.format(limit=limits.max_depth), file=name)
    return Document(index=0, line=1, data=data)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of plain JSON data, stopping early once past ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return deepest


class PathGuard:
    """:func:`inside` for many paths under one root, resolving each directory only once.

    Short-lived on purpose (one walk of one checkout): a cache outliving the tree could
    trust a directory that has since been replaced by a symlink."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._dirs: dict[str, bool] = {}

    def _real_inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self._prefix)

    def inside(self, path: Path | str) -> bool:
        text = os.fspath(path)
        if ".." in text.split(os.sep):
            return self._real_inside(text)
        parent, _leaf = os.path.split(text)
        ok = self._dirs.get(parent)
        if ok is None:
            ok = self._dirs[parent] = self._real_inside(parent)
        if not ok:
            return False
        # the parent resolves inside: only a symlink as the last component can leave it
        return not os.path.islink(text) or self._real_inside(text)


def inside(root: Path | str, path: Path | str) -> bool:
    """Whether ``path`` (after resolving symlinks) is ``root`` or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def read_text(root: Path, rel: str, *, limits: Limits = DEFAULT_LIMITS, check: bool = True) -> str:
    """Read the repository file ``rel`` (relative to ``root``) as UTF-8, within the limits.

    Refuses paths (or symlinks) resolving outside ``root`` and files over the size limit.
    ``check=False`` skips the symlink check for callers that already did it while listing."""
    path = os.path.join(root, rel)
    if check and not inside(root, path):
        raise RenderError(MSG_OUTSIDE.format(path=rel), file=rel)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limits.max_file_bytes:
                raise RenderError(
                    MSG_TOO_BIG.format(size=size, limit=limits.max_file_bytes), file=rel
                )
            # Ask for what fstat promised and a byte more, not for the limit: a read of n bytes
            # allocates n bytes first, and 5 MB per file cost more than the reading. A file that
            # is longer than it said (a device, a file being written) is read on to the limit.
            raw = handle.read(size + 1)
            if len(raw) > size:
                raw += handle.read(limits.max_file_bytes + 1 - len(raw))
    except OSError as exc:
        raise RenderError(f"cannot read file: {exc.strerror}", file=rel) from None
    if len(raw) > limits.max_file_bytes:
        raise RenderError(MSG_TOO_BIG.format(size=len(raw), limit=limits.max_file_bytes), file=rel)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RenderError("file is not valid UTF-8", file=rel, line=line) from None


def load_file(root: Path, rel: str, *, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """The documents of one repository file (``.json`` parsed as JSON, anything else as YAML)."""
    text = read_text(root, rel, limits=limits)
    if rel.endswith(".json"):
        return [load_json(text, name=rel, limits=limits)]
    return load_documents(text, name=rel, limits=limits)
