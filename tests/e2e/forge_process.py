"""``python -m tests.e2e.forge_process [--gitlab] --port P --data DIR``: the fake GitHub (or
GitLab) in a process of its own, driven from another process.

The bot reaches it only by its URL, as it would reach github.com. The test (or ``./dev demo``)
drives the fake's test API — create a repository, push, open a pull request, comment as a
user, read what the bot posted — through a ``multiprocessing`` manager on a unix socket,
authenticated with the key in the environment variable ``FAKE_FORGE_AUTHKEY``. The first line
on stdout is JSON: ``{"url": ..., "control": <socket path>}``. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.gitlab import FakeGitLab

AUTHKEY_ENV = "FAKE_FORGE_AUTHKEY"


class Control:
    """The fake's whole test API, by name: methods are called, attributes read."""

    def __init__(self, fake: FakeGitHub | FakeGitLab) -> None:
        self._fake = fake

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{name} is private")
        return getattr(self._fake, name)(*args, **kwargs)

    def get(self, dotted: str) -> Any:
        """An attribute, possibly nested: ``url``, ``contract.violations``, ``deliveries``."""
        value: Any = self._fake
        for part in dotted.split("."):
            if part.startswith("_"):
                raise AttributeError(f"{part} is private")
            value = getattr(value, part)
        return value

    def requests(self, method: str, path_contains: str) -> list[Any]:
        """The API requests received (``Recorded``: method, path, headers, body, status) of
        ``method`` whose path contains ``path_contains``, in order."""
        return [
            r for r in self._fake.api_requests() if r.method == method and path_contains in r.path
        ]

    def set(self, name: str, value: Any) -> None:
        """Set a public attribute (``latency``, ``merge_refs_stale``)."""
        if name.startswith("_") or not hasattr(self._fake, name):
            raise AttributeError(name)
        setattr(self._fake, name, value)


class ControlManager(BaseManager):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.forge_process")
    parser.add_argument("--gitlab", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", type=Path, required=True, help="directory for git data")
    args = parser.parse_args(argv)
    authkey = os.environ.get(AUTHKEY_ENV, "").encode()
    if not authkey:
        parser.error(f"{AUTHKEY_ENV} is not set")
    args.data.mkdir(parents=True, exist_ok=True)
    fake: FakeGitHub | FakeGitLab
    if args.gitlab:
        fake = FakeGitLab(args.data / "forge", host=args.host, port=args.port)
    else:
        fake = FakeGitHub(args.data / "forge", host=args.host, port=args.port)
    fake.start()
    control = Control(fake)
    ControlManager.register("control", callable=lambda: control)
    address = str(args.data / "control.sock")
    if os.path.exists(address):
        os.unlink(address)
    manager = ControlManager(address=address, authkey=authkey)
    server = manager.get_server()  # type: ignore[no-untyped-call]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"url": fake.url, "control": address}), flush=True)

    done = threading.Event()

    def stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    done.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
