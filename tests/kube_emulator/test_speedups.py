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
