"""Shortcuts taken on the emulator's hot path give exactly what the plain code gives."""

from __future__ import annotations

import random
import uuid
from typing import Any

from tests.kube_emulator.api import Emulator


def test_new_uid_is_the_uuid4_of_the_same_random_bits() -> None:
    emulator = Emulator()
    emulator._rng = random.Random(7)
    reference = random.Random(7)
    for _ in range(2000):
        expected = uuid.UUID(int=reference.getrandbits(128), version=4)
        got = emulator.new_uid()
        assert got == str(expected)
        assert uuid.UUID(got).version == 4


def test_collector_policy_only_in_a_process_of_its_own() -> None:
    import gc
    import subprocess
    import sys
    from pathlib import Path

    from tests.kube_emulator import EmulatorServer, _freeze_survivors

    with EmulatorServer(controller=False):
        assert _freeze_survivors not in gc.callbacks  # pytest's process is left alone
    script = (
        "import gc\n"
        "from tests.kube_emulator import EmulatorServer, _freeze_survivors\n"
        "with EmulatorServer(controller=False):\n"
        "    gc.collect()\n"
        "    print(_freeze_survivors in gc.callbacks, gc.get_freeze_count() > 0)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


def test_create_walk_gives_what_merge_and_field_set_give() -> None:
    from tests.kube_emulator import merge

    configs: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"a": "b", "gone": None}, "annotations": {}},
            "spec": {
                "replicas": None,
                "selector": {"matchLabels": {"a": "b"}},
                "strategy": {},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx",
                                "ports": [{"containerPort": 80}, {"containerPort": 81}],
                                "env": [{"name": "A", "value": None}],
                                "resources": {"limits": {"cpu": "1"}},
                            }
                        ],
                        "nodeSelector": {"disk": "ssd", "x": None},
                        "tolerations": [{"key": "k", "operator": "Exists"}],
                    },
                },
            },
            "status": {"replicas": 3},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": None},
        {
            "apiVersion": "example.com/v1",
            "kind": "Thing",
            "metadata": {"name": "t", "finalizers": ["x"]},
            "spec": {"items": [{"a": 1}], "nested": {"deep": {"v": None, "w": [1, 2]}}},
        },
    ]
    for config in configs:
        schema = merge._Schema(merge._is_builtin(config["apiVersion"]), {"spec.items": ("a",)})
        fields: set[merge.Path] = set()
        got = merge._fields_and_copy(config, (), (), schema, fields)
        assert got == merge._merge_maps({}, config, (), schema)
        assert list(got) == list(merge._merge_maps({}, config, (), schema))
        assert fields == merge._to_field_set(config, schema, strict=True)


def test_head_end_is_where_the_blank_line_expression_matches() -> None:
    import re

    from tests.kube_emulator.server import _head_end

    expression = re.compile(rb"\r?\n\r?\n")
    rng = random.Random(3)
    samples = [b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody\r\n\r\n", b"GET / HTTP/1.0\n\n", b"x\r\n"]
    samples += [
        bytes(rng.choice(b"ab:\r\n") for _ in range(rng.randrange(12))) for _ in range(20000)
    ]
    for sample in samples:
        match = expression.search(sample)
        expected = None if match is None else (match.start(), match.end())
        assert _head_end(bytearray(sample)) == expected, sample


def test_quick_object_equality_answers_like_the_walk() -> None:
    from tests.kube_emulator import merge

    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"a": 1, "b": [1, {"c": True}]}, {"b": [1, {"c": True}], "a": 1}),
        ({"a": True}, {"a": 1}),
        ({"a": [False]}, {"a": [0]}),
        ({"a": 1}, {"a": 1.0}),
        ({"a": 2**70}, {"a": 2**70}),
        ({"a": {"b": None}}, {"a": {"b": None}}),
    ]
    for left, right in pairs:
        assert left == right  # the only case the quick check is asked about
        assert merge._equal_objects(left, right) == merge._equal(left, right)
    assert not merge._equal_objects({"a": True}, {"a": 1})
