"""Benchmark of the cluster engine against the real kubectl, on the same local API emulator.

Run: ``.venv/bin/python bench/cluster.py [--objects 1000] [--large 10000] [--concurrency 16]
[--latency-ms 5] [--whole 300] [--only-whole] [--also CMD]``

1. Starts the Kubernetes API emulator in a subprocess (so it does not share our GIL), without
   its workload controller: neither tool waits for a rollout here, and on a real cluster
   controllers run in kube-controller-manager, not on the API server's CPU.
2. Generates N objects (ConfigMaps, Deployments, Services) in a directory, applies them with
   the bot, changes 10% of them, then times the bot's live preview against
   ``kubectl diff --server-side -f DIR`` (same field manager, kubectl's discovery cache warm).
   The bot's times include reading and rendering the files, as kubectl's include parsing them.
3. Times the bot's apply against ``kubectl apply --server-side -f DIR``, each into a fresh
   namespace (the bot also labels for its ApplySet and prunes; no health wait on either side).
4. With ``--latency-ms``: the same comparison on a second emulator that answers each request
   after that delay (sleeping, not working), as a real API server answers after its etcd round
   trip; on the plain emulator both tools are bound by the emulator's own CPU per write.
5. With ``--whole N`` (default 300): whole processes, as a user at a terminal runs them. A git
   repository holds N objects of one app (base commit) and 10% of them changed (head commit);
   the base is deployed with ``gitops-bot apply``, then ``gitops-bot preview --kubeconfig``
   (import, git, render, discovery, dry-runs, report) is timed against
   ``kubectl diff --server-side`` of the head's directory, on the plain emulator and, with
   ``--latency-ms``, on the slow one. ``--also CMD`` times another ``gitops-bot`` (say, a
   wrapper running an older checkout) in the same rounds, for before/after figures.
6. With ``--large``: applies that many objects, changes 10%, and runs the bot's preview in a
   separate process, reporting its wall time and peak RSS.

Prints one line per figure and the ratios (targets, issue 12: in-process preview and apply of
1,000 objects at least 3x faster than kubectl with 5 ms of latency; the whole-process preview of
300 objects at least 3x faster with 5 ms of latency and no slower without; large preview under
60 s and under 1 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.cluster import Cluster, Target, apply_app, preview_app  # noqa: E402
from bot.manifests import AppSpec, render_app  # noqa: E402
from bot.model import Manifest  # noqa: E402

KUBECTL = str(ROOT / ".venv" / "bin" / "kubectl")
GITOPS_BOT = str(ROOT / ".venv" / "bin" / "gitops-bot")

EMULATOR_SNIPPET = """
import sys
from tests.kube_emulator import EmulatorServer
server = EmulatorServer(controller=False, latency=float(sys.argv[2]) / 1000)
server.start()
server.write_kubeconfig(sys.argv[1])
print(server.url, flush=True)
sys.stdin.read()
server.stop()
"""


def app_spec(name: str) -> AppSpec:
    return AppSpec(name=name, path=name, namespace=name, target="bench")


def make_objects(count: int, *, variant: int = 0, changed_every: int = 10) -> list[dict[str, Any]]:
    """``count`` objects, no namespace: 50% ConfigMaps, 25% Deployments, 25% Services. Objects
    whose index is a multiple of ``changed_every`` differ when ``variant`` differs."""
    objs: list[dict[str, Any]] = []
    for i in range(count):
        v = variant if i % changed_every == 0 else 0
        name = f"obj-{i:05d}"
        if i % 4 in (0, 1):
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "labels": {"app": "bench"}},
                    "data": {"index": str(i), "variant": str(v), "payload": "x" * 200},
                }
            )
        elif i % 4 == 2:
            objs.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "labels": {"app": name}},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "web",
                                        "image": f"nginx:1.{25 + v}",
                                        "ports": [{"containerPort": 80}],
                                        "env": [{"name": "INDEX", "value": str(i)}],
                                    }
                                ]
                            },
                        },
                    },
                }
            )
        else:
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "labels": {"app": name}},
                    "spec": {
                        "selector": {"app": name},
                        "ports": [{"port": 80 + v, "targetPort": 80}],
                    },
                }
            )
    return objs


def start_emulator(
    kubeconfig: Path, *, latency_ms: float = 0.0
) -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process (so it does not share our interpreter lock), with an
    admin kubeconfig written to ``kubeconfig``; stops when its stdin is closed."""
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR_SNIPPET, str(kubeconfig), str(latency_ms)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulator.stdout is not None
    return emulator, emulator.stdout.readline().strip()


