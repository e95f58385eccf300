"""The end-to-end harness: the bot, a fake forge and a local Kubernetes API server, each a real
process of its own, wired only by URLs and settings, as an operator wires the bot to GitHub or
GitLab and a cluster.

- :class:`ForgeProcess` — the fake GitHub or GitLab (``python -m tests.e2e.forge_process``);
  its test API is called across the process boundary (``stack.forge.open_pull_request(...)``,
  ``stack.forge.comments(repo, 1)``), attributes read with ``stack.forge.get("deliveries")``.
- :class:`ClusterProcess` — ``python -m tests.kube_emulator`` and the kubeconfig it writes;
  :meth:`ClusterProcess.kubectl` runs the real kubectl against it.
- :class:`BotProcess` — ``gitops-bot serve`` (embedded Redis, Celery workers and beat,
  gunicorn) given nothing but environment variables: the forge's URL and the bot's token,
  ``KUBECONFIG``, the webhook secret and short intervals. :meth:`BotProcess.jobs` reads the
  job records (``gitops:job:<id>``) from its Redis.
- :class:`Stack` — the three together (``Stack.github(tmp)`` / ``Stack.gitlab(tmp)``), the
  forge's webhook pointing at the bot, the bot's user allowed on every repository created with
  :meth:`Stack.create_repo`, and :meth:`Stack.wait_until`, which on a timeout fails with what
  was awaited followed by everything needed to see why: the bot's job records, the fake's
  deliveries and the bot's answers, requests the forge's contract refused, and the bot's log.

Every process runs in its own process group and is stopped with SIGTERM to the group (SIGKILL
after a grace period), so nothing outlives a test. Stacks are independent: every port, data
directory and Redis is its own, so journeys run in parallel under pytest-xdist.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from multiprocessing.managers import BaseManager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis
import requests

from tests.e2e.forge_process import AUTHKEY_ENV

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GITOPS_BOT = str(BIN / "gitops-bot")
KUBECTL = str(BIN / "kubectl")
BOT_LOGIN = "gitops-bot"
WEBHOOK_SECRET = "e2e-webhook-secret"
DEVELOPER = 30  # GitLab's access levels
REPORTER = 20

#: Settings that make the bot's own waits short, so the journeys stay fast.
FAST_SETTINGS = {
    "GITOPS_FORGE_WRITE_INTERVAL": "0",
    "GITOPS_RETRY_DELAY": "0.5",
    "GITOPS_WORKER_HEARTBEAT": "0.5",
    "GITOPS_WEB_WORKERS": "1",
    "GITOPS_LOG_LEVEL": "INFO",
    # the periodic jobs stay out of journeys that are not about them (a catch-up deploying a
    # repository's first commit would change what a deploy journey counts); test_reconcile.py
    # turns them on with intervals of seconds
    "GITOPS_DRIFT_INTERVAL": "0",
    "GITOPS_RECONCILE_INTERVAL": "0",
}

T = TypeVar("T")


class E2EFailure(AssertionError):
    """A journey step did not happen in time; the message carries the diagnosis."""


def base_environment(home: Path) -> dict[str, str]:
    """A clean environment: none of the caller's forge, Redis or cluster settings leak in."""
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONPATH": str(ROOT),
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    home.mkdir(parents=True, exist_ok=True)
    return env


