"""pytest fixtures for the fake forges.

``fake_github``: a running :class:`FakeGitHub` with a bot user (``gitops-bot``) and its token
(``fake_github.bot_token``); the test fails at teardown if the bot sent a request GitHub's
contract refuses that the test did not expect (``fake_github.contract.violations``, cleared by
the test when it provoked them on purpose).

``github_settings``: :class:`~bot.settings.Settings` pointing at it with that token.

``fake_gitlab`` and ``gitlab_settings``: the same for the fake GitLab: a bot user
``gitops-bot`` with a personal access token of scope ``api`` (``fake_gitlab.bot_token``), no
project yet; ``GITLAB_URL`` is the fake's root.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.forges import github as github_forge
from bot.settings import Settings
from tests.fake_forge.github import FakeGitHub
from tests.fake_forge.gitlab import FakeGitLab

BOT = "gitops-bot"


@pytest.fixture
def fake_github(tmp_path: Path) -> Iterator[FakeGitHub]:
    github_forge.clear_caches()
    fake = FakeGitHub(tmp_path / "fake-github")
    fake.bot_token = fake.token_for(BOT)
    with fake:
        yield fake
    github_forge.clear_caches()
    assert fake.contract.violations == [], "requests GitHub would refuse"


@pytest.fixture
def github_settings(fake_github: FakeGitHub, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "GITHUB_API_URL": fake_github.url,
            "GITHUB_TOKEN": fake_github.bot_token or "",
            "GITHUB_WEBHOOK_SECRET": "s3cret",
            "GITOPS_DATA_DIR": str(tmp_path / "data"),
            "GITOPS_FORGE_WRITE_INTERVAL": "0",
        }
    )


@pytest.fixture
def fake_gitlab(tmp_path: Path) -> Iterator[FakeGitLab]:
    from bot.forges import gitlab as gitlab_forge

    gitlab_forge.clear_caches()
    fake = FakeGitLab(tmp_path / "fake-gitlab")
    fake.bot_token = fake.token_for(BOT)
    with fake:
        yield fake
    gitlab_forge.clear_caches()
    assert fake.contract.violations == [], "requests GitLab would refuse"


@pytest.fixture
def gitlab_settings(fake_gitlab: FakeGitLab, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "GITLAB_URL": fake_gitlab.url,
            "GITLAB_TOKEN": fake_gitlab.bot_token or "",
            "GITLAB_WEBHOOK_SECRET": "s3cret",
            "GITOPS_DATA_DIR": str(tmp_path / "data"),
        }
    )
