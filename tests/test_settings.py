"""Settings come from the environment, once; bad values stop start-up naming the variable."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from bot.errors import SettingsError
from bot.settings import (
    TABLE_BEGIN,
    TABLE_END,
    Settings,
    settings_table,
    shown_default,
    update_reference,
)


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


ROOT = Path(__file__).parents[1]
REFERENCE = ROOT / "docs" / "settings.md"


def published_table() -> str:
    text = REFERENCE.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, f"{REFERENCE} lost its table markers"
    return text.split(TABLE_BEGIN + "\n", 1)[1].split("\n" + TABLE_END, 1)[0]


def test_the_published_reference_is_the_generated_one() -> None:
    """docs/settings.md holds exactly what bot/settings.py says: names, defaults, meanings."""
    assert published_table() == settings_table(), (
        "docs/settings.md is out of date: run python -m bot.settings --update docs/settings.md"
    )


def test_update_rewrites_only_the_table(tmp_path: Path) -> None:
    page = tmp_path / "settings.md"
    page.write_text(f"# intro\n{TABLE_BEGIN}\n| stale |\n{TABLE_END}\nafter\n")
    assert update_reference(page) is True
    assert page.read_text() == f"# intro\n{TABLE_BEGIN}\n{settings_table()}\n{TABLE_END}\nafter\n"
    assert update_reference(page) is False
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="lacks"):
        update_reference(tmp_path / "bare.md")


FIELDS = dataclasses.fields(Settings)


@pytest.mark.parametrize("spec", FIELDS, ids=[spec.metadata["env"] for spec in FIELDS])
def test_every_setting_is_documented_with_its_real_default(spec: dataclasses.Field[Any]) -> None:
    env, doc = spec.metadata["env"], spec.metadata["doc"]
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", env), env
    assert doc.strip() and doc.rstrip().endswith((".", ")")), f"{env}: write a sentence"
    assert "|" not in doc and "\n" not in doc, f"{env}: the doc must fit one table cell"
    # The default the reference shows, given as the variable's value, is the code's default.
    shown = shown_default(spec)
    if shown == "(unset)":
        assert spec.default is None
        assert getattr(Settings.from_env({}), spec.name) is None
    else:
        raw = "" if shown in ("(empty)", "(none)") else shown.strip("`")
        parsed = getattr(Settings.from_env({env: raw}), spec.name)
        assert parsed == spec.default, (
            f"{env}: the reference shows {shown}, the code means {spec.default!r}"
        )
        assert type(parsed) is type(spec.default)


def test_variable_names_are_unique() -> None:
    names = [spec.metadata["env"] for spec in FIELDS]
    assert len(names) == len(set(names))


# Variables the docs name that are not the bot's settings: the test suite's own, the
# containers' helper variables, and those other tools read.
NOT_SETTINGS = {
    "GITOPS_TEST_WORKERS",
    "GITOPS_TEST_SYSTEM_REDIS",
    "GITOPS_TEST_KUBECONFIG",
    "GITOPS_VENV",
    "GITOPS_OLDEST_VENV",
    "REDIS_PASSWORD",
}


def documented_variables() -> dict[str, set[str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pages += sorted((ROOT / "deploy").rglob("*.env")) + sorted((ROOT / "deploy").rglob("*.yaml"))
    pages += sorted((ROOT / "examples").glob("*.md")) + sorted((ROOT / "examples").glob("*.yaml"))
    found: dict[str, set[str]] = {}
    for page in pages:
        for name in re.findall(
            r"\b((?:GITOPS|GITHUB|GITLAB|REDIS)_[A-Z0-9_]*[A-Z0-9])\b", page.read_text()
        ):
            found.setdefault(name, set()).add(str(page.relative_to(ROOT)))
    return found


def test_docs_name_only_real_settings() -> None:
    """A variable the README, docs/, deploy/ or examples/ name exists in bot/settings.py."""
    settings = {spec.metadata["env"] for spec in FIELDS}
    unknown = {
        name: sorted(pages)
        for name, pages in documented_variables().items()
        if name not in settings and name not in NOT_SETTINGS
    }
    assert unknown == {}
