"""Benchmark of the kube emulator: single-client server-side-apply throughput.

Prints the emulator's own CPU per server-side apply (``Emulator.handle`` in-process, no HTTP:
the figure that bounds every benchmark run against the emulator), dry-run applies per second
over one keep-alive HTTP connection (plain HTTP, and TLS as kubectl and the Python client use
it), through the official Python client, and real (stored) applies per second; then the memory
taken by 10,000 stored objects.
Target (issue 3): at least 500 dry-run applies per second from a single client.

    ./dev bench emulator [--count N] [--objects N]   (or python -m bench.emulator ...)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

# ``./dev bench emulator`` runs this file by path: the repository root holds ``tests``
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kube_emulator import EmulatorServer
from tests.kube_emulator.api import Emulator

MANAGER = "bench"


def deployment(i: int) -> dict[str, Any]:
    name = f"app-{i}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name, "tier": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": f"registry.example/web:{i % 7}",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "INDEX", "value": str(i)},
                            ],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }


def configmap(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm-{i}", "namespace": "default", "labels": {"app": f"app-{i}"}},
        "data": {"key": f"value-{i}", "other": "x" * 64},
    }


def run_http(
    conn: http.client.HTTPConnection, token: str, docs: list[dict[str, Any]], *, dry_run: bool
) -> float:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/apply-patch+yaml",
        "Accept": "application/json",
    }
    query = f"?fieldManager={MANAGER}&force=true" + ("&dryRun=All" if dry_run else "")
    start = time.perf_counter()
    for doc in docs:
        plural = "deployments" if doc["kind"] == "Deployment" else "configmaps"
        base = "/apis/apps/v1" if doc["kind"] == "Deployment" else "/api/v1"
        path = f"{base}/namespaces/default/{plural}/{doc['metadata']['name']}{query}"
        conn.request("PATCH", path, body=json.dumps(doc), headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status not in (200, 201):
            raise RuntimeError(f"apply failed: {resp.status}")
    return len(docs) / (time.perf_counter() - start)


def handle_cpu(docs: list[dict[str, Any]]) -> dict[str, float]:
    """CPU milliseconds per apply of ``Emulator.handle`` alone, by kind of apply."""
    emulator = Emulator(controller_delay=0.0)
    headers = {
        "authorization": f"Bearer {emulator.tokens['admin']}",
        "content-type": "application/apply-patch+yaml",
    }
    requests = []
    changed = []
    for doc in docs:
        plural = "deployments" if doc["kind"] == "Deployment" else "configmaps"
        base = "/apis/apps/v1" if doc["kind"] == "Deployment" else "/api/v1"
        path = f"{base}/namespaces/default/{plural}/{doc['metadata']['name']}"
        requests.append((path, json.dumps(doc).encode()))
        other = json.loads(json.dumps(doc))
        other["metadata"]["labels"]["changed"] = "yes"
        changed.append((path, json.dumps(other).encode()))
    warm_up = "/api/v1/namespaces/kube-public/configmaps/warm-up?fieldManager=w&dryRun=All"
    emulator.handle("PATCH", warm_up, headers, json.dumps(configmap(0)).encode())
    out: dict[str, float] = {}
    for label, batch, query in (
        ("dry-run create", requests, "&dryRun=All"),
        ("create", requests, ""),
        ("dry-run no-op", requests, "&dryRun=All"),
        ("no-op", requests, ""),
        ("dry-run update", changed, "&dryRun=All"),
        ("update", changed, ""),
    ):
        start = time.process_time()
        for path, body in batch:
            resp = emulator.handle(
                "PATCH", f"{path}?fieldManager={MANAGER}&force=true{query}", headers, body
            )
            if resp.code not in (200, 201):
                raise RuntimeError(f"apply failed: {resp.code} {resp.body[:200]!r}")
        out[label] = (time.process_time() - start) / len(batch) * 1000
    return out


def run_client(server: EmulatorServer, docs: list[dict[str, Any]]) -> float:
    from kubernetes import config, dynamic

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = server.write_kubeconfig(os.path.join(tmp, "kubeconfig"))
        api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        client = dynamic.DynamicClient(api_client, cache_file=os.path.join(tmp, "discovery.json"))  # type: ignore[no-untyped-call]
        apis = {
            "Deployment": client.resources.get(api_version="apps/v1", kind="Deployment"),
            "ConfigMap": client.resources.get(api_version="v1", kind="ConfigMap"),
        }
        start = time.perf_counter()
        for doc in docs:
            apis[doc["kind"]].server_side_apply(
                body=doc,
                name=doc["metadata"]["name"],
                namespace="default",
                field_manager=MANAGER,
                dry_run="All",
            )
        rate = len(docs) / (time.perf_counter() - start)
        api_client.close()
        return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="applies per measurement")
    parser.add_argument(
        "--objects", type=int, default=10_000, help="objects stored for the memory figure"
    )
    args = parser.parse_args()
    docs = [deployment(i) if i % 2 == 0 else configmap(i) for i in range(args.count)]
    for label, ms in handle_cpu(docs).items():
        print(f"emulator CPU per apply, in-process, {label + ':':16} {ms:8.3f} ms")
    # no controller: its ReplicaSets and Pods would count in the API server's figures
    with EmulatorServer(controller=False) as server:
        token = server.tokens["admin"]
        plain = http.client.HTTPConnection("127.0.0.1", server.port)
        run_http(plain, token, docs[:100], dry_run=True)  # warm-up
        print(
            f"dry-run applies/s, plain HTTP keep-alive, 1 client: {run_http(plain, token, docs, dry_run=True):8.0f}"
        )
        ctx = ssl.create_default_context(cafile=server.ca_file)
        tls = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx)
        print(
            f"dry-run applies/s, HTTPS keep-alive, 1 client:      {run_http(tls, token, docs, dry_run=True):8.0f}"
        )
        print(
            f"dry-run applies/s, kubernetes DynamicClient:        {run_client(server, docs):8.0f}"
        )
        print(
            f"stored applies/s (creates), HTTPS, 1 client:        {run_http(tls, token, docs, dry_run=False):8.0f}"
        )
        print(
            f"stored applies/s (no-op re-applies), HTTPS:         {run_http(tls, token, docs, dry_run=False):8.0f}"
        )
        server.reset()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        many = [deployment(i) if i % 2 == 0 else configmap(i) for i in range(args.objects)]
        run_http(tls, token, many, dry_run=False)
        del many
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        print(
            f"memory for {args.objects} stored objects (incl. watch log): {used / 2**20:8.1f} MiB"
        )
        plain.close()
        tls.close()


if __name__ == "__main__":
    main()