def write_dir(directory: Path, objs: list[dict[str, Any]], per_file: int = 100) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    for start in range(0, len(objs), per_file):
        chunk = objs[start : start + per_file]
        text = yaml.dump_all(chunk, Dumper=yaml.CSafeDumper, sort_keys=False)
        (directory / f"part-{start // per_file:04d}.yaml").write_text(text)


def read_dir(directory: Path, app: str) -> list[Manifest]:
    """The bot's own render of a plain-YAML app directory (what a preview or deploy runs)."""
    rendered = render_app(directory.parent, AppSpec(name=app, path=directory.name, namespace=app))
    if rendered.errors:
        raise SystemExit(f"render failed: {rendered.errors[:3]}")
    return rendered.manifests


def kubectl(kubeconfig: Path, cache: Path, *args: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, proc.returncode, proc.stderr[-2000:]


def ensure_namespace(cluster: Cluster, name: str) -> None:
    res = cluster.resource("v1", "Namespace")
    cluster.apply(
        res,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        field_manager="bench",
    )


def ours_apply(cluster: Cluster, namespace: str, directory: Path) -> tuple[float, int]:
    start = time.perf_counter()
    manifests = read_dir(directory, namespace)
    result = apply_app(cluster, app_spec(namespace), manifests, commit=None, wait=False)
    elapsed = time.perf_counter() - start
    if result.errors:
        raise SystemExit(f"bot apply failed: {result.errors[:3]}")
    return elapsed, len(result.changes)


def ours_preview(cluster: Cluster, namespace: str, directory: Path) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    manifests = read_dir(directory, namespace)
    result = preview_app(cluster, app_spec(namespace), manifests)
    elapsed = time.perf_counter() - start
    if result.errors:
        raise SystemExit(f"bot preview failed: {result.errors[:3]}")
    counts = {
        "created": len(result.created),
        "updated": len(result.updated),
        "deleted": len(result.deleted),
        "unchanged": len(result.unchanged),
    }
    return elapsed, counts


def child_preview(kubeconfig: str, namespace: str, directory: str, concurrency: int) -> None:
    """Run in a fresh process: one preview, then print time and peak RSS as JSON."""
    target = Target(name="bench", kubeconfig=Path(kubeconfig))
    with Cluster(target, concurrency=concurrency) as cluster:
        elapsed, counts = ours_preview(cluster, namespace, Path(directory))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "peak_rss_mib": peak_kib / 1024, "counts": counts}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000, help="0 to skip")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per comparison")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="also run the comparison on a second emulator that answers each request after "
        "this many milliseconds, as a real API server does after its etcd round trip",
    )
    parser.add_argument(
        "--whole", type=int, default=300, help="objects of the whole-process preview (0 to skip)"
    )
    parser.add_argument(
        "--only-whole", action="store_true", help="run only the whole-process comparison"
    )
    parser.add_argument(
        "--also",
        metavar="COMMAND",
        help="another gitops-bot command (e.g. a wrapper running an older checkout) timed in "
        "the same rounds of the whole-process comparison, for before/after figures",
    )
    parser.add_argument("--child-preview", nargs=3, metavar=("KUBECONFIG", "NS", "DIR"))
    args = parser.parse_args()
    if args.child_preview:
        kubeconfig, namespace, directory = args.child_preview
        child_preview(kubeconfig, namespace, directory, args.concurrency)
        return

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        kubeconfig = tmp / "kubeconfig"
        cache = tmp / "kubectl-cache"
        emulator, url = start_emulator(kubeconfig)
        try:
            args.server_pid = emulator.pid
            print(f"emulator: {url}")
            run(args, kubeconfig, cache, tmp)
        finally:
            assert emulator.stdin is not None
            emulator.stdin.close()
            try:
                emulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                emulator.kill()


