"""The YAML loader: what it builds from tricky and random input (objects, lines, errors),
its limits, reading files safely, and that nothing it read outlives the job (no process-wide
cache of values)."""

from __future__ import annotations

import gc
import hashlib
import os
import secrets
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from syrupy.assertion import SnapshotAssertion

from bot.errors import RenderError
from bot.manifests import load_config, render_apps
from bot.manifests.loader import DEFAULT_LIMITS, Limits, load_documents, read_text


def typed(value: Any) -> Any:
    """``value`` with every scalar's type spelled out: 1, 1.0 and True compare equal in Python."""
    if isinstance(value, dict):
        return ("map", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [typed(v) for v in value])
    return (type(value).__name__, value)


def outcome(text: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """What loading ``text`` gives: each document in full, or the error's every field."""
    try:
        docs = load_documents(text, name="f.yaml", limits=limits)
    except RenderError as exc:
        return ("error", exc.message, exc.file, exc.line)
    return [(d.index, d.line, typed(d.data), d.item_lines) for d in docs]


TRICKY = [
    "",
    "# only a comment\n",
    "---\n",
    "---\n---\n",
    "--- 5\n",
    "a: 1\n...\n---\nb: 2\n",
    "\n\n# c\n---\n\n  a: 1\n",
    "- a\n- b: 1\n  c: [1, {d: e}]\n",
    "a: {b: [1, 2, {c: d}], e: []}\n",
    "d: 2024-01-01\nt: !!timestamp 2024-01-01\nts: 2001-12-14t21:59:43.10-05:00\n",
    "b: yes\nc: No\nd: ON\ne: off\nf: y\ng: n\nh: true\n",
    "n: ~\nm: null\nl: Null\nk:\ne: ''\n",
    "i: 10\nj: -7\nk: +3\nl: 0\nm: 017\nn: 0o17\no: 0x1F\np: 0b101\nq: 1_000\nr: 1:30\n",
    "f: 1.5\ng: 1e3\nh: 1.5e3\ni: -.5\nj: 1_0.5\nk: 6.8523015e+5\nl: 190:20:30.15\n",
    "big: 123456789012345678901234567890\nneg: -98765432109876543210\n",
    "s: !!str 1\nt: !!int '7'\nu: !!float '2'\nv: !!bool 'yes'\nw: !!null ''\nx: ! 12\n",
    "q: '1'\nr: \"true\"\ns: 'a''b'\nt: \"\\t\\u00e9\"\n",
    "lit: |\n  a\n  b\nfold: >-\n  c\n  d\n",
    "1: a\n2.5: b\ntrue: c\n~: d\n",
    "1: a\ntrue: b\n",  # 1 == True: a duplicate key, as dict membership sees it
    "a: 1\na: 2\n",
    "metadata:\n  name: a\n  name: b\n",
    "a: &x 1\nb: *x\n",
    "a: &x {b: 1}\nc: &y [1, &z 2]\nd: &x 3\n",  # anchors nobody refers to change nothing
    "items: &i\n  - &j {a: 1}\n",
    "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n",
    "<<: {a: 1}\nb: 2\n",
    "<<: [{a: 1}, {a: 2, b: 3}]\n",
    "<<: 5\n",
    "a: <<\n",
    "- <<\n",
    "&a [*a]\n",
    "a: *nope\n",
    "? [a]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "!!map {a: 1}\n",
    "!!seq [1]\n",
    "! {a: 1}\n",
    "!custom {a: 1}\n",
    "a: !custom x\n",
    "a: !!binary aGVsbG8=\n",
    "a: .nan\n",
    "a: -.inf\n",
    "a: !!float x\n",
    "a: !!int 0x\n",
    "a: !!python/object:os.system x\n",
    "a: !!set x\n",
    "a: !!omap x\n",
    "a: !!pairs x\n",
    "a: !!value x\n",
    "a: b: c\n",
    "a: [1, 2\n",
    "a:\n\t- b\n",
    "- a\nb: 1\n",
    "%YAML 1.1\n---\na: 1\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "apiVersion: v1\nkind: List\nitems:\n  - kind: A\n  - kind: B\n    x: 1\n",
    "kind: List\nitems:\n- a\n- [b]\n- {c: 1}\n-\n",
    "kind: List\nitems: [{a: 1},\n  {b: 2}]\n",
    "items:\n  - x\nitems2:\n  - y\n",
    "a:\n  items:\n    - x\n",
    "items: 5\n",
    "- items:\n  - a\n",
    "items:\n  - a\n---\nkind: List\nitems:\n  - b\n  - c\n",
    "a: b\n--- [1, 2]\n--- x\n---\n...\n",
]


def summary(text: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """:func:`outcome` in one line: ``index@line: data`` per document (``repr`` tells 1, 1.0,
    True and '1' apart), or ``error@line: message``."""
    try:
        docs = load_documents(text, name="f.yaml", limits=limits)
    except RenderError as exc:
        return f"error@{exc.line}: {exc.message}"
    return " | ".join(
        f"{d.index}@{d.line}: {d.data!r}" + (f" items@{d.item_lines}" if d.item_lines else "")
        for d in docs
    )


def test_tricky_inputs(snapshot: SnapshotAssertion) -> None:
    """YAML 1.1 types but timestamps, tags, anchors and merge keys, duplicate keys, every kind
    of bad input: the objects with their lines, or the error with its line (the snapshot is
    the table of them, one line each, reviewed by hand)."""
    assert {text: summary(text) for text in TRICKY} == snapshot


def test_merge_key_outside_a_mapping_key_is_an_error() -> None:
    for text in ("a: <<\n", "- <<\n", "<<\n"):
        with pytest.raises(RenderError, match="merge key"):
            load_documents(text, name="f")


@pytest.mark.parametrize(
    "limits",
    [
        Limits(max_depth=2),
        Limits(max_depth=3),
        Limits(max_expanded_nodes=5),
        Limits(max_expanded_nodes=9),
        Limits(max_expanded_nodes=10),
        Limits(max_aliases=1),
    ],
)
def test_limits(limits: Limits, snapshot: SnapshotAssertion) -> None:
    """Depth, expanded size (aliases counted as often as they expand, over every document of a
    file) and alias count: each refused at the node that passes it, with its line."""
    texts = [
        "a:\n  b:\n    c: 1\n",
        "a: [1, 2, 3]\nb: {c: [4, 5]}\n",
        "- 1\n- 2\n---\n- 3\n- 4\n---\n- 5\n",
        "a: &x [1, 2]\nb: [*x, *x]\n",
        "--- 1\n--- 2\n--- 3\n--- 4\n--- 5\n--- 6\n",
    ]
    assert {text: summary(text, limits) for text in texts} == snapshot


def test_deep_nesting() -> None:
    result = outcome("[" * 300 + "]" * 300)
    assert result == ("error", "YAML nesting deeper than 100 levels", "f.yaml", 1)
    deep = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 99)) + "  " * 99 + "v\n"
    [(_index, _line, data, _items)] = outcome(deep)
    for _ in range(99):
        data = data[1][0][1]
    assert data == ("str", "v")


