"""Webhook intake latency and CPU under gunicorn (2 workers) with a real Redis.

Fires signed GitHub ``pull_request`` (synchronize) deliveries, each with a fresh delivery id (so
every one is verified, parsed and durably queued), at concurrency 8 and 32. The targets: p99
under 25 ms at concurrency 8, and at most 1.5 ms of web-worker CPU per queued delivery. The same
server's ``/healthz`` is measured the same way in the same run and the ratio printed for
information; ``/readyz?exclude=workers`` (``/healthz`` plus one Redis PING) is measured
alongside: no intake that persists a delivery before answering can beat it.

    ./dev bench webhooks [--requests N] [--workers W] [--rounds R] [--concurrency C ...] [--close]

``GUNICORN_EXTRA`` adds gunicorn arguments, to compare other settings in the same harness
(e.g. ``GUNICORN_EXTRA="-k gevent --worker-connections 1000"`` with gevent installed).

The load generator is a separate process (asyncio; keep-alive connections, or with ``--close`` a
new connection per request) so it does not share the server's GIL. Besides throughput it prints the CPU each request cost the gunicorn workers and
the Redis server (from /proc): unlike requests/s, CPU per request hardly moves when other work
shares the machine, so it is the figure to compare changes by.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "webhooks" / "github" / "pull_request__synchronize.json"
SECRET = "bench-secret"
ENDPOINTS = {
    "webhook": "POST /webhooks/github",
    "healthz": "GET /healthz",
    "readyz": "GET /readyz (1 Redis PING)",
}
"""What each round measures. /readyz?exclude=workers is /healthz plus one Redis round trip: the
floor of any intake that persists a delivery in Redis before answering, shown for comparison."""

CPU_TARGET_MS = 1.5
"""Most web-worker CPU per queued delivery: over 600 deliveries a second per core."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _client(
    port: int, template: bytes, counter: list[int], total: int, latencies: list[float]
) -> None:
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while counter[0] < total:
            counter[0] += 1
            request = template.replace(b"{DELIVERY}", f"{counter[0]:012d}-{os.getpid()}".encode())
            started = time.perf_counter()  # a request on a new connection pays for connecting
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    connection = None  # --close, or a server that does not keep connections
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if connection is None:
                writer.close()
            if b" 20" not in status_line:
                raise RuntimeError(f"unexpected answer: {status_line!r}")
    finally:
        if connection is not None:
            connection[1].close()


