"""Benchmark of deploy on merge (issue 15, point 10): merge → ``gitops/deploy`` status.

Run: ``./dev bench deploys [--latency-ms 5] [--objects 50] [--apps 20] [--runs 3]``

Real processes wired as in production: the kube emulator in its own process (its controller on,
so Deployments roll out; ``--latency-ms`` answers each request after that delay, as a real API
server answers after its etcd round trip), the fake GitHub (git over HTTP, the REST API the bot
uses), an embedded Redis, and ``gitops-bot worker --queues deploys``. Each merge's push is
queued as the webhook intake queues it; the clock runs until the fake GitHub has the commit's
``gitops/deploy`` status ``success``.

1. **One app of ``--objects`` objects** (two Deployments, four Services, ConfigMaps): it is
   deployed once (a warm worker, as in production), then ``--runs`` merges each change one
   Deployment's image and five ConfigMaps. Prints merge → status (target < 5 s with 5 ms of
   latency) and the steps the jobs record: the plan job's checkout, render and plan (digests
   compared with the ApplySet parents), the app job's checkout, render, apply, health wait and
   report.
2. **One merge changing ``--apps`` apps** (ten objects each, one Deployment among them), with
   1 and then 2 deploy worker processes (``GITOPS_DEPLOY_CONCURRENCY``): apps deploy in
   parallel, one job per app.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.embedded_redis import EmbeddedRedis  # noqa: E402
from bot.queue import JOB_KEY, JobQueue, redis_client  # noqa: E402
from tests.deploy_support import deployment, push_event  # noqa: E402
from tests.fake_forge.github import FakeGitHub  # noqa: E402

GITOPS_BOT = str(ROOT / ".venv" / "bin" / "gitops-bot")
EMULATOR = """
import sys
from tests.kube_emulator import EmulatorServer
server = EmulatorServer(latency=float(sys.argv[2]) / 1000, controller_delay=0.2)
server.start()
server.write_kubeconfig(sys.argv[1])
print(server.url, flush=True)
sys.stdin.read()
server.stop()
"""
APP_STEPS = ("checkout", "render", "apply", "health", "report")
PLAN_STEPS = ("checkout", "render", "plan")


def configmap(name: str, value: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"value": value, "payload": "x" * 200},
        }
    )


def service(name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80}]},
        }
    )


def app_files(app: str, objects: int, *, version: int) -> dict[str, str | bytes | None]:
    """``objects`` objects in ``<app>/``: two Deployments and four Services when there is room,
    ConfigMaps for the rest; ``version`` changes one Deployment's image and five ConfigMaps."""
    files: dict[str, str | bytes | None] = {}
    deployments = 2 if objects >= 20 else 1
    services = 4 if objects >= 20 else 0
    for i in range(deployments):
        image = f"nginx:1.{25 + (version if i == 0 else 0)}"
        files[f"{app}/deploy-{i}.yaml"] = deployment(f"web-{i}", image)
    for i in range(services):
        files[f"{app}/svc-{i}.yaml"] = service(f"web-{i}")
    for i in range(objects - deployments - services):
        files[f"{app}/cm-{i:03d}.yaml"] = configmap(f"cm-{i:03d}", str(version if i < 5 else 0))
    return files


def gitops_yaml(apps: list[str]) -> str:
    lines = ["version: 1", "apps:"]
    for app in apps:
        lines.append(f"  - {{name: {app}, path: {app}, namespace: {app}, createNamespace: true}}")
    return "\n".join(lines) + "\n"


