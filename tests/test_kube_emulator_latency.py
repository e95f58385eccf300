"""The emulator can answer like a remote API server: after a fixed delay that costs no CPU."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.kube_emulator import EmulatorServer


def test_latency_delays_every_answer() -> None:
    with EmulatorServer(latency=0.2) as server:
        request = urllib.request.Request(
            f"{server.url}/version", headers={"Authorization": f"Bearer {server.tokens['admin']}"}
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["major"] == "1"
        assert time.monotonic() - started >= 0.2
