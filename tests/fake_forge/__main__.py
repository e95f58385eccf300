"""``python -m tests.fake_forge --port PORT``: run the fake GitHub by hand.

Creates a bot user with a token and, with ``--repo``, a repository; prints the settings to give
the bot. Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.fake_forge.github import FakeGitHub


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake GitHub.")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", type=Path, help="directory for git repositories (default: temp)")
    parser.add_argument("--bot", default="gitops-bot", help="login of the bot's user")
    parser.add_argument("--repo", action="append", default=[], help="owner/name to create")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="fake-github-"))
    fake = FakeGitHub(data, host=args.host, port=args.port)
    fake.latency = args.latency_ms / 1000
    token = fake.token_for(args.bot)
    for full_name in args.repo:
        fake.create_repo(full_name)
        fake.set_permission(full_name, args.bot, "write")
    fake.start()
    print(f"GITHUB_API_URL={fake.url}")
    print(f"GITHUB_TOKEN={token}")
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