# Random texts from fragments that reach every branch of the builder: most are valid YAML, many
# are not, and some use anchors, aliases, merge keys and tags.
_FRAGMENTS = [
    "a: 1",
    "b: yes",
    "c: 2024-01-01",
    "d: '007'",
    "e: 0o17",
    "f: 1.5",
    "g: ~",
    "h:",
    "- x",
    "- 1",
    "- [1, 2]",
    "- {k: v}",
    "items:",
    "kind: List",
    "name: n",
    "a: &x v",
    "b: *x",
    "<<: {m: 1}",
    "? k",
    ": v",
    "---",
    "...",
    "!!str 3",
    "k: !!int '5'",
    "k: !!binary aGk=",
    "k: .nan",
    "[a, b]",
    "{a: 1, a: 2}",
    "k: |",
    "  text",
    "# comment",
    "",
    "k: 'q",
]
_texts = st.lists(
    st.tuples(st.sampled_from(["", "  ", "    ", "- "]), st.sampled_from(_FRAGMENTS)),
    max_size=12,
).map(lambda lines: "".join(indent + frag + "\n" for indent, frag in lines))


def assert_loads_or_refuses(text: str) -> None:
    """Documents, or a RenderError naming the file — never another exception."""
    result = outcome(text)
    if result and result[0] == "error":
        assert result[2] == "f.yaml" and result[1]


