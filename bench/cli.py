"""How fast ``gitops-bot --help`` starts, next to ``python -c "import click"`` (issue 12, point 7).

Target: the whole ``gitops-bot --help`` process within 2x of ``python -c "import click"``,
both measured in the same run (interleaved, so both see the same machine load). Prints the
median and the minimum of each, their ratio, and which heavy modules ``--help`` imported.

``--before DIR`` measures the CLI of another checkout too (e.g. ``/work/main``, put first on
``PYTHONPATH``), so "before" and "after" come from one run as well.

Run: ``.venv/bin/python bench/cli.py [--runs N] [--before DIR]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("kubernetes", "celery", "redis", "jsonschema", "yaml", "flask", "github", "gitlab")
# What the console script does (pip's generated wrapper imports bot.cli and calls main).
HELP = "import sys; sys.argv = ['gitops-bot', '--help']; from bot.cli import main; main()"
PROBE = (
    "import sys, io, contextlib\n"
    "sys.argv = ['gitops-bot', '--help']\n"
    "from bot.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try:\n"
    "        main()\n"
    "    except SystemExit:\n"
    "        pass\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def _time(argv: list[str], tree: Path) -> float:
    # cwd too: `python -c` puts the working directory first on sys.path
    started = time.perf_counter()
    subprocess.run(argv, env=_env(tree), cwd=tree, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--before", type=Path, help="another checkout to measure as 'before'")
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), "after": ROOT}
    python = sys.executable
    timings: dict[str, list[float]] = {"import click": [], **{name: [] for name in trees}}
    for tree in trees.values():  # warm the page cache and .pyc files before timing
        _time([python, "-c", HELP], tree)
    for _ in range(args.runs):
        timings["import click"].append(_time([python, "-c", "import click"], ROOT))
        for name, tree in trees.items():
            timings[name].append(_time([python, "-c", HELP], tree))
    floor = statistics.median(timings["import click"])
    print(f"{args.runs} runs each, interleaved; whole processes (median / min)")
    print(
        f"  python -c 'import click':  {floor * 1000:6.0f} ms / {min(timings['import click']) * 1000:4.0f} ms"
    )
    for name, tree in trees.items():
        median = statistics.median(timings[name])
        heavy = subprocess.run(
            [python, "-c", PROBE],
            env=_env(tree),
            cwd=tree,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(
            f"  gitops-bot --help ({name}): {median * 1000:6.0f} ms / "
            f"{min(timings[name]) * 1000:4.0f} ms = {median / floor:.1f}x import click "
            f"[target <= 2.0x]; heavy modules imported: {heavy or 'none'}"
        )


if __name__ == "__main__":
    main()
