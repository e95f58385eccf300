"""Is this host's worker alive? The liveness probe of ``gitops-bot worker``, from heartbeat files.

``celery inspect ping`` cannot answer it: it needs remote control, which the workers disable
(``worker_enable_remote_control=False``: no broadcast queue in Redis through which anyone who can
reach Redis could command the workers). Instead each Celery worker process touches a heartbeat
file (see :mod:`workers.heartbeat`) from its main event loop while its consumer is connected to
Redis; this module says whether every heartbeat in the directory is recent::

    python -m workers.liveness [--max-age SECONDS] [--dir DIR]

exits 0 when every worker process of this host beat within ``--max-age`` seconds, and 1 naming
each one that did not (a hung main process, a lost Redis connection that never came back) or
saying that none ever beat. Kubernetes runs it as the workers' ``livenessProbe``
(deploy/base/worker.yaml).

It imports nothing but the standard library and :mod:`bot.settings`, so a probe costs about a
tenth of a second of CPU, not the half second an import of Celery takes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.errors import SettingsError
from bot.settings import Settings

HEARTBEAT_SUBDIR = "liveness"
"""Heartbeat files live in ``<GITOPS_DATA_DIR>/liveness/``, one per worker process."""

DEFAULT_MAX_AGE = 60.0
"""Oldest heartbeat the probe accepts: six missed beats at the default GITOPS_WORKER_HEARTBEAT,
so a busy event loop is not a dead one."""

MSG_NONE = (
    "no worker heartbeat in {directory}: no worker process has started here, or GITOPS_DATA_DIR "
    "differs between the worker and this probe"
)
MSG_STALE = (
    "worker {name}: last heartbeat {age:.0f} s ago (limit {limit:.0f} s); its main process is "
    "hung or has not been connected to Redis since"
)


def heartbeat_dir(settings: Settings) -> Path:
    """Where this host's worker processes write their heartbeats."""
    return settings.data_dir / HEARTBEAT_SUBDIR


@dataclass(frozen=True)
class Verdict:
    alive: bool
    problems: tuple[str, ...]
    workers: tuple[str, ...]


def check(directory: Path, *, max_age: float, now: float | None = None) -> Verdict:
    """Every heartbeat file in ``directory`` is at most ``max_age`` seconds old, and there is at
    least one."""
    now = time.time() if now is None else now
    try:
        files = sorted(p for p in directory.iterdir() if p.is_file())
    except FileNotFoundError:
        files = []
    if not files:
        return Verdict(False, (MSG_NONE.format(directory=directory),), ())
    problems = []
    for path in files:
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # removed by a worker shutting down between listing and stat
        if age > max_age:
            problems.append(MSG_STALE.format(name=path.name, age=age, limit=max_age))
    return Verdict(not problems, tuple(problems), tuple(p.name for p in files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.liveness",
        description="Exit 0 when every Celery worker process of this host beat recently.",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        help=f"oldest heartbeat accepted, in seconds (default {DEFAULT_MAX_AGE:.0f})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="heartbeat directory (default: <GITOPS_DATA_DIR>/liveness)",
    )
    args = parser.parse_args(argv)
    directory = args.dir
    if directory is None:
        try:
            directory = heartbeat_dir(Settings.from_env())
        except SettingsError as exc:
            print(f"configuration error: {exc}")
            return 1
    verdict = check(directory, max_age=args.max_age)
    if verdict.alive:
        print(f"alive: {', '.join(verdict.workers)}")
        return 0
    for problem in verdict.problems:
        print(problem)
    return 1


if __name__ == "__main__":
    sys.exit(main())
