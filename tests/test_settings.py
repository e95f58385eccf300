"""Settings come from the environment, once; bad values stop start-up naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import SettingsError
from bot.settings import Settings, settings_table


def test_defaults_need_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.data_dir == Path(".gitops-bot")
    assert settings.max_body_bytes == 25 * 1024 * 1024
    assert settings.preview_drafts is False


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "GITHUB_WEBHOOK_SECRET": "s3cret",
            "REDIS_URL": "redis://localhost:6379/0",
            "GITOPS_PREVIEW_DRAFTS": "yes",
            "GITOPS_BOT_LOGINS": "Renovate , dependabot",
            "GITOPS_REDIS_TIMEOUT": "0.5",
            "GITOPS_JOB_TIMEOUT": "60",
        }
    )
    assert settings.github_webhook_secret == "s3cret"
    assert settings.preview_drafts is True
    assert settings.bot_logins == frozenset({"renovate", "dependabot"})
    assert settings.redis_timeout == 0.5
    assert settings.visibility_timeout > settings.job_timeout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GITOPS_REDIS_TIMEOUT", "soon"),
        ("GITOPS_REDIS_TIMEOUT", "0"),
        ("GITOPS_JOB_TIMEOUT", "-5"),
        ("GITOPS_PREVIEW_DRAFTS", "maybe"),
        ("REDIS_URL", "http://example.invalid"),
        ("GITOPS_LOG_LEVEL", "LOUD"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"REDIS_URL": "http://user:hunter2@host"})
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(Settings.from_env({"GITHUB_WEBHOOK_SECRET": "hunter2"}))


def test_web_needs_a_webhook_secret() -> None:
    with pytest.raises(SettingsError, match="GITHUB_WEBHOOK_SECRET"):
        Settings.from_env({}, require_webhook_secret=True)
    with pytest.raises(SettingsError, match="empty"):
        Settings.from_env({"GITLAB_WEBHOOK_SECRET": ""})
    assert Settings.from_env({"GITLAB_WEBHOOK_SECRET": "x"}, require_webhook_secret=True)


def test_readme_lists_every_setting() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for line in settings_table().splitlines()[2:]:
        variable = line.split("|")[1].strip()
        assert variable in readme, f"README's settings table lacks {variable}"