def compare(
    args: argparse.Namespace, kubeconfig: Path, cache: Path, tmp: Path, *, label: str, suffix: str
) -> None:
    """The 1,000-object comparison with kubectl, ``--repeat`` rounds alternating the two tools
    (so load from other processes hits both alike); medians and their ratio are printed."""
    n, rounds = args.objects, args.repeat
    target = Target(name="bench", kubeconfig=kubeconfig)
    src, changed = tmp / "v0", tmp / "v1"
    diff_ns = f"diff{suffix}"
    with Cluster(target, concurrency=args.concurrency) as cluster:
        ensure_namespace(cluster, diff_ns)
        for r in range(rounds):
            ensure_namespace(cluster, f"ours{suffix}-{r}")
            ensure_namespace(cluster, f"kubectl{suffix}-{r}")
        # warm kubectl's discovery cache so only the diff itself is timed
        kubectl(kubeconfig, cache, "get", "namespaces")
        seconds, _ = ours_apply(cluster, diff_ns, src)
        print(f"[{label}] setup: applied {n} objects with the bot in {seconds:.2f}s")

    # -- preview vs kubectl diff ------------------------------------------------------------
    ours_times, kube_times = [], []
    for _ in range(rounds):
        with Cluster(target, concurrency=args.concurrency) as cluster:
            ours_s, counts = ours_preview(cluster, diff_ns, changed)
        ours_times.append(ours_s)
        kube_s, code, err = kubectl(
            kubeconfig, cache, "diff", "--server-side", "--field-manager", "gitops-bot",
            "-n", diff_ns, "-f", str(changed),
        )  # fmt: skip
        if code not in (0, 1):
            print(f"kubectl diff failed ({code}): {err}")
        kube_times.append(kube_s)
    ours_m, kube_m = statistics.median(ours_times), statistics.median(kube_times)
    print(f"[{label}] bot preview   {n} objects (10% changed): {_times(ours_times)}  {counts}")
    print(f"[{label}] kubectl diff  {n} objects (10% changed): {_times(kube_times)}")
    print(f"[{label}] preview speed-up (medians): {kube_m / ours_m:.1f}x (target >= 3x)")

    # -- apply vs kubectl apply, fresh namespaces ---------------------------------------------
    ours_times, kube_times = [], []
    ours_cpu = kube_cpu = 0.0
    for r in range(rounds):
        before = server_cpu(args.server_pid)
        with Cluster(target, concurrency=args.concurrency) as cluster:
            ours_s, _count = ours_apply(cluster, f"ours{suffix}-{r}", src)
        ours_times.append(ours_s)
        middle = server_cpu(args.server_pid)
        ours_cpu += middle - before
        kube_s, code, err = kubectl(
            kubeconfig, cache, "apply", "--server-side", "-n", f"kubectl{suffix}-{r}", "-f",
            str(src),
        )  # fmt: skip
        if code != 0:
            print(f"kubectl apply failed ({code}): {err}")
        kube_times.append(kube_s)
        kube_cpu += server_cpu(args.server_pid) - middle
    ours_m, kube_m = statistics.median(ours_times), statistics.median(kube_times)
    print(f"[{label}] bot apply     {n} objects: {_times(ours_times)}")
    print(f"[{label}] kubectl apply {n} objects: {_times(kube_times)}")
    print(f"[{label}] apply speed-up (medians): {kube_m / ours_m:.1f}x (target >= 3x)")
    if args.server_pid:
        # every object is one server-side apply for both tools: the server's own CPU per
        # round bounds how fast any client can be
        print(
            f"[{label}] API server CPU per apply round: bot {ours_cpu / rounds:.2f}s, "
            f"kubectl {kube_cpu / rounds:.2f}s"
        )


