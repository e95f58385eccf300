"""Previews end to end: webhook → comment, with real processes (the end-to-end harness:
``gitops-bot serve`` with its embedded Redis and Celery workers, the fake GitHub and the local
Kubernetes API server, each its own process).

    ./dev bench previews [--only warm,burst,unreachable] [--rounds 5] [--prs 100] [--apps 20]
                         [--workers 1,2,4] [--latency-ms 0] [--blackhole-limit 300]

1. **warm**: a pull request touching a 50-object app, previewed live by a warm preview worker
   (one worker process, which has already previewed it once): each round pushes a commit that
   changes the app, and the job's own record gives where the time went — queue wait (intake
   to start), checkout, render, diff, dry-run, post — and webhook → comment (intake to the job's
   end, the comment and status posted). Target: under 3 s.
2. **burst**: 100 pull requests on a 20-app repository (each touching one app) become ready
   for review at once: time from the first delivery to the last comment posted, with 1, 2 and
   4 preview worker processes (``GITOPS_PREVIEW_CONCURRENCY``).
3. **unreachable**: what an unreachable target costs a preview (it falls back to the offline
   diff, labelled so): the API server's port closed (connection refused) against a blackholed
   address (a listener whose accept queue is full, so the kernel drops the SYNs and connecting
   times out, as with a firewall that drops packets).

Figures, not assertions: the machine is shared; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Stack  # noqa: E402

STEPS = ("queue_wait", "checkout", "render", "diff", "dry_run", "post", "total", "observed")
"""A job's record: queue wait (intake to start), its steps, total (intake to the job's end, the
comment and status posted); observed: from the push to the fake seeing the final status."""


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def deployment(name: str, image: str = "nginx:1.25") -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: main
          image: {image}
          ports: [{{containerPort: 8080}}]
          envFrom: [{{configMapRef: {{name: {name}-config}}}}]
"""


def service(name: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def configmap(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{VERSION: '{value}'}}\n"


def secret(name: str, value: str) -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\n"
        f"stringData: {{TOKEN: '{value}'}}\n"
    )


def big_app(version: str) -> dict[str, str | bytes | None]:
    """One app of 50 objects: a Namespace, a ServiceAccount and 12 x (Deployment, Service,
    ConfigMap, Secret); ``version`` goes into every ConfigMap and Secret."""
    files: dict[str, str | bytes | None] = {
        ".gitops.yaml": "version: 1\napps:\n  - {name: big, path: big, namespace: big}\n",
        "big/namespace.yaml": namespace("big"),
        "big/serviceaccount.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: big}\n",
    }
    for i in range(12):
        name = f"svc{i:02d}"
        files[f"big/{name}.yaml"] = "---\n".join(
            [
                deployment(name),
                service(name),
                configmap(f"{name}-config", version),
                secret(f"{name}-secret", f"s3cret-{version}"),
            ]
        )
    return files


def many_apps(count: int) -> dict[str, str | bytes | None]:
    """``count`` apps of 5 objects each (Namespace, Deployment, Service, 2 ConfigMaps)."""
    lines = ["version: 1", "apps:"]
    files: dict[str, str | bytes | None] = {}
    for i in range(count):
        app = f"app{i:02d}"
        lines.append(f"  - {{name: {app}, path: {app}, namespace: {app}}}")
        files[f"{app}/namespace.yaml"] = namespace(app)
        files[f"{app}/workload.yaml"] = "---\n".join(
            [deployment(app), service(app), configmap(f"{app}-config", "1")]
        )
        files[f"{app}/extra.yaml"] = configmap(f"{app}-extra", "1")
    files[".gitops.yaml"] = "\n".join(lines) + "\n"
    return files


def previews(stack: Stack) -> list[dict[str, str]]:
    return [job for job in stack.bot.jobs() if job.get("type") == "preview"]


def finished(stack: Stack, count: int) -> list[dict[str, str]] | None:
    """The preview jobs once ``count`` of them have ended (None before)."""
    jobs = [job for job in previews(stack) if job.get("finished_at")]
    return jobs if len(jobs) >= count else None


def steps_of(job: dict[str, str]) -> dict[str, float]:
    queued, started, ended = (float(job[k]) for k in ("queued_at", "started_at", "finished_at"))
    steps = {"queue_wait": started - queued, "total": ended - queued, "observed": float("nan")}
    for step in ("checkout", "render", "diff", "dry_run", "post"):
        steps[step] = float(job.get(f"seconds_{step}", "nan"))
    return steps


