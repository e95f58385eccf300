"""Standalone emulator: ``python -m tests.kube_emulator --port PORT --kubeconfig PATH [--auth token|certificate] [--controller-delay S] [--latency-ms MS]``.

Writes an admin kubeconfig pointing at itself, prints the URL and the tokens, and serves until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube_emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--kubeconfig", help="where to write an admin kubeconfig")
    parser.add_argument(
        "--user", default="admin", help="user the kubeconfig's current context authenticates as"
    )
    parser.add_argument(
        "--auth",
        choices=("token", "certificate"),
        default="token",
        help="how the kubeconfig authenticates: bearer tokens or client certificates (mTLS)",
    )
    parser.add_argument(
        "--controller-delay", type=float, default=0.2, help="seconds before workloads become ready"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--no-controller",
        action="store_true",
        help="do not progress workloads' status (benchmarks that wait for no rollout)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="answer each request after this many milliseconds (a real API server's etcd round "
        "trip; sleeping costs no CPU)",
    )
    args = parser.parse_args(argv)
    server = EmulatorServer(
        controller_delay=args.controller_delay,
        port=args.port,
        verbose=args.verbose,
        latency=args.latency_ms / 1000,
        controller=not args.no_controller,
    )
    server.start()
    if args.kubeconfig:
        server.write_kubeconfig(args.kubeconfig, user=args.user, auth=args.auth)
    # kubeconfigs use HTTPS (client-go sends credentials only over TLS); plain HTTP is for tools
    print(f"kube emulator serving on {server.https_url} (and {server.url})", flush=True)
    print(f"CA certificate: {server.ca_file}", flush=True)
    for name, token in server.tokens.items():
        print(f"token {name}: {token}", flush=True)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
