"""``gitops-bot doctor`` on GitHub: the bot's credentials, and what they allow, asked of GitHub.

Fine-grained personal access tokens report no scopes, so what a token may do is learned by
calling the endpoints the bot calls, through the same client set-up as the jobs
(:mod:`bot.forges.github`), and never by writing anything:

* a token: ``GET /user`` (the identity), its classic scopes when GitHub reports them
  (``X-OAuth-Scopes``); per repository the reads the jobs make (repository and default branch,
  pull requests, issues, a user's permission), a ``git ls-remote`` with the credentials the
  checkout uses, and the token user's role (commit statuses need write). Whether a
  fine-grained token may *write* comments and statuses cannot be seen without writing: that
  check says so instead of guessing;
* a GitHub App: ``GET /app`` (the key and id), the App's permissions and events, each
  installation's accepted permissions and events (authoritative: GitHub reports them), and per
  repository the installation and the same reads with the installation's token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bot.checks import Check, failed, passed, skipped, unsure
from bot.errors import ForgeAccessDenied, ForgeError, ForgeNotConfigured
from bot.forges.github import (
    MISSING_CREDENTIALS,
    TOKEN_NEEDS,
    GitHubConfig,
    GitHubForge,
    _client,
    _integration,
    _translate,
)
from bot.forges.probes import git_ls_remote
from bot.settings import Settings

AREA = "github"

#: What the bot needs of a GitHub App (README "Wiring GitHub"): permission → level.
APP_PERMISSIONS = {
    "contents": "read",
    "metadata": "read",
    "pull_requests": "write",
    "issues": "write",
    "statuses": "write",
}
APP_EVENTS = ("pull_request", "issue_comment", "push")
PERMISSION_TITLES = {
    "contents": "Contents",
    "metadata": "Metadata",
    "pull_requests": "Pull requests",
    "issues": "Issues",
    "statuses": "Commit statuses",
}
EVENT_TITLES = {"pull_request": "Pull request", "issue_comment": "Issue comment", "push": "Push"}
CLASSIC_SCOPES = ("repo", "public_repo")
FINE_GRAINED_WRITES = (
    "GitHub reports no permissions for a fine-grained token, and doctor does not write to find out"
)


def configured(settings: Settings) -> bool:
    """Whether the operator set up GitHub at all (credentials or a webhook secret)."""
    return bool(settings.github_token or settings.github_app_id or settings.github_webhook_secret)


def github_checks(settings: Settings, *, repositories: Sequence[str]) -> list[Check]:
    """Every GitHub check: credentials, and what they allow on each of ``repositories``."""
    if not configured(settings):
        return [skipped(AREA, "credentials", "GitHub is not configured")]
    try:
        config = GitHubConfig.from_settings(settings)
    except ForgeNotConfigured as exc:
        fix = (
            "set GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY or "
            'GITHUB_APP_PRIVATE_KEY_FILE (README, "Wiring GitHub"; `gitops-bot serve` offers '
            "/setup/github-app to create an App in one click)"
        )
        detail = exc.message if exc.message != MISSING_CREDENTIALS else "no GitHub credentials"
        return [failed(AREA, "credentials", detail, fix)]
    if config.is_app:
        return _app_checks(config, repositories)
    return _token_checks(config, repositories)


# --- a token ---------------------------------------------------------------------------------


def _token_checks(config: GitHubConfig, repositories: Sequence[str]) -> list[Check]:
    client, _ = _client(config, None)
    try:
        with _translate(
            config, action="read the bot's own account", repository=None, who="GITHUB_TOKEN"
        ):
            login = client.get_user().login
    except ForgeError as exc:
        return [failed(AREA, "token", exc.message, _token_fix(exc, config))]
    checks = [passed(AREA, "token", f"GITHUB_TOKEN authenticates as {login} at {config.api_url}")]
    scopes = client.oauth_scopes
    fine_grained = scopes is None
    if fine_grained:
        checks.append(
            skipped(
                AREA,
                "token scopes",
                "a fine-grained token (GitHub reports no scopes): probed per repository below",
            )
        )
    elif any(s in CLASSIC_SCOPES for s in scopes or ()):
        shown = ", ".join(s for s in scopes or () if s) or "none"
        checks.append(passed(AREA, "token scopes", f"classic token with scopes {shown}"))
    else:
        shown = ", ".join(s for s in scopes or () if s) or "none"
        checks.append(
            failed(
                AREA,
                "token scopes",
                f"a classic token with scopes {shown}: without `repo` it cannot comment or set "
                "statuses on private repositories",
                "give the token the `repo` scope (`public_repo` if every repository is public)",
            )
        )
    if not repositories:
        if fine_grained:
            checks.append(
                unsure(
                    AREA,
                    "repositories",
                    "no repository named, so what the token may do on one was not probed",
                    "name one: `gitops-bot doctor --repository owner/name` (or --repo with a "
                    "clone whose origin is on this GitHub)",
                )
            )
        else:
            checks.append(skipped(AREA, "repositories", "no repository named (--repository)"))
        return checks
    for full_name in repositories:
        checks += _repository_checks(
            config, full_name, login=login, fine_grained=fine_grained, installation=None
        )
    return checks


def _token_fix(exc: ForgeError, config: GitHubConfig) -> str:
    if exc.status == 401:
        return "GITHUB_TOKEN is wrong, expired or revoked: create a new one (" + TOKEN_NEEDS + ")"
    if exc.status == 404:
        return "set GITHUB_API_URL to GitHub's REST API root (https://<host>/api/v3 on GHES)"
    return f"check GITHUB_API_URL ({config.api_url}) and the network between the bot and GitHub"


# --- a GitHub App ------------------------------------------------------------------------------


def _missing(granted: dict[str, str] | None, events: Sequence[str] | None) -> list[str]:
    """What of APP_PERMISSIONS and APP_EVENTS ``granted`` and ``events`` lack, as titles."""
    granted = granted or {}
    missing = [
        f"{PERMISSION_TITLES[name]}: {level}"
        for name, level in APP_PERMISSIONS.items()
        if granted.get(name) not in ((level,) if level == "write" else ("read", "write"))
    ]
    have = set(events or ())
    missing += [f"the {EVENT_TITLES[e]} event" for e in APP_EVENTS if e not in have]
    return missing


def _app_checks(config: GitHubConfig, repositories: Sequence[str]) -> list[Check]:
    integration = _integration(config)
    try:
        with _translate(config, action="read the App", repository=None, who="the GitHub App"):
            app = integration.get_app()
            slug, html_url = app.slug, app.html_url
            app_permissions, app_events = dict(app.permissions or {}), list(app.events or [])
    except ForgeError as exc:
        fix = (
            "check GITHUB_APP_ID and that the private key is one of this App's (generate a new "
            "one in the App's settings if it was deleted)"
            if exc.status == 401
            else f"check GITHUB_API_URL ({config.api_url}) and the network"
        )
        return [failed(AREA, "GitHub App", exc.message, fix)]
    checks = [passed(AREA, "GitHub App", f"{slug} (id {config.app_id}) at {config.api_url}")]
    missing = _missing(app_permissions, app_events)
    if missing:
        checks.append(
            failed(
                AREA,
                "App permissions and events",
                "the App lacks " + ", ".join(missing),
                f"add them in the App's settings ({html_url}, Permissions & events); then each "
                "installation's owner accepts them",
            )
        )
    else:
        checks.append(passed(AREA, "App permissions and events", "everything the bot needs"))
    try:
        with _translate(
            config, action="list its installations", repository=None, who="the GitHub App"
        ):
            installations = [
                (
                    inst.id,
                    inst.account.login if inst.account else "?",
                    dict(inst.permissions or {}),
                    list(inst.events or []),
                )
                for inst in integration.get_installations()
            ]
    except ForgeError as exc:
        return [*checks, failed(AREA, "installations", exc.message, "see the error")]
    if not installations:
        checks.append(
            failed(
                AREA,
                "installations",
                f"{slug} is installed nowhere",
                f"install it on the repositories it serves: {html_url}/installations/new",
            )
        )
    for inst_id, account, permissions, events in installations:
        lacking = _missing(permissions, events)
        name = f"installation on {account}"
        if lacking:
            checks.append(
                failed(
                    AREA,
                    name,
                    f"installation {inst_id} has not accepted " + ", ".join(lacking),
                    f"an owner of {account} accepts the requested permissions (Settings → "
                    "GitHub Apps → Configure)"
                    if not missing
                    else "add them to the App first (above), then accept them here",
                )
            )
        else:
            checks.append(passed(AREA, name, f"installation {inst_id}: permissions and events"))
    for full_name in repositories:
        checks += _app_repository_checks(config, full_name, slug=slug, html_url=html_url)
    return checks


def _app_repository_checks(
    config: GitHubConfig, full_name: str, *, slug: str, html_url: str
) -> list[Check]:
    area = f"{AREA} {full_name}"
    owner, _, name = full_name.partition("/")
    try:
        with _translate(
            config, action="find its installation", repository=full_name, who="the GitHub App"
        ):
            installation = int(_integration(config).get_repo_installation(owner, name).id)
    except ForgeError as exc:
        fix = (
            f"install {slug} on {full_name}, or add the repository to its installation "
            f"({html_url}/installations/new)"
            if exc.status == 404
            else "see the error"
        )
        detail = f"{slug} is not installed on {full_name}" if exc.status == 404 else exc.message
        return [failed(area, "installation", detail, fix)]
    checks = [passed(area, "installation", f"installation {installation}")]
    return checks + _repository_checks(
        config, full_name, login=f"{slug}[bot]", fine_grained=False, installation=installation
    )


# --- one repository ------------------------------------------------------------------------------


def _repository_checks(
    config: GitHubConfig,
    full_name: str,
    *,
    login: str,
    fine_grained: bool,
    installation: int | None,
) -> list[Check]:
    """The reads the jobs make on ``full_name``, git included, and (for a token) its role."""
    area = f"{AREA} {full_name}"
    try:
        forge = GitHubForge(config, full_name, installation_id=installation)
        info = forge.repository_info()
    except ForgeError as exc:
        return [failed(area, "read the repository", exc.message, _access_fix(exc, config))]
    checks = [
        passed(area, "read the repository", f"default branch {info.default_branch}"),
    ]
    repo: Any = forge._client.get_repo(full_name)

    def probe(name: str, call: Callable[[], object], need: str) -> None:
        try:
            with forge._call(name):
                call()
        except ForgeError as exc:
            checks.append(failed(area, name, exc.message, _need_fix(config, need)))
        else:
            checks.append(passed(area, name))

    probe("read pull requests", lambda: repo.get_pulls(state="open").get_page(0), "pull_requests")
    probe("read issues", lambda: repo.get_issues(state="open").get_page(0), "issues")
    checks.append(_git_check(forge, area, config))
    if installation is None:
        checks.append(_token_write_check(forge, area, login=login, fine_grained=fine_grained))
    else:
        checks.append(
            passed(area, "comment, set statuses", "granted by the installation's permissions")
        )
    return checks


def _access_fix(exc: ForgeError, config: GitHubConfig) -> str:
    if isinstance(exc, ForgeAccessDenied) and config.is_app:
        return "add the repository to the App's installation"
    if isinstance(exc, ForgeAccessDenied):
        return (
            "give the token's user access to the repository, and a fine-grained token this "
            f"repository ({TOKEN_NEEDS})"
        )
    return "see the error"


def _need_fix(config: GitHubConfig, need: str) -> str:
    if config.is_app:
        return f"give the GitHub App the {PERMISSION_TITLES[need]}: read permission (or write)"
    return f"GITHUB_TOKEN needs {TOKEN_NEEDS}"


def _git_check(forge: GitHubForge, area: str, config: GitHubConfig) -> Check:
    """``git ls-remote`` with the credentials and environment the checkouts use."""
    name = "fetch with git"
    try:
        access = forge.git_access()
    except ForgeError as exc:
        return failed(area, name, exc.message, _need_fix(config, "contents"))
    problem = git_ls_remote(access, redact=config.redact)
    if problem:
        return failed(area, name, problem, _need_fix(config, "contents"))
    return passed(area, name, access.clone_url)


def _token_write_check(forge: GitHubForge, area: str, *, login: str, fine_grained: bool) -> Check:
    """The token user's role (``GET .../collaborators/{login}/permission``, as ``/sync`` asks):
    commit statuses need Write; comments need read. Past the role, a classic
    token's scopes decide (checked above), a fine-grained token's permissions cannot be seen."""
    name = "comment, set statuses"
    try:
        role = forge.permission(login)
    except ForgeError as exc:
        return failed(area, name, exc.message, f"GITHUB_TOKEN needs {TOKEN_NEEDS}")
    if not role.may_run_commands:
        return failed(
            area,
            name,
            f"{login} has the {role.name.lower()} role on {forge.repository}: commit statuses "
            "need write",
            f"give {login} the Write role on {forge.repository}",
        )
    if fine_grained:
        return unsure(
            area,
            name,
            f"{login} has the {role.name.lower()} role; whether the token may write: "
            + FINE_GRAINED_WRITES,
            "make sure the fine-grained token has Pull requests, Issues and Commit statuses: "
            "read and write on this repository (GitHub → Settings → Developer settings → "
            "Fine-grained tokens)",
        )
    return passed(area, name, f"{login} has the {role.name.lower()} role; classic scopes above")