def row(label: str, values: dict[str, float]) -> str:
    return f"  {label:<8}" + "".join(f"{values[s]:>11.3f}" for s in STEPS)


def header() -> str:
    return f"  {'seconds':<8}" + "".join(f"{s:>11}" for s in STEPS)


def bench_warm(workdir: Path, *, rounds: int, latency_ms: float) -> None:
    print("\n## webhook → comment, a PR touching a 50-object app, warm worker (target < 3 s)")
    env = {"GITOPS_PREVIEW_CONCURRENCY": "1", "GITOPS_LOG_LEVEL": "WARNING"}
    with Stack.github(workdir / "warm", bot_env=env, cluster_latency_ms=latency_ms) as stack:
        stack.create_repo("acme/big", big_app("0"))
        stack.deploy("acme/big")
        stack.forge.commit("acme/big", "change", big_app("1"))
        stack.forge.open_pull_request("acme/big", head="change")
        stack.wait_until(lambda: finished(stack, 1), "the first (cold) preview", timeout=300)
        print(header())
        print(row("cold", steps_of(previews(stack)[0])))
        measured = []
        for round_ in range(rounds):
            pushed = time.monotonic()
            head = stack.forge.commit("acme/big", "change", big_app(f"{round_ + 2}"))
            stack.wait_until(
                lambda h=head: stack.settled_statuses("acme/big", h),
                "a warm preview's status",
                timeout=300,
                interval=0.01,
            )
            observed = time.monotonic() - pushed
            jobs = stack.wait_until(
                lambda n=round_ + 2: finished(stack, n), "a warm preview", timeout=300
            )
            job = max(jobs, key=lambda j: float(j["queued_at"]))
            assert job["state"] == "posted", job
            measured.append({**steps_of(job), "observed": observed})
            print(row(f"warm {round_ + 1}", measured[-1]))
        print(row("median", {s: statistics.median(m[s] for m in measured) for s in STEPS}))
        print("  (total: intake to the job's end, comment and status posted; observed: from the "
              "push,\n  the fake's own git work and webhook included, to the final status seen)")  # fmt: skip
        (comment,) = stack.bot_comments("acme/big", 1)
        assert "s3cret-" not in comment.body
        print(f"  (the comment: {len(comment.body)} characters; status: "
              f"{stack.statuses('acme/big', stack.head('acme/big', 1))[-1]})")  # fmt: skip


