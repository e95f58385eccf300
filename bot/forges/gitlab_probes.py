"""``gitops-bot doctor`` on GitLab: the token, and what it allows, asked of GitLab.

Through the same client set-up as the jobs (:mod:`bot.forges.gitlab`), and never writing:

* the token: ``GET /user`` (the identity); ``GET /personal_access_tokens/self`` for its scopes
  (the bot writes notes and statuses, so it needs ``api``; ``read_api`` only reads), whether it
  is active and when it expires (personal, group and project access tokens answer it; GitLab
  before 15.5 does not, which is said, not guessed);
* per project: the reads the jobs make (project and default branch, merge requests, issues),
  ``git ls-remote`` with the checkouts' credentials, and the token user's role there (members
  including inherited ones, as ``/sync`` reads it): notes and statuses need Developer. With the
  ``api`` scope and Developer, every write the bot makes is allowed: GitLab has no finer grain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from bot.checks import Check, failed, passed, skipped, unsure
from bot.errors import ForgeError, ForgeNotConfigured
from bot.forges.base import Permission
from bot.forges.gitlab import (
    TOKEN_NEEDS,
    GitLabConfig,
    GitLabForge,
    _translate,
    client,
    identity,
)
from bot.forges.probes import git_ls_remote
from bot.settings import Settings

AREA = "gitlab"
EXPIRY_WARNING_DAYS = 14
ROLE_NAMES = {
    Permission.NONE: "no role",
    Permission.READ: "Guest",
    Permission.TRIAGE: "Reporter",
    Permission.WRITE: "Developer",
    Permission.MAINTAIN: "Maintainer",
    Permission.ADMIN: "Owner",
}


def configured(settings: Settings) -> bool:
    """Whether the operator set up GitLab at all (a token or a webhook secret)."""
    return bool(settings.gitlab_token or settings.gitlab_webhook_secret)


def gitlab_checks(
    settings: Settings, *, repositories: Sequence[str], today: date | None = None
) -> list[Check]:
    """Every GitLab check: the token, and what it allows on each project of ``repositories``."""
    if not configured(settings):
        return [skipped(AREA, "credentials", "GitLab is not configured")]
    try:
        config = GitLabConfig.from_settings(settings)
    except ForgeNotConfigured:
        return [
            failed(
                AREA,
                "credentials",
                "no GitLab credentials (GITLAB_TOKEN is unset)",
                f"set GITLAB_TOKEN ({TOKEN_NEEDS}) and, for a self-managed GitLab, GITLAB_URL",
            )
        ]
    try:
        login = identity(config).login
    except ForgeError as exc:
        fix = (
            "GITLAB_TOKEN is wrong, expired or revoked: create a new one (" + TOKEN_NEEDS + ")"
            if exc.status == 401
            else f"check GITLAB_URL ({config.url}) and the network between the bot and GitLab"
        )
        return [failed(AREA, "token", exc.message, fix)]
    checks = [passed(AREA, "token", f"GITLAB_TOKEN authenticates as {login} at {config.url}")]
    checks.append(_scope_check(config, today or datetime.now(UTC).date()))
    if not repositories:
        checks.append(
            skipped(AREA, "projects", "no project named (--repository gitlab:group/project)")
        )
    for path in repositories:
        checks += _project_checks(config, path, login=login)
    return checks


def _scope_check(config: GitLabConfig, today: date) -> Check:
    name = "token scopes"
    try:
        with _translate(config, action="read the token's own details", repository=None):
            data: Any = client(config).http_get("/personal_access_tokens/self")
    except ForgeError as exc:
        return unsure(
            AREA,
            name,
            f"cannot tell: GitLab does not describe this token ({exc.message})",
            "make sure the token has the api scope (GitLab before 15.5 and OAuth tokens do not "
            "answer GET /personal_access_tokens/self)",
        )
    scopes = [str(s) for s in (data.get("scopes") or [])] if isinstance(data, dict) else []
    shown = ", ".join(scopes) or "none"
    if not isinstance(data, dict) or not data.get("active", True) or data.get("revoked"):
        return failed(AREA, name, "the token is not active", "create a new token")
    if "api" not in scopes:
        return failed(
            AREA,
            name,
            f"scopes {shown}: without `api` the bot cannot write notes or statuses",
            f"create a token with the api scope ({TOKEN_NEEDS})",
        )
    expires = data.get("expires_at")
    if expires:
        try:
            left = (date.fromisoformat(str(expires)[:10]) - today).days
        except ValueError:
            left = None
        if left is not None and left <= EXPIRY_WARNING_DAYS:
            return unsure(
                AREA,
                name,
                f"scopes {shown}; the token expires on {expires} ({left} days)",
                "create a new token before then and replace GITLAB_TOKEN",
            )
        return passed(AREA, name, f"scopes {shown}; expires on {expires}")
    return passed(AREA, name, f"scopes {shown}")


def _project_checks(config: GitLabConfig, path: str, *, login: str) -> list[Check]:
    area = f"{AREA} {path}"
    forge = GitLabForge(config, path)
    try:
        info = forge.repository_info()
    except ForgeError as exc:
        return [
            failed(
                area,
                "read the project",
                exc.message,
                f"add the token's user ({login}) to {path} or its group as Developer",
            )
        ]
    checks = [passed(area, "read the project", f"default branch {info.default_branch}")]
    project: Any = forge._project

    def probe(name: str, call: Callable[[], object]) -> None:
        try:
            with forge._call(name):
                call()
        except ForgeError as exc:
            checks.append(failed(area, name, exc.message, f"GITLAB_TOKEN needs {TOKEN_NEEDS}"))
        else:
            checks.append(passed(area, name))

    probe(
        "read merge requests",
        lambda: project.mergerequests.list(state="opened", per_page=1, get_all=False),
    )
    probe("read issues", lambda: project.issues.list(state="opened", per_page=1, get_all=False))
    try:
        access = forge.git_access()
        problem = git_ls_remote(access, redact=config.redact)
    except ForgeError as exc:
        problem = exc.message
    if problem:
        checks.append(failed(area, "fetch with git", problem, f"GITLAB_TOKEN needs {TOKEN_NEEDS}"))
    else:
        checks.append(passed(area, "fetch with git", info.clone_url))
    try:
        role = forge.permission(login)
    except ForgeError as exc:
        checks.append(failed(area, "role", exc.message, f"GITLAB_TOKEN needs {TOKEN_NEEDS}"))
        return checks
    if role < Permission.WRITE:
        checks.append(
            failed(
                area,
                "role",
                f"{login} is {ROLE_NAMES[role]} on {path}: notes and commit statuses need "
                "Developer",
                f"give {login} the Developer role (or higher) on {path} or its group",
            )
        )
    else:
        checks.append(passed(area, "role", f"{login} is {ROLE_NAMES[role]}"))
    return checks
