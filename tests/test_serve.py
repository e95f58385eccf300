"""``gitops-bot serve`` as a newcomer runs it: no Redis configured, one command, real processes."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))
FIXTURE = (
    Path(__file__).parent / "fixtures" / "webhooks" / "github" / "pull_request__synchronize.json"
)
SECRET = "serve-secret"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra_env = env
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(GITHUB_WEBHOOK_SECRET=SECRET, GITOPS_DATA_DIR=str(data_dir))
        env.update(extra_env or {})
        self.log = data_dir.parent / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [GITOPS_BOT, "serve", "--port", str(self.port), *args],
                env=env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve did not become ready:\n{self.log.read_text()}")

    def deliver(self, delivery: str) -> requests.Response:
        body = FIXTURE.read_bytes()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return requests.post(
            f"{self.url}/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
            },
            timeout=10,
        )

    def processed(self) -> float:
        for line in requests.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith('gitops_jobs_processed_total{job="preview",outcome="done"}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path


def wait_processed(server: Server, count: float) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.processed() >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"jobs were not processed:\n{server.log.read_text()}")


def test_serve_with_no_redis_configured_runs_everything(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        response = server.deliver("serve-1")
        assert response.status_code == 202, response.text
        assert response.json()["action"] == "queued"
        wait_processed(server, 1)
        assert (data_dir / "appendonly.aof").exists()
    finally:
        server.stop()
    assert server.process.returncode == 0
    # Nothing left behind: the embedded Redis went down with the bot.
    assert not (data_dir / "redis.sock").exists()


def test_a_restart_loses_no_queued_job(data_dir: Path) -> None:
    first = Server(data_dir, "--no-workers")
    try:
        assert first.deliver("restart-1").status_code == 202
        assert first.processed() == 0
    finally:
        first.stop()
    second = Server(data_dir)
    try:
        wait_processed(second, 1)
        # The delivery is still remembered after the restart.
        assert second.deliver("restart-1").json()["action"] == "duplicate"
    finally:
        second.stop()


def test_a_chunked_body_over_the_limit_is_refused_unread(data_dir: Path) -> None:
    """No Content-Length to refuse up front: the body is read only up to the limit."""
    server = Server(data_dir, "--no-workers", env={"GITOPS_MAX_BODY_BYTES": "1000"})
    try:

        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b"x" * 1000

        response = requests.post(
            f"{server.url}/webhooks/github",
            data=chunks(),  # a generator: requests sends it chunked
            headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 413
        assert response.json()["action"] == "rejected"
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
