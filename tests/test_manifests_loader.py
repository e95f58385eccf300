"""The loader's fast path gives exactly what its careful builder gives: objects, lines, errors."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import RenderError
from bot.manifests.loader import (
    DEFAULT_LIMITS,
    PARSED_FILES,
    Limits,
    ParsedFiles,
    _careful_documents,
    _fast_attempt,
    iter_documents,
    load_documents,
    read_text,
)


def typed(value: Any) -> Any:
    """``value`` with every scalar's type spelled out: 1, 1.0 and True compare equal in Python."""
    if isinstance(value, dict):
        return ("map", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [typed(v) for v in value])
    return (type(value).__name__, value)


def outcome(load: Any, text: str, limits: Limits) -> Any:
    """What loading ``text`` gives: each document in full, or the error's every field."""
    try:
        docs = list(load(text, name="f.yaml", limits=limits))
    except RenderError as exc:
        return ("error", exc.message, exc.file, exc.line)
    return [(d.index, d.line, typed(d.data), d.item_lines) for d in docs]


def assert_same(text: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    expected = outcome(_careful_documents, text, limits)
    assert outcome(iter_documents, text, limits) == expected  # fast path (or its fallback)
    assert outcome(load_documents, text, limits) == expected  # the same through the cache
    return expected


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


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_inputs_agree(text: str) -> None:
    assert_same(text)


def test_anchors_without_aliases_take_the_fast_path() -> None:
    fast = _fast_attempt("a: &x {b: 1}\nc: &y [1, &z 2]\n", DEFAULT_LIMITS)
    assert fast is not None and fast[0].data == {"a": {"b": 1}, "c": [1, 2]}


def test_a_plain_manifest_takes_the_fast_path() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {k: '1', n: 2}\n---\nx: y\n"
    )
    fast = _fast_attempt(text, DEFAULT_LIMITS)
    assert fast is not None
    assert [(d.index, d.line, d.data) for d in fast] == [
        (
            0,
            1,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "a"},
                "data": {"k": "1", "n": 2},
            },
        ),
        (1, 7, {"x": "y"}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",
        "<<: {a: 1}\n",
        "a: 1\na: 2\n",
        "!!map {a: 1}\n",
        "? [a]\n: 1\n",
        "a: [1\n",
        "a: !!binary aGVsbG8=\n",
    ],
)
def test_the_careful_builder_takes_over_for_features_and_problems(text: str) -> None:
    assert _fast_attempt(text, DEFAULT_LIMITS) is None


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
def test_limits_agree(limits: Limits) -> None:
    texts = [
        "a:\n  b:\n    c: 1\n",
        "a: [1, 2, 3]\nb: {c: [4, 5]}\n",
        "- 1\n- 2\n---\n- 3\n- 4\n---\n- 5\n",
        "a: &x [1, 2]\nb: [*x, *x]\n",
        "--- 1\n--- 2\n--- 3\n--- 4\n--- 5\n--- 6\n",
    ]
    for text in texts:
        assert_same(text, limits)


def test_deep_nesting_agrees() -> None:
    result = assert_same("[" * 300 + "]" * 300)
    assert result[0] == "error" and "deeper than 100" in result[1]
    assert_same("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 99)) + "  " * 99 + "v\n")


# Random texts from fragments that reach every branch of both builders: most are valid YAML,
# many are not, and some use the features only the careful builder handles.
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


@given(text=_texts)
@settings(max_examples=400, deadline=None)
def test_random_texts_agree(text: str) -> None:
    assert_same(text)


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
@settings(max_examples=400, deadline=None)
def test_random_documents_agree(trees: list[Any]) -> None:
    assert_same("---\n".join(_block(tree, 0) for tree in trees))


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
def test_dumped_data_agrees_and_round_trips(docs: list[object], flow: bool) -> None:
    text = yaml.safe_dump_all(docs, default_flow_style=flow, sort_keys=False)
    result = assert_same(text)
    assert [data for _, _, data, _ in result] == [typed(d) for d in yaml.safe_load_all(text)]


# --------------------------------------------------------------------------- parsed-file cache


def test_a_text_parsed_again_comes_from_the_cache_as_new_objects() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n  - {a: &x [1]}\n  - b: *x\n---\nc: d\n"
    PARSED_FILES.clear()
    first = load_documents(text, name="f")
    hits = PARSED_FILES.hits
    second = load_documents(text, name="other-name")
    assert PARSED_FILES.hits == hits + 1
    assert [(d.index, d.line, typed(d.data), d.item_lines) for d in second] == [
        (d.index, d.line, typed(d.data), d.item_lines) for d in first
    ]
    # aliases still share one object, and nothing is shared with the first caller
    assert second[0].data["items"][0]["a"] is second[0].data["items"][1]["b"]
    first[0].data["items"][0]["a"].append(2)
    first[0].item_lines.append(99)  # type: ignore[union-attr]
    third = load_documents(text, name="f")
    assert third[0].data["items"][0]["a"] == [1] and third[0].item_lines == [4, 5]


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n",
        "kind: ConfigMap\n---\nkind: Secret\ndata: {k: aHVudGVyMg==}\n",
        "apiVersion: v1\nkind: List\nitems:\n  - {kind: Secret, data: {k: aHVudGVyMg==}}\n",
    ],
)
def test_a_text_holding_a_secret_is_never_kept(text: str) -> None:
    PARSED_FILES.clear()
    for _ in range(2):
        load_documents(text, name="f")
    assert not PARSED_FILES._entries


def test_renderer_output_is_never_kept() -> None:
    PARSED_FILES.clear()
    hits = PARSED_FILES.hits
    for _ in range(2):
        load_documents("kind: ConfigMap\n", name="out", cache=False)
    assert PARSED_FILES.hits == hits and not PARSED_FILES._entries


def test_limits_are_part_of_the_cache_key_and_errors_are_never_cached() -> None:
    text = "a:\n  b:\n    c: 1\n"
    PARSED_FILES.clear()
    assert load_documents(text, name="f")[0].data == {"a": {"b": {"c": 1}}}
    for _ in range(2):
        with pytest.raises(RenderError, match="deeper than 2"):
            load_documents(text, name="f", limits=Limits(max_depth=2))
    bad = "a: 1\na: 2\n"
    for _ in range(2):
        with pytest.raises(RenderError, match="duplicate key"):
            load_documents(bad, name="f")


def test_the_cache_keeps_to_its_budget_least_recently_used_out() -> None:
    cache = ParsedFiles(budget=4000)
    limits = DEFAULT_LIMITS
    docs = {n: load_documents(f"k{n}: {'x' * 200}\n", name="f") for n in range(30)}
    for n, value in docs.items():
        cache.put((bytes([n]), limits), value)
        cache.get((bytes([0]), limits))  # 0 stays the most recently used
    assert cache.get((bytes([0]), limits)) is not None
    assert cache.get((bytes([1]), limits)) is None  # pushed out long ago
    assert cache.get((bytes([29]), limits)) is not None
    assert 0 < cache._size <= 4000
    cache.put((b"huge", limits), load_documents("k: " + "y" * 2000 + "\n", name="f"))
    assert cache.get((b"huge", limits)) is None  # over a quarter of the budget: not kept


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


def test_data_that_cannot_be_pickled_is_returned_but_not_cached() -> None:
    cache = ParsedFiles(budget=10_000)
    docs = load_documents("a: 1\n", name="f")
    docs[0].data["b"] = threading.Lock()  # not plain data
    cache.put((b"k", DEFAULT_LIMITS), docs)
    assert cache.get((b"k", DEFAULT_LIMITS)) is None
