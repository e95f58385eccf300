"""``python -m tests.fake_forge --port PORT [--gitlab]``: run the fake GitHub (or, with
``--gitlab``, the fake GitLab) by hand.

Creates a bot user with a token and, with ``--repo``, repositories (GitLab: projects, the bot a
Developer of their group); prints the settings to give the bot. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.gitlab import DEVELOPER, FakeGitLab


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake GitHub or GitLab.")
    parser.add_argument("--gitlab", action="store_true", help="serve the fake GitLab")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", type=Path, help="directory for git repositories (default: temp)")
    parser.add_argument("--bot", default="gitops-bot", help="login of the bot's user")
    parser.add_argument(
        "--repo", action="append", default=[], help="owner/name (GitLab: group/…/project)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="fake-forge-"))
    fake: FakeGitHub | FakeGitLab
    if args.gitlab:
        fake = gitlab = FakeGitLab(data, host=args.host, port=args.port)
        token = gitlab.token_for(args.bot)
        for path in args.repo:
            gitlab.create_project(path)
            gitlab.add_member(path.rsplit("/", 1)[0], args.bot, DEVELOPER)
        settings = {"GITLAB_URL": gitlab.url, "GITLAB_TOKEN": token}
    else:
        fake = github = FakeGitHub(data, host=args.host, port=args.port)
        token = github.token_for(args.bot)
        for full_name in args.repo:
            github.create_repo(full_name)
            github.set_permission(full_name, args.bot, "write")
        settings = {"GITHUB_API_URL": github.url, "GITHUB_TOKEN": token}
    fake.latency = args.latency_ms / 1000
    fake.start()
    for name, value in settings.items():
        print(f"{name}={value}")
    print(f"git data in {data}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