@given(text=_texts)
@settings(max_examples=200, deadline=None)
def test_random_texts_load_or_are_refused(text: str) -> None:
    assert_loads_or_refuses(text)


# Well-formed block YAML whose keys and scalars are raw YAML tokens: the structure is always
# valid, the tokens bring types, anchors, aliases, merges, tags and duplicate keys.
_TOKENS = [
    "v",
    "yes",
    "Off",
    "~",
    "",
    "10",
    "017",
    "0o17",
    "0x1F",
    "1_000",
    "1:30",
    "1.5",
    "1e3",
    "2024-01-01",
    "'q'",
    '"d"',
    "'007'",
    "!!str 3",
    "!!int '5'",
    "!!binary aGk=",
    ".nan",
    "&x v",
    "*x",
    "<<",
    "[a, 1]",
    "{k: v}",
    "[]",
    "{}",
    "|\n  text",
    "!custom t",
]
_KEYS = ["a", "b", "a", "items", "kind", "1", "true", "<<", "'a'", "&k c", "*k", "? q"]
_PLAIN_TOKENS = [t for t in _TOKENS if t[:1] not in "&*<!.?"]


def _collections(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Sequences, and mappings as lists of (key, value): with repeated keys, or unique ones."""
    unique_keys = st.dictionaries(st.sampled_from(["a", "b", "c", "items", "kind"]), inner)
    return (
        st.lists(inner, min_size=1, max_size=3)
        | st.lists(st.tuples(st.sampled_from(_KEYS), inner), min_size=1, max_size=3)
        | unique_keys.filter(bool).map(lambda d: list(d.items()))
    )


_trees = st.recursive(
    st.sampled_from(_TOKENS) | st.sampled_from(_PLAIN_TOKENS), _collections, max_leaves=12
)


def _block(tree: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(tree, str):
        return f"{pad}{tree}\n"
    out = []
    for item in tree:
        if isinstance(item, tuple):
            key, value = item
            out.append(
                f"{pad}{key}: {value}\n"
                if isinstance(value, str)
                else f"{pad}{key}:\n" + _block(value, indent + 2)
            )
        else:
            out.append(
                f"{pad}- {item}\n"
                if isinstance(item, str)
                else f"{pad}-\n" + _block(item, indent + 2)
            )
    return "".join(out)


@given(trees=st.lists(_trees, min_size=1, max_size=3))
@settings(max_examples=200, deadline=None)
def test_random_documents_load_or_are_refused(trees: list[Any]) -> None:
    assert_loads_or_refuses("---\n".join(_block(tree, 0) for tree in trees))


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["yes", "no", "on", "0o17", "017", "1_000", "1:30", "2024-01-01", "<<", "~"])
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.text(min_size=1, max_size=6) | st.integers(0, 5)
    return st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)


_data = st.recursive(_scalars, _containers, max_leaves=25)


@given(docs=st.lists(_data, min_size=1, max_size=3), flow=st.booleans())
@settings(max_examples=200, deadline=None)
def test_dumped_data_round_trips(docs: list[object], flow: bool) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow, sort_keys=False)
    result = outcome(text)
    assert [data for _, _, data, _ in result] == [typed(d) for d in yaml.safe_load_all(text)]


# --------------------------------------------------------------------------- nothing kept

MARK = "kept-by-nobody-"


def _digest(text: str | bytes) -> bytes:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).digest()


def _holders(digests: dict[bytes, int]) -> list[str]:
    """What in the process still refers to one of the values (known only by their digests,
    so that this search holds none of them): every object the garbage collector tracks is
    asked for its referents; strings, and dicts and tuples of atoms only, are not tracked
    themselves, so they are looked into here; bytes (a pickle) are searched for the values."""
    lengths = set(digests.values())
    mark = MARK.encode()
    found: list[str] = []
    gc.collect()
    for holder in gc.get_objects():
        refs = gc.get_referents(holder)
        for ref in list(refs):
            if type(ref) is dict and not gc.is_tracked(ref):
                refs.extend(ref)
                refs.extend(ref.values())
            elif type(ref) is tuple and not gc.is_tracked(ref):
                refs.extend(ref)
        for ref in refs:
            if type(ref) is str:
                if len(ref) in lengths and ref.startswith(MARK) and _digest(ref) in digests:
                    found.append(f"a {type(holder).__name__} holds a value")
            elif type(ref) is bytes and mark in ref:
                start = ref.find(mark)
                while start >= 0:
                    if any(_digest(ref[start : start + n]) in digests for n in lengths):
                        found.append(f"a {type(holder).__name__} holds bytes with a value")
                    start = ref.find(mark, start + 1)
    return found


def test_no_value_read_from_the_repository_outlives_the_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Secret (unquoted values, one of 1.5 KB), a ConfigMap and a Helm chart's Secret are
    rendered; once the caller drops the result, no object of the process refers to any of their
    values. Run against the loader as it was before (``git show c5fcc51:bot/manifests/loader.py``)
    this fails: its plain-scalar cache held all four values as dict keys and values, and its
    parsed-file cache held the ConfigMap's file as a pickle."""
    digests: dict[bytes, int] = {}

    def value(length: int) -> str:
        text = MARK + secrets.token_hex(length)[: length - len(MARK)]
        digests[_digest(text)] = len(text)
        return text

    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "chart").mkdir()
    (repo / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: chart\nversion: 0.1.0\n")
    (repo / ".gitops.yaml").write_text(
        "version: 1\napps:\n  - {name: app, path: app, namespace: web}\n"
        "  - {name: chart, path: chart, namespace: web}\n"
    )
    (repo / "app" / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
        f"stringData:\n  password: {value(40)}\n  certificate: {value(1500)}\n"
    )
    (repo / "app" / "config.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata:\n  dsn: {value(60)}\n"
    )
    helm = tmp_path / "bin" / "helm"  # a stand-in: no real Helm here
    helm.parent.mkdir()
    helm.write_text(
        "#!/bin/sh\ncat <<'EOF'\n---\n# Source: chart/templates/s.yaml\napiVersion: v1\n"
        f"kind: Secret\nmetadata:\n  name: from-chart\nstringData:\n  token: {value(50)}\nEOF\n"
    )
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helm.parent}{os.pathsep}{os.environ['PATH']}")

    rendered = render_apps(repo, load_config(repo))
    assert [len(r.manifests) for r in rendered] == [2, 1]
    assert not any(r.errors for r in rendered)
    assert len(_holders(digests)) >= 4  # the search finds them while the job holds them
    del rendered
    assert _holders(digests) == []


