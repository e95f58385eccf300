"""The supervisor, the data directory's lock and the embedded Redis's ownership, with real
processes (small ones: ``python -c``), fast enough to run without the ``slow`` mark."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from bot.embedded_redis import EmbeddedRedis
from bot.processes import Command, DataDirBusy, DataDirLock, Supervisor


def python(name: str, code: str) -> Command:
    return Command(name, [sys.executable, "-c", code])


def test_a_process_that_keeps_dying_stops_the_supervisor_non_zero() -> None:
    restarted: list[str] = []
    steady = python("steady", "import time; time.sleep(60)")
    supervisor = Supervisor(
        [[steady, python("crashing", "raise SystemExit(3)")]],
        restart_limit=2,
        restart_window=60,
        on_restart=restarted.append,
        interval=0.05,
    )
    assert supervisor.run() == 1
    assert restarted == ["crashing", "crashing"]  # two restarts allowed, the third death ends it
    assert steady.poll() is not None  # the others are stopped too


def test_a_dead_process_is_restarted_and_sigterm_stops_everything(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    code = f"open({str(marker)!r}, 'a').write('x'); import time; time.sleep(60)"
    child = python("sleeper", code)
    restarted: list[str] = []
    supervisor = Supervisor(
        [[child]], restart_limit=5, restart_window=60, on_restart=restarted.append, interval=0.05
    )

    def kill_then_stop() -> None:
        deadline = time.monotonic() + 30
        while not (marker.exists() and child.process is not None):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first = child.process
        first.kill()
        while child.process is first or marker.read_text() != "xx":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # as the service manager stops the bot

    helper = threading.Thread(target=kill_then_stop)
    helper.start()
    assert supervisor.run() == 0
    helper.join()
    assert restarted == ["sleeper"]
    assert child.poll() is not None


def test_layers_stop_in_reverse_order(tmp_path: Path) -> None:
    """Workers finish (and ack their jobs) while Redis, in the layer below, still runs."""
    log = tmp_path / "log"
    code = (
        "import signal, sys, time\n"
        f"def stop(*_):\n    time.sleep(0.3); open({str(log)!r}, 'a').write(sys.argv[1] + ' '); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n"
    )  # fmt: skip
    base = Command("base", [sys.executable, "-c", code, "base"])
    top = Command("top", [sys.executable, "-c", code, "top"])
    supervisor = Supervisor([[base], [top]], restart_limit=1, restart_window=60, interval=0.05)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert supervisor.run() == 0
    assert log.read_text().split() == ["top", "base"]


def test_the_data_directory_lock_is_exclusive_and_waits(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path).acquire(timeout=1)
    started = time.monotonic()
    with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}.*{tmp_path}"):
        DataDirLock(tmp_path).acquire(timeout=0.3)
    assert time.monotonic() - started >= 0.3
    threading.Timer(0.3, first.release).start()
    DataDirLock(tmp_path).acquire(timeout=10).release()  # waited for the release


def test_the_lock_outlives_the_bot_in_the_redis_it_started(tmp_path: Path) -> None:
    """The lock's descriptor is passed to redis-server: while that Redis may write the data
    directory, no other bot gets it, even if the bot that started it is gone."""
    lock = DataDirLock(tmp_path).acquire(timeout=1)
    server = EmbeddedRedis(tmp_path, pass_fds=(lock.fileno(),)).start()
    try:
        lock.release()  # the bot's own descriptor is closed, as when it dies
        with pytest.raises(DataDirBusy):
            DataDirLock(tmp_path).acquire(timeout=0.2)
    finally:
        server.stop()
    DataDirLock(tmp_path).acquire(timeout=5).release()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_stops_the_embedded_redis(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, as clean-up code in a fork would
            server.stop()
            os._exit(0)
        os.waitpid(pid, 0)
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    assert not (tmp_path / "redis.sock").exists()  # stopped by its owner: Redis cleaned up


def test_stop_sends_nothing_to_a_redis_it_did_not_start(tmp_path: Path) -> None:
    """After a quick restart the socket may belong to the next bot's Redis: stop() only signals
    its own process, never SHUTDOWN to whatever answers."""
    other = EmbeddedRedis(tmp_path).start()
    try:
        mine = EmbeddedRedis(tmp_path)  # never started: it owns no process
        mine.stop()
        assert redis.Redis.from_url(other.url).ping()
    finally:
        other.stop()


def test_what_redis_acknowledged_survives_its_sigkill(tmp_path: Path) -> None:
    """The OOM killer's SIGKILL loses no acknowledged write. With Redis's usual ``appendfsync
    everysec`` it does when a background fsync is still running (Redis then postpones writing
    the file but answers anyway): about one round in five lost writes under disk load, so the
    first assertion pins the policy that makes the rest hold on any disk."""
    server = EmbeddedRedis(tmp_path).start()
    try:
        assert redis.Redis.from_url(server.url).config_get("appendfsync") == {
            "appendfsync": "always"
        }
        for round_ in range(3):
            client = redis.Redis.from_url(server.url)
            for item in range(50):
                client.rpush("acknowledged", f"{round_}-{item}")
            client.close()
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)
            while server.poll() is None:
                time.sleep(0.01)
            server.start()
            assert redis.Redis.from_url(server.url).llen("acknowledged") == 50 * (round_ + 1)
    finally:
        server.stop()
