"""The forge layer's pure parts: status contexts and markers, the repository filter, the host
check, the forge settings, and the in-memory forge staying faithful to the protocol."""

from __future__ import annotations

import pytest

from bot.errors import ForgeRefused, SettingsError
from bot.events import Repository
from bot.forges import Forge, Marker, Permission, StatusState, intake_refusal, status_context
from bot.forges.policy import RepositoryFilter, normalise_url
from bot.settings import Settings, settings_table
from tests.fake_forge.memory import MemoryForge


def repository(full_name: str = "acme/app", api_url: str = "https://api.github.com") -> Repository:
    return Repository(
        "github", full_name, 1, "main", "https://github.com/a.git", "https://github.com/a", api_url
    )


@pytest.mark.parametrize(
    ("kind", "instance", "context"),
    [
        ("preview", "", "gitops/preview"),
        ("deploy", "prod", "gitops/prod/deploy"),
        ("drift", "eu-1.staging", "gitops/eu-1.staging/drift"),
    ],
)
def test_status_context(kind: str, instance: str, context: str) -> None:
    assert status_context(kind, instance) == context


def test_markers_carry_kind_instance_and_part() -> None:
    plain, prod = Marker("preview"), Marker("preview", "prod")
    assert plain.tag(part=1) == "<!-- gitops-bot:preview part 1 -->"
    assert prod.tag() == "<!-- gitops-bot:preview@prod -->"
    assert prod.part_of(prod.tag(part=12) + "\nbody") == 12
    assert prod.part_of(prod.tag() + "\nbody") == 1
    assert plain.part_of(prod.tag(part=1)) is None
    assert prod.part_of(plain.tag(part=1)) is None
    assert Marker("deploy").part_of(plain.tag(part=1)) is None
    assert plain.part_of("quoting\n" + plain.tag(part=1)) is None
    assert len(Marker("preview", "a" * 40).tag(part=9999)) < 80


@pytest.mark.parametrize("bad", [("Preview", ""), ("preview", "has space"), ("", "")])
def test_bad_marker_names_are_refused(bad: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        Marker(*bad)


@pytest.mark.parametrize(
    ("patterns", "name", "served"),
    [
        (("*",), "acme/app", True),
        (("*",), "group/sub/project", True),
        (("acme/*",), "ACME/App", True),
        (("acme/*",), "other/app", False),
        (("acme/*",), "acme-evil/app", False),
        (("acme/app-*", "tools/ci"), "acme/app-web", True),
        (("acme/app-*", "tools/ci"), "tools/ci2", False),
        (("acme/[ab]pp",), "acme/bpp", True),
        (("acme/[!ab]pp",), "acme/app", False),
        (("acme/?pp",), "acme/xpp", True),
    ],
)
def test_repository_filter(patterns: tuple[str, ...], name: str, served: bool) -> None:
    assert RepositoryFilter(patterns).allows(name) is served


def test_intake_refusal_names_the_reason() -> None:
    settings = Settings.from_env({"GITOPS_REPOSITORIES": "acme/*, tools/ci"})
    assert intake_refusal(settings, repository()) is None
    assert intake_refusal(settings, repository("other/app")) == (
        "repository other/app is not served by this bot (GITOPS_REPOSITORIES: acme/*,tools/ci)"
    )
    evil = intake_refusal(settings, repository(api_url="https://evil.example.com/api/v3"))
    assert (
        evil is not None and "https://evil.example.com/api/v3" in evil and "GITHUB_API_URL" in evil
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://api.github.com", "https://API.github.com/"),
        ("https://ghe.example.com:443/api/v3", "https://ghe.example.com/api/v3/"),
    ],
)
def test_api_urls_compare_as_forges_do(a: str, b: str) -> None:
    assert normalise_url(a) == normalise_url(b)


def test_ghe_settings_accept_a_ghe_delivery() -> None:
    settings = Settings.from_env({"GITHUB_API_URL": "https://ghe.example.com/api/v3/"})
    assert settings.github_api_url == "https://ghe.example.com/api/v3"
    assert intake_refusal(settings, repository(api_url="https://ghe.example.com/api/v3")) is None
    assert intake_refusal(settings, repository()) is not None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL is malformed"),
        ({"GITHUB_API_URL": "https://user:pw@x"}, "without credentials"),
        ({"GITOPS_INSTANCE": "has space"}, "GITOPS_INSTANCE is malformed"),
        ({"GITOPS_REPOSITORIES": " , "}, "at least one pattern"),
        ({"GITOPS_REPOSITORIES": "acme/"}, "not an owner/name pattern"),
        ({"GITHUB_APP_ID": "x"}, "GITHUB_APP_ID is malformed"),
        ({"GITOPS_FORGE_WRITE_INTERVAL": "-1"}, "GITOPS_FORGE_WRITE_INTERVAL"),
    ],
)
def test_forge_settings_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_secrets_are_not_shown() -> None:
    settings = Settings.from_env(
        {"GITHUB_TOKEN": "ghp_secret", "GITHUB_APP_PRIVATE_KEY": "pem-secret"}
    )
    assert "ghp_secret" not in repr(settings) and "pem-secret" not in repr(settings)
    table = settings_table()
    for name in (
        "GITHUB_TOKEN",
        "GITHUB_APP_ID",
        "GITHUB_API_URL",
        "GITOPS_INSTANCE",
        "GITOPS_REPOSITORIES",
    ):
        assert f"`{name}`" in table
    assert "| `GITOPS_REPOSITORIES` | `*` |" in table


def test_memory_forge_is_faithful() -> None:
    forge = MemoryForge()
    assert isinstance(forge, Forge)
    forge.add_pull_request(1, head_sha="a" * 40, base_sha="b" * 40)
    with pytest.raises(ForgeRefused):
        forge.create_comment(1, "x" * 65537)
    with pytest.raises(ForgeRefused):
        forge.comments(2)
    forge.set_status(
        "a" * 40, state=StatusState.SUCCESS, context="gitops/preview", description="y" * 300
    )
    status = forge.latest_status("a" * 40, "gitops/preview")
    assert status is not None and len(status.description) == 140
    assert forge.permission("stranger") is Permission.NONE


def test_the_web_process_never_loads_a_forge_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bot.app, bot.forges;"
        "bad = [m for m in ('github', 'gitlab', 'bot.forges.github') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_startup_warns_once_about_missing_credentials(caplog: pytest.LogCaptureFixture) -> None:
    from bot.cli.serve import _setup_logging

    _setup_logging(Settings.from_env({"GITHUB_WEBHOOK_SECRET": "s"}))
    warnings = [r for r in caplog.records if "GITHUB_TOKEN" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_forge_errors_survive_pickling_with_their_meaning() -> None:
    import pickle

    from bot.errors import ForgeAccessDenied, PermanentError

    error = ForgeAccessDenied(
        "GITHUB_TOKEN cannot read acme/app", status=404, repository="acme/app"
    )
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, PermanentError)
    assert (str(again), again.status, again.repository) == (str(error), 404, "acme/app")