def load(port: int, template: bytes, *, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    counter = [0]

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            *(_client(port, template, counter, total, latencies) for _ in range(concurrency))
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far; 0 for any that is gone."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children_cpu() -> float:
    """CPU seconds used by this process's finished children (the load generators)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_pids(master: int) -> list[int]:
    """gunicorn's worker processes (the master's children)."""
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def request_templates() -> tuple[bytes, bytes, bytes]:
    body = FIXTURE.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    webhook = (
        b"POST /webhooks/github HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: {DELIVERY}\r\n"
        + f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    health = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Ignored: {DELIVERY}\r\n\r\n"
    ready = health.replace(b"/healthz", b"/readyz?exclude=workers")
    return webhook, health, ready


def generator_main(port: int, concurrency: int, total: int, which: str, close: bool) -> None:
    webhook, health, ready = request_templates()
    template = {"webhook": webhook, "healthz": health, "readyz": ready}[which]
    if close:  # the server closes each connection after its answer; the client reconnects
        template = template.replace(b"Host: bench\r\n", b"Host: bench\r\nConnection: close\r\n")
    load(port, template, concurrency=concurrency, total=total // 10)  # warm-up
    print(json.dumps(load(port, template, concurrency=concurrency, total=total)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per figure (medians shown)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[8, 32],
        help="concurrency levels to measure (the targets are for 8 and 32)",
    )
    parser.add_argument(
        "--close",
        action="store_true",
        help="a new connection per request, as deliveries that do not reuse connections "
        "arrive (default: keep-alive connections, the server's cheapest case)",
    )
    parser.add_argument("--generator", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        port, concurrency, total, which = args.generator
        generator_main(int(port), int(concurrency), int(total), which, args.close)
        return

    sys.path.insert(0, str(ROOT))
    from bot.embedded_redis import EmbeddedRedis

    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis_server:
        port = free_port()
        env = dict(
            os.environ,
            REDIS_URL=redis_server.url,
            GITHUB_WEBHOOK_SECRET=SECRET,
            GITOPS_WEB_WORKERS=str(args.workers),
            GITOPS_LOG_LEVEL="WARNING",
            PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(dir=tmp),
        )
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "--config",
                "python:bot.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{port}",
                *os.environ.get("GUNICORN_EXTRA", "").split(),
                "bot.app:create_app_from_env()",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(port)
            print(
                f"gunicorn: {args.workers} workers x gthread; Redis: embedded redis-server (AOF); "
                + ("a new connection per request" if args.close else "keep-alive connections")
            )
            print(
                f"{'endpoint':<28}{'conc':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'CPU ms/req':>12}"
            )
            results: dict[tuple[str, int], dict[str, float]] = {}
            workers = worker_pids(server.pid)
            redis_pid = [redis_server.pid] if redis_server.pid else []
            # CPU seconds per request (gunicorn workers, Redis, load generator), summed over
            # rounds, by endpoint and concurrency.
            cpu: dict[tuple[str, int], list[float]] = {}
            for concurrency in args.concurrency:
                rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ENDPOINTS}
                # Alternating rounds, medians: a shared machine's noise hits all alike.
                for _ in range(args.rounds):
                    for which in ENDPOINTS:
                        before = (process_cpu(workers), process_cpu(redis_pid), children_cpu())
                        out = subprocess.run(
                            [
                                sys.executable,
                                __file__,
                                "--generator",
                                str(port),
                                str(concurrency),
                                str(args.requests),
                                which,
                                *(["--close"] if args.close else []),
                            ],
                            capture_output=True,
                            text=True,
                            check=False,
                        )
                        if out.returncode:
                            raise SystemExit(f"load generator failed: {out.stderr[-2000:]}")
                        rounds[which].append(json.loads(out.stdout))
                        # the generator's warm-up adds a tenth to the requests it sends
                        sent = args.requests * 11 // 10
                        sums = cpu.setdefault((which, concurrency), [0.0, 0.0, 0.0])
                        sums[0] += (process_cpu(workers) - before[0]) / sent / args.rounds
                        sums[1] += (process_cpu(redis_pid) - before[1]) / sent / args.rounds
                        sums[2] += (children_cpu() - before[2]) / sent / args.rounds
                for which in ENDPOINTS:
                    figures = {
                        key: statistics.median(r[key] for r in rounds[which])
                        for key in ("rps", "p50_ms", "p99_ms")
                    }
                    results[(which, concurrency)] = figures
                    name = ENDPOINTS[which]
                    print(
                        f"{name:<28}{concurrency:>6}{figures['rps']:>10.0f}"
                        f"{figures['p50_ms']:>9.2f}{figures['p99_ms']:>9.2f}"
                        f"{sum(cpu[(which, concurrency)]) * 1000:>12.3f}"
                    )
            for (which, concurrency), (workers_s, redis_s, generator_s) in sorted(cpu.items()):
                print(
                    f"CPU per request, {which:<8} at {concurrency:>2}: gunicorn workers "
                    f"{workers_s * 1000:.3f} ms, Redis {redis_s * 1000:.3f} ms, "
                    f"load generator {generator_s * 1000:.3f} ms"
                )
            for concurrency in args.concurrency:
                # On a machine whose cores are all busy, throughput is the inverse of CPU per
                # request: these ratios are what a quiet 2-core run's req/s ratios tend to.
                webhook_cpu = sum(cpu[("webhook", concurrency)])
                print(
                    f"CPU-bound throughput ratio at {concurrency}: webhook/healthz "
                    f"{sum(cpu[('healthz', concurrency)]) / webhook_cpu:.2f}, readyz/healthz "
                    f"{sum(cpu[('healthz', concurrency)]) / sum(cpu[('readyz', concurrency)]):.2f}"
                    f", webhook/readyz {sum(cpu[('readyz', concurrency)]) / webhook_cpu:.2f}"
                )
            if ("webhook", 8) in results:
                p99_8 = results[("webhook", 8)]["p99_ms"]
                print(
                    f"target p99 < 25 ms at concurrency 8: {p99_8:.2f} ms "
                    f"({'met' if p99_8 < 25 else 'MISSED'})"
                )
            for concurrency in args.concurrency:
                worker_ms = cpu[("webhook", concurrency)][0] * 1000
                print(
                    f"target web-worker CPU per queued delivery <= {CPU_TARGET_MS} ms at "
                    f"concurrency {concurrency}: {worker_ms:.3f} ms "
                    f"({'met' if worker_ms <= CPU_TARGET_MS else 'MISSED'})"
                )
                ratio = (
                    results[("webhook", concurrency)]["rps"]
                    / results[("healthz", concurrency)]["rps"]
                )
                floor = (
                    results[("readyz", concurrency)]["rps"]
                    / results[("healthz", concurrency)]["rps"]
                )
                print(
                    f"for information, throughput at concurrency {concurrency}: webhook/healthz "
                    f"{ratio:.2f}; one Redis round trip alone (readyz/healthz) {floor:.2f}"
                )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def _wait_ready(port: int) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/readyz?exclude=workers", timeout=1
            ) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not become ready")


if __name__ == "__main__":
    main()
