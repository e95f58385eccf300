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


def test_without_its_controller_no_workload_progresses() -> None:
    """For benchmarks: the API answers, nothing acts on workloads behind it."""
    import time as _time

    with EmulatorServer(controller=False, controller_delay=0.05) as server:
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                },
            },
        }
        headers = {
            "Authorization": f"Bearer {server.tokens['admin']}",
            "Content-Type": "application/json",
        }
        path = f"{server.url}/apis/apps/v1/namespaces/default/deployments"
        create = urllib.request.Request(path, data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(create, timeout=10) as answer:
            assert answer.status == 201
        _time.sleep(0.5)  # ten times the controller delay: a running controller would have acted
        get = urllib.request.Request(f"{path}/d", headers=headers)
        with urllib.request.urlopen(get, timeout=10) as answer:
            assert not json.load(answer).get("status", {}).get("availableReplicas")
