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
in one loop so the limits are enforced per node (and faster than ``yaml.CSafeLoader``).
Timestamps stay strings, as Kubernetes reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import Node, ScalarNode
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
        "is_map",
        "key",
        "key_line",
        "line",
        "lines",
        "merges",
        "start",
    )

    def __init__(self, container: Any, anchor: str | None, start: int, line: int) -> None:
        self.container = container
        self.line = line
        self.is_map = isinstance(container, dict)
        self.anchor = anchor
        self.start = start
        self.key: Any = _NO_KEY
        self.key_line = 0
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
        if make is None or tag in (_MAP, _SEQ):
            raise _Limited(f"unsupported YAML tag {tag!r}", event.start_mark.line + 1)
        return make(self._constructor, ScalarNode(tag, value, event.start_mark, event.end_mark))

    def documents(self, parser: Any) -> Iterator[Document]:
        limits = self.limits
        max_depth = limits.max_depth
        max_expanded = limits.max_expanded_nodes
        index = 0
        get_event = parser.get_event
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
            expanded = 0
            aliases = 0
            root: Any = None
            root_line = event.start_mark.line + 1
            items_lines: list[int] | None = None
            have_root = False
            while True:
                event = get_event()
                kind = type(event)
                line = event.start_mark.line + 1
                if kind is yaml.ScalarEvent:
                    value = self.scalar(event)
                    expanded += 1
                    if event.anchor is not None:
                        anchors[event.anchor] = (value, 1)
                    is_scalar = True
                elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    if len(stack) >= max_depth:
                        raise _Limited(MSG_TOO_DEEP.format(limit=max_depth), line)
                    is_map = kind is yaml.MappingStartEvent
                    tag = event.tag
                    if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
                        raise _Limited(f"unsupported YAML tag {tag!r}", line)
                    frame = _Frame({} if is_map else [], event.anchor, expanded, line)
                    if event.anchor is not None:
                        building.add(event.anchor)
                    if (
                        not is_map
                        and len(stack) == 1
                        and stack[0].is_map
                        and stack[0].key == "items"
                    ):
                        frame.lines = []
                    if not stack and not have_root:
                        root_line = line
                    stack.append(frame)
                    continue
                elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    frame = stack.pop()
                    value = frame.container
                    if frame.merges:
                        _apply_merges(value, frame.merges, line)
                    expanded += 1
                    weight = expanded - frame.start
                    if frame.anchor is not None:
                        building.discard(frame.anchor)
                        anchors[frame.anchor] = (value, weight)
                    if frame.lines is not None:
                        items_lines = frame.lines
                    is_scalar = False
                    line = frame.line  # where this collection started, for its parent
                elif kind is yaml.AliasEvent:
                    name = event.anchor
                    if name in building:
                        raise _Limited(MSG_RECURSIVE, line)
                    if name not in anchors:
                        raise _Limited(f"undefined YAML alias {name!r}", line)
                    value, weight = anchors[name]
                    aliases += 1
                    if aliases > limits.max_aliases:
                        raise _Limited(MSG_TOO_MANY_ALIASES.format(limit=limits.max_aliases), line)
                    expanded += weight
                    is_scalar = not isinstance(value, dict | list)
                elif kind is yaml.DocumentEndEvent:
                    if items_lines is not None and not (
                        isinstance(root, dict) and isinstance(root.get("items"), list)
                    ):
                        items_lines = None
                    yield Document(
                        index=index, line=root_line, data=root, node=None, item_lines=items_lines
                    )
                    index += 1
                    break
                else:  # pragma: no cover - the parser emits nothing else inside a document
                    continue
                if expanded > max_expanded:
                    raise _Limited(MSG_EXPANSION.format(limit=max_expanded), line)
                if not stack:
                    root = value
                    have_root = True
                    if kind is yaml.ScalarEvent or kind is yaml.AliasEvent:
                        root_line = line
                    continue
                parent = stack[-1]
                if parent.is_map:
                    if parent.key is _NO_KEY:
                        if not is_scalar:
                            raise _Limited("mapping keys must be plain values", line)
                        if value in parent.container:
                            raise _Limited(
                                MSG_DUPLICATE_KEY.format(key=value, first=parent.key_line),
                                line,
                            )
                        parent.key = value
                        parent.key_line = line
                    else:
                        if parent.key is _MERGE_KEY:
                            if parent.merges is None:
                                parent.merges = []
                            parent.merges.append(value)
                        else:
                            parent.container[parent.key] = value
                        parent.key = _NO_KEY
                else:
                    parent.container.append(value)
                    if parent.lines is not None:
                        parent.lines.append(line)


class _MergeKey:
    """Marker for the YAML merge key ``<<``."""


_MERGE_KEY = _MergeKey()


def _apply_merges(target: dict[Any, Any], merges: list[Any], line: int) -> None:
    """YAML merge keys: explicit keys win, then earlier merged mappings over later ones."""
    for merged in merges:
        sources = merged if isinstance(merged, list) else [merged]
        for source in sources:
            if not isinstance(source, dict):
                raise _Limited("a merge key (<<) needs a mapping or a list of mappings", line)
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
    node: Node | None = None
    item_lines: list[int] | None = None


def iter_documents(text: str, *, name: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[Document]:
    """Parse every document of ``text``; raises :class:`RenderError` naming ``name`` and the line."""
    parser = _Parser(text)
    try:
        yield from _Builder(limits).documents(parser)
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
    except (ValueError, TypeError) as exc:  # a scalar its tag cannot construct (!!int abc)
        raise RenderError(f"invalid YAML value: {exc}", file=name) from None
    finally:
        parser.dispose()


def load_documents(text: str, *, name: str, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """All documents of a YAML stream (see :func:`iter_documents`)."""
    return list(iter_documents(text, name=name, limits=limits))


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
    return Document(index=0, line=1, data=data, node=None)


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


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (after resolving symlinks) is ``root`` or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def read_text(root: Path, rel: str, *, limits: Limits = DEFAULT_LIMITS, check: bool = True) -> str:
    """Read the repository file ``rel`` (relative to ``root``) as UTF-8, within the limits.

    Refuses paths (or symlinks) resolving outside ``root`` and files over the size limit.
    ``check=False`` skips the symlink check for callers that already did it while listing."""
    path = root / rel
    if check and not inside(root, path):
        raise RenderError(MSG_OUTSIDE.format(path=rel), file=rel)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limits.max_file_bytes:
                raise RenderError(
                    MSG_TOO_BIG.format(size=size, limit=limits.max_file_bytes), file=rel
                )
            raw = handle.read(limits.max_file_bytes + 1)
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