def bench_burst(
    workdir: Path, *, prs: int, apps: int, workers: list[int], latency_ms: float
) -> None:
    print(f"\n## {prs} pull requests at once on a {apps}-app repository (each touching one app)")
    results = []
    for count in workers:
        env = {"GITOPS_PREVIEW_CONCURRENCY": str(count), "GITOPS_LOG_LEVEL": "WARNING"}
        with Stack.github(
            workdir / f"burst-{count}", bot_env=env, cluster_latency_ms=latency_ms
        ) as stack:
            repo = "acme/fleet"
            stack.create_repo(repo, many_apps(apps))
            stack.deploy(repo)
            for number in range(prs):
                app = f"app{number % apps:02d}"
                stack.forge.commit(
                    repo, f"pr-{number}", {f"{app}/extra.yaml": configmap(f"{app}-extra", f"pr-{number}")}
                )  # fmt: skip
                # drafts are not previewed: their "opened" deliveries queue nothing
                stack.forge.open_pull_request(repo, head=f"pr-{number}", draft=True)
            sent = time.monotonic()
            for number in range(1, prs + 1):
                stack.forge.mark_ready_for_review(repo, number)
            sending = time.monotonic() - sent
            jobs = stack.wait_until(
                lambda: finished(stack, prs), f"{prs} previews", timeout=60 + 30 * prs
            )
            states = {job["state"] for job in jobs}
            first = min(float(job["queued_at"]) for job in jobs)
            last = max(float(job["finished_at"]) for job in jobs)
            steps = [steps_of(job) for job in jobs]
            commented = sum(1 for n in range(1, prs + 1) if stack.bot_comments(repo, n))
            results.append((count, last - first, sending, steps, states, commented))
    print(f"  {'workers':>8} {'all posted':>11} {'per PR':>8} {'deliveries':>11} "
          f"{'queue wait p50/max':>19} {'job p50':>8}  outcomes")  # fmt: skip
    for count, total, sending, steps, states, commented in results:
        waits = sorted(s["queue_wait"] for s in steps)
        job = statistics.median(s["total"] - s["queue_wait"] for s in steps)
        print(
            f"  {count:>8} {total:>10.1f}s {total / prs:>7.2f}s {sending:>10.1f}s "
            f"{statistics.median(waits):>9.1f}/{waits[-1]:>5.1f} s {job:>7.2f}s  "
            f"{sorted(states)}, {commented}/{prs} PRs commented"
        )
    print("  median job steps (s):")
    print(header())
    for count, _, _, steps, _, _ in results:
        print(row(f"{count} wkr", {k: statistics.median(s[k] for s in steps) for k in STEPS}))
    base = results[0][1]
    print("  speed-up against 1 worker: "
          + ", ".join(f"{c} workers x{base / t:.2f}" for c, t, *_ in results[1:]))  # fmt: skip


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A local port where connecting hangs: a listener that never accepts, its accept queue
    filled, so the kernel drops further SYNs (as a firewall that drops packets does)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(1.0)
        try:
            probe.connect(("127.0.0.1", port))
            raise RuntimeError("the blackhole accepted a connection")
        except TimeoutError:
            pass
        finally:
            probe.close()
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def kubeconfig_at(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return path


def bench_unreachable(workdir: Path, *, limit: float) -> None:
    print("\n## an unreachable target: the preview falls back to the offline diff")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    with blackhole() as hole:
        cases = {
            "connection refused": f"https://127.0.0.1:{refused_port}",
            "blackholed (timeout)": f"https://127.0.0.1:{hole}",
        }
        for label, server in cases.items():
            kubeconfig = kubeconfig_at(workdir / f"{label.split()[0]}.kubeconfig", server)
            env = {
                "KUBECONFIG": str(kubeconfig),
                "GITOPS_PREVIEW_CONCURRENCY": "1",
                "GITOPS_LOG_LEVEL": "WARNING",
            }
            with Stack.github(workdir / label.split()[0], bot_env=env) as stack:
                stack.create_repo("acme/app", many_apps(2))
                stack.forge.commit("acme/app", "change", {"app00/extra.yaml": configmap("app00-extra", "2")})  # fmt: skip
                opened = time.monotonic()
                stack.forge.open_pull_request("acme/app", head="change")
                head = stack.head("acme/app", 1)
                try:
                    statuses = stack.wait_until(
                        lambda h=head: stack.settled_statuses("acme/app", h),
                        "the preview's final status",
                        timeout=limit,
                    )
                except AssertionError:
                    print(f"  {label:<22} no result within {limit:.0f} s")
                    continue
                elapsed = time.monotonic() - opened
                (job,) = stack.wait_until(lambda: finished(stack, 1), "the job's record")
                steps = steps_of(job)
                print(
                    f"  {label:<22} webhook → comment {elapsed:6.1f} s (job: dry-run "
                    f"{steps['dry_run']:.1f} s, state {job['state']}); status: "
                    f"{statuses[-1][0]} “{statuses[-1][1]}”"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="warm,burst,unreachable")
    parser.add_argument("--rounds", type=int, default=5, help="warm previews measured")
    parser.add_argument("--prs", type=int, default=100)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--workers", default="1,2,4", help="preview worker processes to try")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the API server's added latency"
    )
    parser.add_argument(
        "--blackhole-limit", type=float, default=300, help="seconds to wait for a blackholed "
        "target's preview before giving up"
    )  # fmt: skip
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    print(f"previews end to end (API server latency {args.latency_ms:g} ms)")
    with tempfile.TemporaryDirectory(prefix="bench-previews-") as tmp:
        workdir = Path(tmp)
        if "warm" in chosen:
            bench_warm(workdir, rounds=args.rounds, latency_ms=args.latency_ms)
        if "burst" in chosen:
            bench_burst(
                workdir,
                prs=args.prs,
                apps=args.apps,
                workers=[int(n) for n in args.workers.split(",")],
                latency_ms=args.latency_ms,
            )
        if "unreachable" in chosen:
            bench_unreachable(workdir, limit=args.blackhole_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
