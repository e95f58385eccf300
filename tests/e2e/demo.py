"""``./dev demo``: the bot's main job in one command, with no accounts.

Starts the fake GitHub, a local Kubernetes API server and ``gitops-bot serve`` (each its own
process, wired by URLs and settings only: the harness of the end-to-end tests), pushes the
sample GitOps repository ``examples/demo-repo`` as ``acme/demo``, deploys its main branch to the
cluster, opens a pull request with the changes in ``examples/demo-pull-request``, waits for the
bot and prints the comment and the commit statuses it posted; then merges the pull request and
prints the deploy's status and report, then the URLs and commands to poke at everything. Runs
until Ctrl-C; ``--once`` exits after printing (code 0 when the preview was posted with a
success status and the merge deployed with one).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.harness import GITOPS_BOT, KUBECTL, ROOT, E2EFailure, Stack

REPO = "acme/demo"
AUTHOR = "alice"
EXAMPLES = ROOT / "examples"


def files_of(directory: Path) -> dict[str, str | bytes | None]:
    return {
        str(path.relative_to(directory)): path.read_text()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def say(message: str) -> None:
    print(f"\033[1m==>\033[0m {message}" if sys.stderr.isatty() else f"==> {message}",
          file=sys.stderr, flush=True)  # fmt: skip


def visible(body: str) -> str:
    """The comment as GitHub renders its text: without the hidden marker."""
    return "\n".join(line for line in body.splitlines() if not line.startswith("<!--")).strip()


def print_statuses(sha: str, context: str, statuses: list[tuple[str, str]]) -> None:
    print(f"\nCommit statuses on {sha[:7]} ({context}), oldest first:")
    for state, description in statuses:
        print(f"  {state:8} {description}")


def run(workdir: Path, *, once: bool) -> int:
    say("starting the fake GitHub, a local Kubernetes API server and gitops-bot serve …")
    started = time.monotonic()
    with Stack.github(workdir, bot_env={"GITOPS_LOG_LEVEL": "INFO"}) as stack:
        say(f"  ready in {time.monotonic() - started:.1f} s")
        stack.create_repo(REPO, files_of(EXAMPLES / "demo-repo"))
        stack.grant(REPO, AUTHOR, "write")
        alice = stack.forge.token_for(AUTHOR)
        say(f"deploying main of {REPO} to the cluster (gitops-bot apply), as the bot would have")
        stack.deploy(REPO)
        say("pushing branch 'rollout' with examples/demo-pull-request and opening a pull request")
        stack.forge.commit(
            REPO, "rollout", files_of(EXAMPLES / "demo-pull-request"), message="Roll out 1.27"
        )
        opened = time.monotonic()
        stack.forge.open_pull_request(
            REPO, head="rollout", author=AUTHOR, title="Roll out nginx 1.27, debug payments"
        )
        head = stack.head(REPO, 1)
        say("waiting for the bot's preview …")
        try:
            statuses = stack.wait_until(
                lambda: stack.settled_statuses(REPO, head), "the bot's preview", timeout=120
            )
        except E2EFailure as exc:
            print(exc, file=sys.stderr)
            return 1
        say(f"  the preview was posted {time.monotonic() - opened:.1f} s after the webhook")
        comments = stack.bot_comments(REPO, 1)
        print_statuses(head, "gitops/preview", statuses)
        for comment in comments:
            print(f"\nThe bot's comment on {REPO}#1 (Markdown):\n")
            print(visible(comment.body))
        say(f"merging {REPO}#1: the bot deploys the merge commit")
        merged_at = time.monotonic()
        merged = stack.forge.merge_pull_request(REPO, 1)
        try:
            deploy_statuses = stack.wait_until(
                lambda: stack.settled_statuses(REPO, merged), "the bot's deploy", timeout=120
            )
        except E2EFailure as exc:
            print(exc, file=sys.stderr)
            return 1
        say(f"  deployed and reported {time.monotonic() - merged_at:.1f} s after the merge")
        print_statuses(merged, "gitops/deploy", deploy_statuses)
        reports = [c for c in stack.bot_comments(REPO, 1) if c not in comments]
        for report in reports:
            print(f"\nThe bot's deploy report on {REPO}#1 (Markdown):\n")
            print(visible(report.body))
        api = stack.forge.url
        print(
            f"""
Poke at it:
  the pull request's comments (the fake GitHub's REST API, as {AUTHOR}):
    curl -s -H 'Authorization: token {alice}' {api}/repos/{REPO}/issues/1/comments
  the statuses of its head (the preview) and of the merge commit (the deploy):
    curl -s -H 'Authorization: token {alice}' {api}/repos/{REPO}/commits/{head}/statuses
    curl -s -H 'Authorization: token {alice}' {api}/repos/{REPO}/commits/{merged}/statuses
  pause deploys (what an operator does at 3 a.m.), then resume them:
    GITOPS_DATA_DIR={stack.bot.data_dir} {GITOPS_BOT} pause --repo {REPO} --reason "incident 42"
    GITOPS_DATA_DIR={stack.bot.data_dir} {GITOPS_BOT} resume --repo {REPO}
  the cluster (a local Kubernetes API server):
    {KUBECTL} --kubeconfig {stack.cluster.kubeconfig} get deployments,configmaps,secrets -A
  the bot: {stack.bot.url}/metrics   {stack.bot.url}/readyz
  the bot's log: {stack.bot.process.log}"""
        )
        ok = (
            bool(comments)
            and statuses[-1][0] == "success"
            and bool(reports)
            and deploy_statuses[-1][0] == "success"
        )
        if once:
            return 0 if ok else 1
        print("\nRunning until Ctrl-C.", flush=True)
        try:
            while True:
                time.sleep(1)
                stack.bot.process.check_alive()
        except KeyboardInterrupt:
            say("stopping …")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="exit after printing the preview")
    parser.add_argument(
        "--workdir", type=Path, help="keep the demo's data and logs here (default: a temporary "
        "directory, removed at exit)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # in order with stderr

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stopped like Ctrl-C: everything started goes
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gitops-bot-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return run(workdir.resolve(), once=args.once)
    except KeyboardInterrupt:
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