def server_cpu(pid: int | None) -> float:
    """CPU seconds the emulator process has used so far (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _times(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):5.2f}s (runs: {', '.join(f'{v:.2f}' for v in values)})"
    )


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def whole_repo(tmp: Path, count: int) -> tuple[Path, str, str]:
    """A git repository with one app of ``count`` objects at its first commit (base) and 10%
    of them changed at its second (head); returns (repo, base, head)."""
    repo = tmp / "whole-repo"
    if (repo / ".git").exists():
        return repo, _git(repo, "rev-parse", "HEAD~1"), _git(repo, "rev-parse", "HEAD")
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "bench@example.com")
    _git(repo, "config", "user.name", "bench")
    (repo / ".gitops.yaml").write_text(
        "version: 1\napps:\n  - name: whole\n    path: app\n    namespace: whole\n"
    )
    write_dir(repo / "app", make_objects(count))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    write_dir(repo / "app", make_objects(count, variant=1))
    _git(repo, "commit", "-q", "-am", "head")
    return repo, base, _git(repo, "rev-parse", "HEAD")


def compare_whole(
    args: argparse.Namespace, kubeconfig: Path, cache: Path, tmp: Path, *, label: str
) -> None:
    """``gitops-bot preview --kubeconfig`` against ``kubectl diff --server-side``, each a whole
    process (start-up, discovery, reading the files, the dry-runs), ``--repeat`` rounds
    alternating the two."""
    n, rounds = args.whole, args.repeat
    repo, base, head = whole_repo(tmp, n)
    kubectl(kubeconfig, cache, "create", "namespace", "whole")
    setup = subprocess.run(
        [GITOPS_BOT, "apply", "--repo", str(repo), "--ref", base, "--kubeconfig",
         str(kubeconfig), "--no-wait"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if setup.returncode != 0:
        raise SystemExit(f"gitops-bot apply failed ({setup.returncode}): {setup.stderr[-2000:]}")
    kubectl(kubeconfig, cache, "get", "namespaces")  # kubectl's discovery cache warm
    ours_times, kube_times, also_times = [], [], []
    preview = ["preview", "--repo", str(repo), "--base", base, "--head", head,
               "--kubeconfig", str(kubeconfig), "--format", "json"]  # fmt: skip
    for _ in range(rounds):
        if args.also:
            start = time.perf_counter()
            subprocess.run([args.also, *preview], capture_output=True, check=True)
            also_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        proc = subprocess.run([GITOPS_BOT, *preview], capture_output=True, text=True, check=False)
        ours_times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(
                f"gitops-bot preview failed ({proc.returncode}): {proc.stderr[-2000:]}"
            )
        kube_s, code, err = kubectl(
            kubeconfig, cache, "diff", "--server-side", "--field-manager", "gitops-bot",
            "-n", "whole", "-f", str(repo / "app"),
        )  # fmt: skip
        if code not in (0, 1):
            print(f"kubectl diff failed ({code}): {err}")
        kube_times.append(kube_s)
    counts = _counts(json.loads(proc.stdout))
    ours_m, kube_m = statistics.median(ours_times), statistics.median(kube_times)
    print(f"[{label}] gitops-bot preview process {n} objects: {_times(ours_times)}  {counts}")
    print(f"[{label}] kubectl diff process       {n} objects: {_times(kube_times)}")
    print(f"[{label}] whole-process preview speed-up (medians): {kube_m / ours_m:.2f}x")
    if also_times:
        also_m = statistics.median(also_times)
        print(f"[{label}] {args.also} process {n} objects: {_times(also_times)}")
        print(f"[{label}] ... against kubectl: {kube_m / also_m:.2f}x")


def _counts(report: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for app in report.get("apps", []):
        for key in ("created", "updated", "deleted", "unchanged", "errors"):
            counts[key] = counts.get(key, 0) + len(app.get(key, []))
    return counts


def run(args: argparse.Namespace, kubeconfig: Path, cache: Path, tmp: Path) -> None:
    write_dir(tmp / "v0", make_objects(args.objects))
    write_dir(tmp / "v1", make_objects(args.objects, variant=1))
    if not args.only_whole:
        compare(args, kubeconfig, cache, tmp, label="direct", suffix="")
    if args.whole:
        compare_whole(args, kubeconfig, cache, tmp, label="direct")
    if args.latency_ms:
        slow_config = tmp / "kubeconfig-latency"
        slow, _ = start_emulator(slow_config, latency_ms=args.latency_ms)
        direct_pid, args.server_pid = args.server_pid, slow.pid
        label = f"{args.latency_ms:g} ms API latency"
        try:
            if not args.only_whole:
                compare(
                    args,
                    slow_config,
                    tmp / "kubectl-cache-latency",
                    tmp,
                    label=label,
                    suffix="-latency",
                )
            if args.whole:
                compare_whole(args, slow_config, tmp / "kubectl-cache-latency", tmp, label=label)
        finally:
            args.server_pid = direct_pid
            assert slow.stdin is not None
            slow.stdin.close()
            slow.wait(timeout=30)
    if args.only_whole:
        return

    # -- large preview ------------------------------------------------------------------------
    large = args.large
    if not large:
        return
    target = Target(name="bench", kubeconfig=kubeconfig)
    big, big_changed = tmp / "large-v0", tmp / "large-v1"
    write_dir(big, make_objects(large))
    write_dir(big_changed, make_objects(large, variant=1))
    with Cluster(target, concurrency=args.concurrency) as cluster:
        ensure_namespace(cluster, "large")
        seconds, _ = ours_apply(cluster, "large", big)
    print(f"setup: applied {large} objects with the bot in {seconds:.2f}s")
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--concurrency",
            str(args.concurrency),
            "--child-preview",
            str(kubeconfig),
            "large",
            str(big_changed),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"bot preview {large} objects (10% changed): {figures['seconds']:.2f}s (target < 60s), "
        f"peak RSS {figures['peak_rss_mib']:.0f} MiB (target < 1024 MiB)  {figures['counts']}"
    )


if __name__ == "__main__":
    main()
