"""``gitops-bot serve`` as a newcomer runs it: no Redis configured, one command, real processes.

The bot is stopped as a service manager stops it (SIGTERM to its process group) and its
processes are killed as the OOM killer kills them (SIGKILL), with short intervals set through
the settings so that the tests stay fast.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from bot.queue import JOB_KEY

GITOPS_BOT = str(Path(sys.executable).with_name("gitops-bot"))
FIXTURES = Path(__file__).parent / "fixtures" / "webhooks" / "github"
SECRET = "serve-secret"
FAST = {"GITOPS_WORKER_HEARTBEAT": "0.5", "GITOPS_LOG_LEVEL": "WARNING"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> dict[int, str]:
    """The direct children of ``pid``: pid → command line."""
    try:
        pids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    found = {}
    for child in map(int, pids):
        try:
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> float:
    """Seconds until ``condition()`` is true; fails naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


class Server:
    """One ``gitops-bot serve`` in its own process group, as a service manager runs it."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        port: int = 0,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.workers = "--no-workers" not in args
        environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        environment.update(FAST, GITHUB_WEBHOOK_SECRET=SECRET, GITOPS_DATA_DIR=str(data_dir))
        environment.update(env or {})
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / f"serve-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [GITOPS_BOT, "serve", "--port", str(port), *args],
                env=environment,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.url = ""
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        def listening() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            found = re.search(r"listening on (http://\S+)", self.log.read_text())
            if found:
                self.url = found.group(1)
            return bool(found)

        wait_until(listening, f"serve listening:\n{self.log.read_text()}")
        wait_until(self.ready, f"serve ready:\n{self.log.read_text()}")

    def readyz(self) -> requests.Response:
        path = "/readyz" if self.workers else "/readyz?exclude=workers"
        return requests.get(self.url + path, timeout=2)

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return self.readyz().status_code == 200
        except requests.RequestException:  # refused, or bound but gunicorn not serving yet
            return False

    def deliver(
        self, delivery: str, fixture: str = "pull_request__synchronize"
    ) -> requests.Response:
        body = (FIXTURES / f"{fixture}.json").read_bytes()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return requests.post(
            f"{self.url}/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": fixture.split("__")[0],
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
            },
            timeout=10,
        )

    def metric(self, name: str) -> float:
        for line in requests.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def processed(self, job: str = "preview") -> float:
        """Jobs of ``job`` finished, whatever their outcome (with a webhook secret and no forge
        credentials, previews end ``not_configured``; deploys are only recorded, ``done``)."""
        prefix = f'gitops_jobs_processed_total{{job="{job}",'
        lines = requests.get(f"{self.url}/metrics", timeout=5).text.splitlines()
        return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))

    def children(self, pattern: str) -> list[int]:
        """The bot's direct children whose command line contains ``pattern``."""
        return [pid for pid, cmd in children(self.process.pid).items() if pattern in cmd]

    def child(self, pattern: str) -> int:
        """The pid of the bot's one direct child whose command line contains ``pattern``."""
        found = self.children(pattern)
        assert len(found) == 1, (pattern, children(self.process.pid))
        return found[0]

    def redis(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.data_dir / "redis.sock"))

    def terminate(self) -> None:
        """SIGTERM to the whole process group, as systemd or a Ctrl-C would send it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def wait_processed(server: Server, count: float, job: str = "preview") -> None:
    wait_until(lambda: server.processed(job) >= count, f"{count} {job} jobs processed")


def wait_restarts_counted(server: Server, process: str, count: float) -> None:
    """The supervisor counts a restart just after the process is back, so a request may see
    the process before its count; then the count must be exactly ``count``, never more."""
    name = f'gitops_process_restarts_total{{process="{process}"}}'
    wait_until(lambda: server.metric(name) >= count, f"{name} >= {count}", timeout=10)
    assert server.metric(name) == count


def test_serve_with_no_redis_configured_runs_everything(data_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = Server(data_dir, env={"HOME": str(home), "XDG_RUNTIME_DIR": str(home)})
    try:
        processes = children(server.process.pid)
        assert [cmd for cmd in processes.values() if " beat " in cmd], processes
        assert server.readyz().json()["workers"] == {"deploys": 1, "previews": 1}
        response = server.deliver("serve-1")
        assert response.status_code == 202, response.text
        assert response.json()["action"] == "queued"
        wait_processed(server, 1)
        assert (data_dir / "appendonly.aof").exists()
        # no gunicorn control socket, whose one path every gunicorn of the user would share
        assert list(home.iterdir()) == []
    finally:
        server.stop()
    assert server.process.returncode == 0
    # Nothing left behind: every process and the embedded Redis went down with the bot.
    for pid in processes:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    assert not (data_dir / "redis.sock").exists()


def test_rapid_restarts_lose_nothing(data_dir: Path) -> None:
    """Stopped and started again at once, again and again (a Ctrl-C and re-run, a service
    manager's restart): each new bot waits for the old one to let go of the data directory,
    then queues every delivery, and every job queued before is still there. (Before the data
    directory's lock, a stopping bot shut down its successor's Redis, which then answered
    every delivery with 503.)"""
    port = free_port()
    server = Server(data_dir, "--no-workers", port=port)
    deliveries = ["before-1", "before-2"]
    try:
        for delivery in deliveries:
            assert server.deliver(delivery).status_code == 202
        for restart in range(3):
            server.terminate()
            successor = Server(data_dir, "--no-workers", port=port, wait=False)
            server.process.wait(timeout=60)
            assert server.process.returncode == 0, server.log.read_text()
            server = successor
            server.wait_ready()
            deliveries.append(f"after-restart-{restart}")
            response = server.deliver(deliveries[-1])
            assert response.status_code == 202, (response.text, server.log.read_text())
            assert server.redis().llen("previews") == len(deliveries)
        time.sleep(1)  # the successor's Redis stays up: nobody shuts it down behind its back
        assert server.ready()
        assert server.deliver("before-1").json()["action"] == "duplicate"
    finally:
        server.stop()
    server = Server(data_dir)  # now with workers: every job queued across the restarts runs
    try:
        wait_processed(server, len(deliveries))
        assert server.redis().llen("previews") == 0
    finally:
        server.stop()


def test_a_killed_redis_is_restarted_with_its_jobs(data_dir: Path) -> None:
    """SIGKILL of the embedded Redis (the OOM killer): restarted from its append-only file
    within seconds, every acknowledged delivery and queued job still there.

    Nothing here waits for /readyz to report Redis down: the restart can be over between two
    polls. The restart is counted once the new Redis answers, so the web can serve requests a
    few milliseconds before the count lands: the test waits for it."""
    server = Server(data_dir, "--no-workers")
    try:
        queued = {d: server.deliver(d).json()["job_id"] for d in ("kill-1", "kill-2", "kill-3")}
        killed = server.child("redis-server")
        os.kill(killed, signal.SIGKILL)
        downtime = wait_until(
            lambda: server.children("redis-server") not in ([], [killed]),
            "a new redis-server started by serve",
            timeout=15,
        )
        downtime += wait_until(server.ready, "/readyz ready again", timeout=30)
        assert downtime < 15, downtime
        client = server.redis()
        assert client.llen("previews") == 3
        for delivery, job_id in queued.items():
            assert client.hget(JOB_KEY.format(job_id=job_id), "state") == b"queued"
            again = server.deliver(delivery).json()
            assert again["action"] == "duplicate" and again["job_id"] == job_id
        assert server.deliver("kill-4").status_code == 202
        wait_restarts_counted(server, "redis", 1)
    finally:
        server.stop()
    assert server.process.returncode == 0


def test_killed_workers_come_back_and_redis_outlives_forked_children(data_dir: Path) -> None:
    """SIGKILL of each worker's main process: restarted, consuming again, counted. A gunicorn
    worker that exits (as the arbiter's children do on SIGTERM) leaves Redis running."""
    server = Server(data_dir)
    try:
        redis_pid = server.child("redis-server")
        for queue in ("deploys", "previews"):
            old = server.child(f"--queues {queue}")
            os.kill(old, signal.SIGKILL)
            pattern = f"--queues {queue}"
            wait_until(
                lambda: server.children(pattern) not in ([], [old]),  # noqa: B023
                f"the {queue} worker restarted",
                timeout=15,
            )
            wait_until(server.ready, "every queue has a worker again", timeout=60)
            wait_restarts_counted(server, f"worker-{queue}", 1)
        gunicorn = server.child("gunicorn")
        web_workers = set(children(gunicorn))
        for web_worker in web_workers:
            os.kill(web_worker, signal.SIGTERM)
        wait_until(lambda: set(children(gunicorn)) - web_workers, "new web workers")
        wait_until(server.ready, "web workers serving again")
        assert server.child("redis-server") == redis_pid  # never stopped by a forked child
        assert server.deliver("after-kills", "push__default_branch").status_code == 202
        assert server.deliver("after-kills-pr").status_code == 202
        wait_processed(server, 1, "deploy")
        wait_processed(server, 1, "preview")
    finally:
        server.stop()
    assert server.process.returncode == 0


def test_a_busy_port_is_one_clear_error_before_anything_starts(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(GITHUB_WEBHOOK_SECRET=SECRET, GITOPS_DATA_DIR=str(data_dir))
        result = subprocess.run(
            [GITOPS_BOT, "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert "listening" not in result.stderr and "Connection in use" not in result.stderr
    assert not (data_dir / "redis.log").exists()  # no Redis, no workers were started


def test_a_second_bot_on_one_data_directory_waits_then_says_why(data_dir: Path) -> None:
    first = Server(data_dir, "--no-workers")
    try:
        redis_pid = first.child("redis-server")
        started = time.monotonic()
        second = Server(data_dir, "--no-workers", env={"GITOPS_LOCK_TIMEOUT": "1"}, wait=False)
        second.process.wait(timeout=60)
        assert second.process.returncode == 1
        assert time.monotonic() - started >= 1
        log = second.log.read_text()
        assert f"has been using {data_dir.resolve()}" in log or f"has been using {data_dir}" in log
        assert "GITOPS_DATA_DIR" in log and "listening" not in log
        assert first.child("redis-server") == redis_pid and first.ready()
    finally:
        first.stop()


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
