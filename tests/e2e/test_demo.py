"""``./dev demo --once``, run as a newcomer runs it: the preview of the sample repository's pull
request printed, then the deploy of its merge (status and report, as previewed), its Secret
values nowhere, the URLs to poke at, and nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import ROOT

pytestmark = pytest.mark.slow

SECRET_VALUES = ("demo-key-7c1d9e", "demo-key-rotated-e04b88", "demo-session-52a0f3")


def test_the_demo_prints_the_preview_and_the_deploy_and_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_"))}
    env.pop("REDIS_URL", None)
    env.pop("KUBECONFIG", None)
    env["GITOPS_VENV"] = sys.prefix  # the virtualenv running these tests
    result = subprocess.run(
        [str(ROOT / "dev"), "demo", "--once", "--workdir", str(tmp_path / "demo")],
        cwd=tmp_path,  # ./dev finds its own directory
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(r"pending +Previewing the merge of \w{7} into main…", out), out
    assert "success  2 apps: +1 ~3 -1" in out, out
    assert "### GitOps preview of" in out and "Live diff" in out
    assert "Deployment shop/storefront" in out and "+  replicas: 3" in out
    assert "Deployment payments/payments</code> (config map payments-config changed)" in out
    assert "PAYMENT_API_KEY: '<redacted: before>'" in out
    assert re.search(r"pending +Deploying \w{7}…", out), out
    assert "success  2 apps deployed and healthy: +1 ~3 -1 · as previewed" in out, out
    assert "### GitOps deploy" in out and "**As previewed.**" in out
    for value in SECRET_VALUES:
        assert value not in out and value not in result.stderr
    bot = re.search(r"the bot: (http://\S+)/metrics", out)
    assert bot, out
    assert "--kubeconfig" in out and "/repos/acme/demo/issues/1/comments" in out
    assert 'pause --repo acme/demo --reason "incident 42"' in out
    with pytest.raises(requests.ConnectionError):  # stopped with the demo
        requests.get(bot.group(1) + "/healthz", timeout=5)
    assert not (tmp_path / "demo" / "bot-data" / "redis.sock").exists()
