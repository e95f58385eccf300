"""Shortcuts taken on the emulator's hot path give exactly what the plain code gives."""

from __future__ import annotations

import random
import uuid

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