class Process:
    """A child process in its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 120) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise E2EFailure(
                f"{self.name} exited with code {self.popen.returncode}:\n{self.tail()}"
            )

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the process group; SIGKILL to it after ``timeout`` seconds."""
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        # anything of the group still running (a grandchild that ignored SIGTERM)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def wait_for(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float,
    diagnose: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> T:
    """Poll ``condition`` until it returns something truthy (returned); on a timeout fail with
    ``what`` and the ``diagnose()`` text."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = diagnose() if diagnose else ""
            raise E2EFailure(f"not within {timeout:g}s: {what}\n{detail}")
        time.sleep(interval)


class _ControlManager(BaseManager):
    pass


_ControlManager.register("control")


class ForgeProcess:
    """The fake GitHub or GitLab in its own process; its test API is called by name."""

    def __init__(self, workdir: Path, *, gitlab: bool, env: Mapping[str, str]) -> None:
        self.kind = "gitlab" if gitlab else "github"
        authkey = secrets.token_hex(16)
        argv = [sys.executable, "-m", "tests.e2e.forge_process", "--data", str(workdir)]
        if gitlab:
            argv.append("--gitlab")
        self.process = Process(
            f"fake {self.kind}",
            argv,
            env={**env, AUTHKEY_ENV: authkey},
            log=workdir / "forge.log",
        )
        first = wait_for(
            self._announcement, f"the fake {self.kind} started", timeout=60, diagnose=self.tail
        )
        self.url: str = first["url"]
        manager = _ControlManager(address=first["control"], authkey=authkey.encode())
        manager.connect()
        self._control: Any = manager.control()  # type: ignore[attr-defined]

    def _announcement(self) -> dict[str, str] | None:
        self.process.check_alive()
        for line in self.process.output().splitlines():
            if line.startswith("{"):
                found: dict[str, str] = json.loads(line)
                return found
        return None

    def tail(self) -> str:
        return self.process.tail()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(self._call, name)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._control.call(name, args, kwargs)

    def get(self, attribute: str) -> Any:
        """An attribute of the fake (``url``, ``deliveries``, ``contract.violations``)."""
        return self._control.get(attribute)

    def set(self, attribute: str, value: Any) -> None:
        self._control.set(attribute, value)

    def requests(self, method: str, path_contains: str) -> list[Any]:
        """The API requests the fake received of ``method`` whose path contains
        ``path_contains`` (``method``, ``path``, ``headers``, ``body``, ``status``), in order."""
        return list(self._control.requests(method, path_contains))

    def violations(self) -> list[Any]:
        return list(self.get("contract.violations"))

    def deliveries_text(self, last: int = 20) -> str:
        lines = []
        for delivery in self.get("deliveries")[-last:]:
            lines.append(
                f"  {delivery.event} {delivery.id[:8]} → {delivery.status} "
                f"{json.dumps(delivery.answer)[:200]}"
            )
        return "\n".join(lines) or "  (none)"

    def stop(self) -> None:
        self.process.stop()


class ClusterProcess:
    """``python -m tests.kube_emulator``: a local Kubernetes API server and its kubeconfig."""

    def __init__(self, workdir: Path, *, env: Mapping[str, str], latency_ms: float = 0) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self._home = workdir / "kubectl-home"
        argv = [
            sys.executable,
            "-m",
            "tests.kube_emulator",
            "--port",
            "0",
            "--kubeconfig",
            str(self.kubeconfig),
        ]
        if latency_ms:
            argv += ["--latency-ms", str(latency_ms)]
        self._env = dict(env)
        self.process = Process("kube emulator", argv, env=env, log=workdir / "cluster.log")
        found = wait_for(
            self._serving, "the kube emulator serving", timeout=60, diagnose=self.process.tail
        )
        self.url = found

    def _serving(self) -> str | None:
        self.process.check_alive()
        found = re.search(r"serving on (\S+)", self.process.output())
        return found.group(1) if found and self.kubeconfig.exists() else None

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run the real kubectl against the emulator; its stdout (raises on failure)."""
        env = {**self._env, "HOME": str(self._home), "KUBECONFIG": str(self.kubeconfig)}
        self._home.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [KUBECTL, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise E2EFailure(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def stop(self) -> None:
        self.process.stop()


class BotProcess:
    """``gitops-bot serve`` configured by environment variables only."""

    def __init__(
        self, workdir: Path, *, env: Mapping[str, str], startup_timeout: float = 90
    ) -> None:
        self.data_dir = workdir / "bot-data"
        # the caller's settings win over FAST_SETTINGS
        environment = {**FAST_SETTINGS, **env, "GITOPS_DATA_DIR": str(self.data_dir)}
        self.env = environment
        self.process = Process(
            "gitops-bot serve",
            [GITOPS_BOT, "serve", "--port", "0"],
            env=environment,
            log=workdir / "bot.log",
        )
        self.url = wait_for(
            self._listening, "gitops-bot serve listening", timeout=60, diagnose=self.tail
        )
        wait_for(
            self._ready,
            "gitops-bot serve ready (/readyz 200: Redis up, a worker on every queue)",
            timeout=startup_timeout,
            diagnose=self.diagnosis,
        )

    def _listening(self) -> str | None:
        self.process.check_alive()
        found = re.search(r"listening on (http://\S+)", self.process.output())
        return found.group(1) if found else None

    def _ready(self) -> bool:
        self.process.check_alive()
        try:
            return requests.get(self.url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def webhook_url(self, provider: str) -> str:
        return f"{self.url}/webhooks/{provider}"

    def redis(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.data_dir / "redis.sock"), socket_timeout=5)

    def jobs(self) -> list[dict[str, str]]:
        """Every job record in the bot's Redis (``gitops:job:<id>``), oldest first."""
        client = self.redis()
        try:
            records = []
            for key in client.scan_iter("gitops:job:*"):
                record = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
                record["id"] = key.decode().rsplit(":", 1)[-1]
                records.append(record)
        except redis.RedisError as exc:
            return [{"error": f"Redis unreadable: {exc}"}]
        finally:
            client.close()
        return sorted(records, key=lambda r: float(r.get("queued_at", "0") or 0))

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text

    def tail(self, lines: int = 150) -> str:
        return self.process.tail(lines)

    def diagnosis(self) -> str:
        jobs = "\n".join(
            "  " + json.dumps({k: v for k, v in job.items() if k != "event"})[:400]
            for job in self.jobs()
        )
        return f"bot jobs:\n{jobs or '  (none)'}\nbot log (last lines):\n{self.tail()}"

    def stop(self) -> None:
        self.process.stop(timeout=60)


class Stack:
    """A fake forge, a cluster and the bot, wired together. Use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        provider: str,
        bot_env: Mapping[str, str] | None = None,
        cluster_latency_ms: float = 0,
    ) -> None:
        self.workdir = workdir
        self.provider = provider
        self._exit = ExitStack()
        env = base_environment(workdir / "home")
        self.env = env
        try:
            self.forge = ForgeProcess(workdir / "forge", gitlab=provider == "gitlab", env=env)
            self._exit.callback(self.forge.stop)
            self.cluster = ClusterProcess(
                workdir / "cluster", env=env, latency_ms=cluster_latency_ms
            )
            self._exit.callback(self.cluster.stop)
            self.bot_token: str = self.forge.token_for(BOT_LOGIN)
            if provider == "github":
                forge_env = {
                    "GITHUB_API_URL": self.forge.url,
                    "GITHUB_TOKEN": self.bot_token,
                    "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                }
            else:
                forge_env = {
                    "GITLAB_URL": self.forge.url,
                    "GITLAB_TOKEN": self.bot_token,
                    "GITLAB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                }
            self.bot = BotProcess(
                workdir,
                env={
                    **env,
                    **forge_env,
                    "KUBECONFIG": str(self.cluster.kubeconfig),
                    **(bot_env or {}),
                },
            )
            self._exit.callback(self.bot.stop)
            if provider == "github":
                self.forge.add_webhook(self.bot.webhook_url("github"), secret=WEBHOOK_SECRET)
            else:
                self.forge.add_webhook(self.bot.webhook_url("gitlab"), token=WEBHOOK_SECRET)
        except BaseException:
            self._exit.close()
            raise

    @classmethod
    def github(cls, workdir: Path, **kwargs: Any) -> Stack:
        return cls(workdir, provider="github", **kwargs)

    @classmethod
    def gitlab(cls, workdir: Path, **kwargs: Any) -> Stack:
        return cls(workdir, provider="gitlab", **kwargs)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._exit.close()

    # --- set-up ----------------------------------------------------------------------------------

    def create_repo(self, name: str, files: Mapping[str, str | bytes | None]) -> None:
        """A repository (GitHub ``owner/name``; GitLab ``group/project``) with ``files`` on its
        default branch, the bot's user allowed to write to it."""
        if self.provider == "github":
            self.forge.create_repo(name, files=dict(files))
            self.forge.set_permission(name, BOT_LOGIN, "write")
        else:
            self.forge.create_project(name, files=dict(files))
            self.forge.add_member(name.rsplit("/", 1)[0], BOT_LOGIN, DEVELOPER)

    def grant(self, name: str, user: str, role: str) -> None:
        """Give ``user`` a role on the repository: ``write`` or ``read`` (on GitLab: Developer or
        Reporter)."""
        if self.provider == "github":
            self.forge.set_permission(name, user, role)
        else:
            level = {"write": DEVELOPER, "read": REPORTER}[role]
            self.forge.add_member(name, user, level)

    def deploy(self, name: str, ref: str = "main") -> str:
        """Deploy ``ref`` of the repository to the cluster with ``gitops-bot apply`` (as the bot
        would have deployed it); its output."""
        if self.provider == "github":
            git_dir = self.forge.repo(name).git_dir
        else:
            git_dir = self.forge.project(name).git_dir
        result = subprocess.run(
            [
                GITOPS_BOT,
                "apply",
                "--repo",
                str(git_dir),
                "--ref",
                ref,
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--no-wait",
            ],
            env={**self.env, "GITOPS_DATA_DIR": str(self.workdir / "apply-data")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise E2EFailure(f"gitops-bot apply failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    # --- observing -------------------------------------------------------------------------------

    def diagnosis(self) -> str:
        try:
            deliveries = self.forge.deliveries_text()
            violations = "\n".join(f"  {v}" for v in self.forge.violations()) or "  (none)"
        except Exception as exc:  # the fake itself died: say so, keep the rest
            deliveries = violations = f"  (the fake forge is unreachable: {exc})"
        return (
            f"{self.forge.kind} deliveries (last 20) and the bot's answers:\n{deliveries}\n"
            f"requests the {self.forge.kind} contract refused:\n{violations}\n"
            f"{self.bot.diagnosis()}"
        )

    def wait_until(
        self,
        condition: Callable[[], T | None],
        what: str,
        *,
        timeout: float = 60,
        interval: float = 0.1,
    ) -> T:
        """Poll ``condition`` until truthy (its value is returned); on a timeout fail with
        ``what`` and the stack's diagnosis."""

        def checked() -> T | None:
            self.bot.process.check_alive()
            return condition()

        return wait_for(checked, what, timeout=timeout, diagnose=self.diagnosis, interval=interval)

    def comments(self, name: str, number: int) -> list[Any]:
        """The PR's comments (GitHub) or the MR's notes (GitLab), oldest first."""
        if self.provider == "github":
            return list(self.forge.comments(name, number))
        return list(self.forge.notes(name, number))

    def bot_comments(self, name: str, number: int) -> list[Any]:
        return [c for c in self.comments(name, number) if self.author(c) == BOT_LOGIN]

    def author(self, comment: Any) -> str:
        if self.provider == "github":
            return str(comment.author)
        return str(self.forge.get("users_by_id")[comment.author_id].username)

    def statuses(self, name: str, sha: str) -> list[tuple[str, str]]:
        """``(state, description)`` of each commit status the bot set on ``sha``, in order.

        GitHub keeps every status; GitLab moves one status through its states (running →
        success), so there the history is read from the requests the fake accepted."""
        if self.provider == "github":
            return [(s.state, s.description or "") for s in self.forge.statuses(name, sha)]
        history = []
        for request in self.forge.requests("POST", f"/statuses/{sha}"):
            if request.status == 201:
                body = json.loads(request.body)
                history.append((body["state"], body.get("description") or ""))
        return history

    @property
    def in_progress(self) -> str:
        """The state a preview's first status has: GitHub's ``pending``, GitLab's ``running``."""
        return "pending" if self.provider == "github" else "running"

    def settled_statuses(self, name: str, sha: str) -> list[tuple[str, str]] | None:
        """The statuses of ``sha`` once the latest one is final (None until then)."""
        statuses = self.statuses(name, sha)
        if statuses and statuses[-1][0] not in ("pending", "running"):
            return statuses
        return None

    def head(self, name: str, number: int) -> str:
        if self.provider == "github":
            return str(self.forge.repo(name).pulls[number].head_sha)
        return str(self.forge.project(name).mrs[number].head_sha)

    def job_states(self, kind: str | None = None) -> list[str]:
        return [j.get("state", "") for j in self.bot.jobs() if kind is None or j["type"] == kind]


def stack_fixture(tmp_path_factory: Any, provider: str, **kwargs: Any) -> Iterator[Stack]:
    """The body of a module-scoped fixture: one stack for the module's journeys, each of which
    uses repositories of its own. Fails at teardown if the bot sent a request the forge's
    contract refuses."""
    workdir = tmp_path_factory.mktemp(f"e2e-{provider}")
    with Stack(workdir, provider=provider, **kwargs) as stack:
        yield stack
        violations = stack.forge.violations()
        assert violations == [], f"requests {provider} would refuse: {violations}"