# --------------------------------------------------------------------------- reading files


def test_a_file_longer_than_its_stat_size_is_read_to_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "a: " + "x" * 100 + "\n"
    (tmp_path / "f.yaml").write_text(text)
    # a device or a file being written says less than it gives
    monkeypatch.setattr(os, "fstat", lambda fd: SimpleNamespace(st_size=3))
    assert read_text(tmp_path, "f.yaml") == text
    with pytest.raises(RenderError, match="is 51 bytes, more than the limit of 50 bytes"):
        read_text(tmp_path, "f.yaml", limits=Limits(max_file_bytes=50))
    monkeypatch.undo()
    with pytest.raises(RenderError, match="is 104 bytes, more than the limit of 50 bytes"):
        read_text(tmp_path, "f.yaml", limits=Limits(max_file_bytes=50))
    assert read_text(tmp_path, "f.yaml", limits=Limits(max_file_bytes=104)) == text


def test_reading_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "secret.yaml").write_text("a: 1\n")
    (tmp_path / "repo" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(RenderError, match="outside the repository"):
        read_text(tmp_path / "repo", "link.yaml")
    assert read_text(tmp_path, "secret.yaml") == "a: 1\n"


@pytest.mark.parametrize("tag", ["!!set", "!!omap", "!!pairs"])
def test_collection_tags_on_a_scalar_are_refused(tag: str) -> None:
    with pytest.raises(RenderError, match="unsupported YAML tag") as info:
        load_documents(f"a: 1\nb: {tag} x\n", name="f.yaml")
    assert info.value.line == 2
