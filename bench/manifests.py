"""Benchmark of the manifest engine (issue 4, point 9). Prints figures; asserts nothing.

1. render + validate 10,000 plain-YAML objects across 100 apps (one commit, from a checkout),
   then once more in the same process (warm imports and validators; every file parsed again:
   nothing read from a repository is kept between jobs);
2. the offline diff of two commits of that repository with 10% of the objects changed
   (resolve, changed files, two checkouts, affected apps, render both sides, diff);
3. one Kustomize app: our render_app next to ``kubectl kustomize`` alone on the same directory;
4. a change to one app of the 100 (one object): the offline preview, and what the shared-object
   check costs in it (the affected app rendered alone, then with the other apps of its target,
   which the check renders to catch an object two apps declare).

Phases 1 and 2 each run in a fresh subprocess so the peak RSS printed is that phase's own.
Targets: under 3 s and 500 MB for 1 and 2; Kustomize overhead under 10%.

Run: ``.venv/bin/python bench/manifests.py`` (``--objects``/``--apps`` to scale).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APPS = 100
OBJECTS = 10_000
DOCS_PER_FILE = 5


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _object(app: int, i: int, version: int) -> str:
    """A realistic mix: ConfigMaps, Services and Deployments of a few dozen fields each."""
    name = f"obj-{i:04d}"
    kind = i % 3
    if kind == 0:
        return (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n"
            f"    app: app-{app:03d}\n    tier: config\ndata:\n  LOG_LEVEL: info\n"
            f'  VERSION: "{version}"\n  FEATURE_FLAGS: "a,b,c"\n'
        )
    if kind == 1:
        return (
            f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n"
            f"    app: app-{app:03d}\nspec:\n  selector:\n    app: {name}\n  ports:\n"
            f"    - name: http\n      port: 80\n      targetPort: {8000 + version}\n"
        )
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n"
        f"    app: app-{app:03d}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n"
        f"      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n"
        f"    spec:\n      containers:\n        - name: main\n"
        f"          image: registry.example.com/{name}:1.{version}\n"
        f"          ports:\n            - containerPort: 8080\n          resources:\n"
        f"            requests: {{cpu: 100m, memory: 128Mi}}\n"
        f"            limits: {{memory: 256Mi}}\n"
    )


def build_repo(root: Path, *, apps: int, objects: int) -> tuple[str, str]:
    """A repository with ``objects`` objects over ``apps`` apps; the second commit changes 10%."""
    per_app = objects // apps
    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "bench@example.com")
    _git(root, "config", "user.name", "bench")
    lines = ["version: 1", "apps:"]
    for app in range(apps):
        lines += [
            f"  - name: app-{app:03d}",
            f"    path: apps/app-{app:03d}",
            f"    namespace: ns-{app:03d}",
        ]
    (root / ".gitops.yaml").write_text("\n".join(lines) + "\n")

    def write(changed: set[tuple[int, int]]) -> None:
        for app in range(apps):
            folder = root / "apps" / f"app-{app:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for start in range(0, per_app, DOCS_PER_FILE):
                docs = [
                    _object(app, i, 2 if (app, i) in changed else 1)
                    for i in range(start, min(start + DOCS_PER_FILE, per_app))
                ]
                (folder / f"part-{start // DOCS_PER_FILE:03d}.yaml").write_text("---\n".join(docs))

    write(set())
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    base = subprocess.check_output(["git", "-C", str(root), "rev-parse", "HEAD"], text=True).strip()
    # every 10th object of every app changes: 10% of objects, all apps affected
    write({(app, i) for app in range(apps) for i in range(0, per_app, 10)})
    _git(root, "commit", "-q", "-am", "head")
    head = subprocess.check_output(["git", "-C", str(root), "rev-parse", "HEAD"], text=True).strip()
    return base, head


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def phase_render(repo: Path, head: str) -> dict[str, float]:
    from bot.manifests import checkout, load_config, render_apps

    started = time.perf_counter()
    with checkout(repo, head) as root:
        checked_out = time.perf_counter()
        config = load_config(root)
        rendered = render_apps(root, config)
        done = time.perf_counter()
        peak = _peak_mb()  # of this render alone
        # what a long-running worker pays for the same commit again (a deploy after its
        # preview, a drift check): imports and schema validators are warm, every file is
        # parsed again (nothing read from a repository is kept between jobs)
        render_apps(root, config)
        again = time.perf_counter() - done
    objects = sum(len(r.manifests) for r in rendered)
    errors = sum(len(r.errors) for r in rendered)
    return {
        "objects": objects,
        "errors": errors,
        "checkout_s": checked_out - started,
        "render_validate_s": done - checked_out,
        "render_again_s": again,
        "total_s": done - started,
        "peak_rss_mb": peak,
    }


def phase_diff(repo: Path, base: str, head: str) -> dict[str, float]:
    from bot.jobs.compare import preview_commits

    started = time.perf_counter()
    result = preview_commits(repo, base, head)
    done = time.perf_counter()
    return {
        "apps": len(result.apps),
        "updated": sum(len(a.updated) for a in result.apps),
        "unchanged": sum(len(a.unchanged) for a in result.apps),
        "errors": sum(len(a.errors) for a in result.apps) + len(result.errors),
        "total_s": done - started,
        "peak_rss_mb": _peak_mb(),
    }


def phase_one_app(repo: Path, base: str, head: str, variant: str) -> dict[str, float]:
    """A change to one app (each variant in a fresh process: no parsed file is cached yet):
    ``preview`` the whole offline preview; ``alone``/``checked`` the affected app's head render
    without and with the shared-object check (which renders every other app of its target)."""
    from bot.jobs.compare import preview_commits
    from bot.manifests import checkout, load_config, render_apps

    if variant == "preview":
        started = time.perf_counter()
        result = preview_commits(repo, base, head)
        return {
            "apps": len(result.apps),
            "errors": sum(len(a.errors) for a in result.apps) + len(result.errors),
            "seconds": time.perf_counter() - started,
        }
    with checkout(repo, head) as root:
        config = load_config(root)
        started = time.perf_counter()
        rendered = render_apps(root, config, apps=["app-000"], check_shared=variant == "checked")
        seconds = time.perf_counter() - started
    return {"apps": len(rendered), "others": len(config.apps) - 1, "seconds": seconds}


def _child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def kustomize_compare(workdir: Path, *, runs: int = 15) -> dict[str, float]:
    """Wall time of ``kubectl kustomize DIR`` vs our render_app of the same app, interleaved
    run by run so both see the same machine load; median and minimum of each."""
    from bot.manifests import AppSpec, render_app
    from bot.manifests.render import kubectl_path

    base = workdir / "kz" / "base"
    overlay = workdir / "kz" / "overlay"
    base.mkdir(parents=True)
    overlay.mkdir(parents=True)
    names = []
    for i in range(200):
        (base / f"obj-{i:03d}.yaml").write_text(_object(0, i, 1))
        names.append(f"obj-{i:03d}.yaml")
    (base / "kustomization.yaml").write_text("resources:\n" + "".join(f"  - {n}\n" for n in names))
    (overlay / "kustomization.yaml").write_text(
        "resources: [../base]\nnamePrefix: prod-\nlabels:\n  - pairs: {env: prod}\n"
    )
    kubectl = kubectl_path()
    assert kubectl is not None
    spec = AppSpec(name="kz", path="kz/overlay", namespace="prod")
    root = workdir
    ours, theirs = [], []
    render_app(root, spec)  # warm caches (schema, imports) before timing
    ours_cpu, theirs_cpu = [], []
    for _ in range(runs):
        cpu = _cpu()
        started = time.perf_counter()
        subprocess.run([kubectl, "kustomize", str(overlay)], check=True, capture_output=True)
        theirs.append(time.perf_counter() - started)
        theirs_cpu.append(_cpu() - cpu)
        cpu = _cpu()
        started = time.perf_counter()
        app = render_app(root, spec)
        ours.append(time.perf_counter() - started)
        ours_cpu.append(_cpu() - cpu)
        assert not app.errors and len(app.manifests) == 200, app.errors
    mine, kube = statistics.median(ours), statistics.median(theirs)
    mine_cpu, kube_cpu = statistics.median(ours_cpu), statistics.median(theirs_cpu)
    return {
        "kubectl_cpu_s": kube_cpu,
        "ours_cpu_s": mine_cpu,
        "overhead_cpu_pct": (mine_cpu / kube_cpu - 1) * 100,
        "objects": 200,
        "kubectl_s": kube,
        "ours_s": mine,
        "overhead_pct": (mine / kube - 1) * 100,
        "runs": runs,
        "kubectl_min_s": min(theirs),
        "ours_min_s": min(ours),
        "overhead_min_pct": (min(ours) / min(theirs) - 1) * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=APPS)
    parser.add_argument("--objects", type=int, default=OBJECTS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        phase, repo, *refs = args.child
        if phase == "render":
            print(json.dumps(phase_render(Path(repo), refs[0])))
        elif phase in ("preview", "alone", "checked"):
            print(json.dumps(phase_one_app(Path(repo), refs[0], refs[1], phase)))
        else:
            print(json.dumps(phase_diff(Path(repo), refs[0], refs[1])))
        return

    with tempfile.TemporaryDirectory(prefix="bench-manifests-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        started = time.perf_counter()
        base, head = build_repo(repo, apps=args.apps, objects=args.objects)
        print(
            f"generated {args.objects} objects in {args.apps} apps in {time.perf_counter() - started:.1f} s"
        )

        render = _child("render", str(repo), head)
        print(
            f"render+validate: {render['objects']:.0f} objects, {render['errors']:.0f} errors: "
            f"{render['render_validate_s']:.2f} s (+ checkout {render['checkout_s']:.2f} s = "
            f"{render['total_s']:.2f} s), peak RSS {render['peak_rss_mb']:.0f} MB "
            f"[target < 3 s, < 500 MB]"
        )
        print(
            f"render+validate again in the same process (warm imports and validators): "
            f"{render['render_again_s']:.2f} s"
        )
        diff = _child("diff", str(repo), base, head)
        print(
            f"offline diff (10% changed): {diff['apps']:.0f} apps, {diff['updated']:.0f} updated, "
            f"{diff['unchanged']:.0f} unchanged, {diff['errors']:.0f} errors: {diff['total_s']:.2f} s, "
            f"peak RSS {diff['peak_rss_mb']:.0f} MB [target < 3 s, < 500 MB]"
        )
        first = repo / "apps" / "app-000" / "part-000.yaml"
        first.write_text(first.read_text().replace("LOG_LEVEL: info", "LOG_LEVEL: debug", 1))
        _git(repo, "commit", "-q", "-am", "one app")
        one_head = subprocess.check_output(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], text=True
        ).strip()
        one = _child("preview", str(repo), head, one_head)
        alone = _child("alone", str(repo), head, one_head)
        checked = _child("checked", str(repo), head, one_head)
        print(
            f"offline diff (1 app of {args.apps} changed): {one['apps']:.0f} app(s), "
            f"{one['errors']:.0f} errors: {one['seconds']:.2f} s, of which the shared-object "
            f"check: the app's head render alone {alone['seconds']:.3f} s, with the "
            f"{checked['others']:.0f} other apps of its target {checked['seconds']:.3f} s"
        )
        kz = kustomize_compare(Path(tmp) / "kustomize")
        print(
            f"kustomize app ({kz['objects']:.0f} objects, {kz['runs']:.0f} runs): median "
            f"kubectl kustomize {kz['kubectl_s']:.3f} s, ours {kz['ours_s']:.3f} s, overhead "
            f"{kz['overhead_pct']:+.1f}%; best {kz['kubectl_min_s']:.3f} s vs "
            f"{kz['ours_min_s']:.3f} s, overhead {kz['overhead_min_pct']:+.1f}% [target < 10%]"
        )
        print(
            f"  same runs in CPU time (less sensitive to other load): kubectl "
            f"{kz['kubectl_cpu_s']:.3f} s, ours (kubectl included) {kz['ours_cpu_s']:.3f} s, "
            f"overhead {kz['overhead_cpu_pct']:+.1f}%"
        )


if __name__ == "__main__":
    main()