class Bench:
    """The bot's processes around one fake GitHub repository."""

    def __init__(self, root: Path, latency_ms: float) -> None:
        self.root = root
        kubeconfig = root / "kubeconfig"
        self.emulator = subprocess.Popen(
            [sys.executable, "-c", EMULATOR, str(kubeconfig), str(latency_ms)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.emulator.stdout is not None
        self.emulator.stdout.readline()
        self.redis = EmbeddedRedis(root / "redis").start()
        self.gh = FakeGitHub(root / "github")
        self.gh.__enter__()
        self.gh.bot_token = self.gh.token_for("gitops-bot")
        self.kubeconfig = kubeconfig
        self.client = redis.Redis.from_url(self.redis.url)
        self.queue = JobQueue(redis_client(self.redis.url, timeout=5), delivery_ttl=3600)
        self.worker: subprocess.Popen[bytes] | None = None
        self.number = 0
        self.repo = ""

    def create_repo(self, name: str, files: dict[str, str | bytes | None]) -> None:
        self.repo = name
        self.gh.create_repo(name, files=files)
        self.gh.set_permission(name, "gitops-bot", "write")

    def start_worker(self, concurrency: int) -> None:
        self.stop_worker()
        env = dict(
            os.environ,
            REDIS_URL=self.redis.url,
            GITHUB_API_URL=self.gh.url,
            GITHUB_TOKEN=self.gh.bot_token or "",
            GITOPS_DATA_DIR=str(self.root / f"worker-{concurrency}"),
            KUBECONFIG=str(self.kubeconfig),
            GITOPS_FORGE_WRITE_INTERVAL="0",
            GITOPS_DEPLOY_CONCURRENCY=str(concurrency),
            GITOPS_LOG_LEVEL="WARNING",
        )
        log = (self.root / f"worker-{concurrency}.log").open("wb")
        self.worker = subprocess.Popen(
            [GITOPS_BOT, "worker", "--queues", "deploys"], env=env, stdout=log, stderr=log
        )

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.terminate()
            self.worker.wait(timeout=60)
            self.worker = None

    def merge(self, files: dict[str, str | bytes | None]) -> tuple[float, str]:
        """Merge a PR changing ``files``, queue its push; seconds until the deploy status is
        success (and the merged commit)."""
        self.number += 1
        branch = f"change-{self.number}"
        self.gh.commit(self.repo, branch, files)
        number = self.gh.open_pull_request(self.repo, head=branch, author="alice")
        sha = self.gh.merge_pull_request(self.repo, number)
        started = time.monotonic()
        self.queue.enqueue(push_event(self.gh, "0" * 40, sha, repo=self.repo), provider="github")
        deadline = started + 600
        while True:
            status = self.gh.latest_status(self.repo, sha, "gitops/deploy")
            if status is not None and status.state in ("success", "failure", "error"):
                assert status.state == "success", status.description
                return time.monotonic() - started, sha
            assert self.worker is not None and self.worker.poll() is None, "worker died"
            assert time.monotonic() < deadline, "no deploy status within 600 s"
            time.sleep(0.01)

    def job_steps(self) -> list[dict[str, float]]:
        """The steps of every job recorded since the last call (then forgotten)."""
        out = []
        for key in self.client.scan_iter(JOB_KEY.format(job_id="*")):
            fields = self.client.hgetall(key)
            steps = {
                k.decode().removeprefix("seconds_"): float(v)
                for k, v in fields.items()
                if k.startswith(b"seconds_")
            }
            if steps:
                out.append(steps)
            self.client.delete(key)
        return out

    def close(self) -> None:
        self.stop_worker()
        self.gh.__exit__(None, None, None)
        self.redis.stop()
        assert self.emulator.stdin is not None
        self.emulator.stdin.close()
        self.emulator.wait(timeout=30)


def one_app(bench: Bench, *, objects: int, runs: int) -> None:
    bench.create_repo(
        "acme/one", {".gitops.yaml": gitops_yaml(["web"]), **app_files("web", objects, version=0)}
    )
    bench.start_worker(1)
    first, _ = bench.merge({"web/README.md": "first deploy\n"})
    bench.job_steps()
    print(f"1. one app of {objects} objects (first deploy, cold worker: {first:.2f} s)")
    totals: list[float] = []
    steps: dict[str, list[float]] = {}
    for run in range(1, runs + 1):
        seconds, _ = bench.merge(app_files("web", objects, version=run))
        totals.append(seconds)
        for recorded in bench.job_steps():
            kind = "app" if "apply" in recorded else "plan"
            for step, value in recorded.items():
                steps.setdefault(f"{kind} {step}", []).append(value)
    median = statistics.median(totals)
    verdict = "ok" if median < 5 else "MISSED"
    print(
        f"   merge → deploy status: median {median:.2f} s, min {min(totals):.2f} s over "
        f"{runs} merges [target < 5 s: {verdict}]"
    )
    for kind, names in (("plan", PLAN_STEPS), ("app", APP_STEPS)):
        shown = [
            f"{name} {statistics.median(steps[f'{kind} {name}']):.3f} s"
            for name in names
            if f"{kind} {name}" in steps
        ]
        print(f"   {kind} job: " + ", ".join(shown))


def many_apps(bench: Bench, *, apps: int, runs: int) -> None:
    names = [f"app-{i:02d}" for i in range(apps)]
    files: dict[str, str | bytes | None] = {".gitops.yaml": gitops_yaml(names)}
    for name in names:
        files.update(app_files(name, 10, version=0))
    bench.create_repo("acme/many", files)
    print(f"2. one merge changing {apps} apps of 10 objects (one Deployment each)")
    version = 0
    results: dict[int, float] = {}
    for workers in (1, 2):
        bench.start_worker(workers)
        version += 1
        bench.merge({f"{name}/README.md": f"warm {version}\n" for name in names[:1]})
        bench.job_steps()
        times = []
        steps: dict[str, list[float]] = {}
        for _ in range(runs):
            version += 1
            change: dict[str, str | bytes | None] = {}
            for name in names:
                change.update(app_files(name, 10, version=version))
            seconds, _ = bench.merge(change)
            times.append(seconds)
            for recorded in bench.job_steps():
                if "apply" in recorded:
                    for step, value in recorded.items():
                        steps.setdefault(step, []).append(value)
        results[workers] = statistics.median(times)
        each = ", ".join(
            f"{step} {statistics.median(steps[step]):.3f} s" for step in APP_STEPS if step in steps
        )
        print(
            f"   {workers} deploy worker{'s' if workers > 1 else ''}: merge → deploy status "
            f"median {results[workers]:.2f} s over {runs} merges; per app job: {each}"
        )
    print(f"   2 workers / 1 worker: {results[2] / results[1]:.2f}x the time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print(
        f"deploys against the kube emulator with {args.latency_ms:g} ms per request, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="bench-deploys-") as tmp:
        bench = Bench(Path(tmp), args.latency_ms)
        try:
            one_app(bench, objects=args.objects, runs=args.runs)
            many_apps(bench, apps=args.apps, runs=args.runs)
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
