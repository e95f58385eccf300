"""GitHub's App manifest flow, the forge side: the manifest, where to post it, and the one
exchange of the code GitHub sends back for the new App's credentials.

The flow (GitHub's "Registering a GitHub App from a manifest"):

1. the operator's browser posts a form with a ``manifest`` field (JSON) to
   ``<web>/settings/apps/new?state=S`` (or ``<web>/organizations/<org>/settings/apps/new``);
2. GitHub shows the App, the operator names it and creates it; GitHub redirects the browser to
   the manifest's ``redirect_url`` with ``?code=C&state=S``;
3. the bot posts ``<api>/app-manifests/C/conversions`` (no authentication: the one-time code
   is the credential, valid for an hour) and gets the App's id, private key (PEM) and webhook
   secret.

Only step 3 is a request the bot makes, once per redirect, never on a delivery. Nothing here
logs: the answer holds secrets, kept out of ``repr`` of :class:`CreatedApp`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from bot.errors import ForgeAccessDenied, ForgeRefused, ForgeUnavailable

#: The repository permissions and events the bot needs (README, "Wiring GitHub").
PERMISSIONS = {
    "contents": "read",
    "metadata": "read",
    "pull_requests": "write",
    "issues": "write",
    "statuses": "write",
}
EVENTS = ("pull_request", "issue_comment", "push")
DEFAULT_NAME = "gitops-bot"
_ORG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")


def github_web_url(api_url: str) -> str:
    """GitHub's web root for an API root: ``https://api.github.com`` → ``https://github.com``,
    ``https://ghe.example/api/v3`` → ``https://ghe.example``, ``https://api.acme.ghe.com`` →
    ``https://acme.ghe.com``; any other root is its own web root (a fake in tests)."""
    parts = urlsplit(api_url.rstrip("/"))
    host, path = parts.netloc, parts.path
    if path.endswith("/api/v3"):
        path = path[: -len("/api/v3")]
    elif host.lower().startswith("api.") and not path:
        host = host[len("api.") :]
    return urlunsplit((parts.scheme, host, path, "", ""))


def valid_org(name: str) -> bool:
    """Whether ``name`` can be a GitHub organization's login."""
    return bool(_ORG.match(name)) and not name.endswith("-") and "--" not in name


def new_app_url(web_url: str, *, state: str, org: str | None = None) -> str:
    """Where the manifest form posts: the user's or an organization's "new GitHub App"."""
    where = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{web_url}{where}/settings/apps/new?state={quote(state, safe='')}"


def manifest(
    *, webhook_url: str, redirect_url: str, homepage: str, name: str = DEFAULT_NAME
) -> dict[str, Any]:
    """The App manifest: private, the bot's permissions and events, its webhook."""
    return {
        "name": name,
        "url": homepage,
        "description": "GitOps bot: previews what merging a pull request changes in Kubernetes, "
        "and deploys on merge.",
        "public": False,
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": redirect_url,
        "default_permissions": dict(PERMISSIONS),
        "default_events": list(EVENTS),
    }


@dataclass(frozen=True)
class CreatedApp:
    """What the conversion answers and the bot keeps (the OAuth client secret is not kept:
    the bot does not use it)."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str
    pem: str = field(repr=False)
    webhook_secret: str = field(repr=False)


def convert(api_url: str, code: str, *, timeout: float) -> CreatedApp:
    """``POST /app-manifests/{code}/conversions``: the new App's credentials.

    Not retried: the code is spent by the first answer GitHub gives, and a retry after a lost
    answer would only be refused; the operator starts again. Raises ``ForgeRefused`` (404/422:
    an unknown, used or expired code), ``ForgeAccessDenied`` (401/403) or ``ForgeUnavailable``."""
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    try:
        answer = requests.post(
            url,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "gitops-bot",
            },
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise ForgeUnavailable(
            f"GitHub at {api_url} could not be reached to finish the App ({type(exc).__name__})"
        ) from None
    message = _message(answer)
    if answer.status_code in (404, 422):
        raise ForgeRefused(
            f"GitHub refused the code ({answer.status_code} {message}): it was already used or "
            "is more than an hour old; start again",
            status=answer.status_code,
        )
    if answer.status_code in (401, 403):
        raise ForgeAccessDenied(
            f"GitHub refused the conversion ({answer.status_code} {message})",
            status=answer.status_code,
        )
    if answer.status_code != 201:
        raise ForgeUnavailable(
            f"GitHub answered {answer.status_code} to the conversion: {message}",
            status=answer.status_code,
        )
    try:
        data = answer.json()
        return CreatedApp(
            id=int(data["id"]),
            slug=str(data["slug"]),
            name=str(data.get("name") or data["slug"]),
            html_url=str(data.get("html_url") or ""),
            owner=str((data.get("owner") or {}).get("login") or ""),
            pem=str(data["pem"]),
            webhook_secret=str(data.get("webhook_secret") or ""),
        )
    except (ValueError, KeyError, TypeError):
        raise ForgeUnavailable("GitHub's answer to the conversion is not an App") from None


def _message(answer: requests.Response) -> str:
    try:
        data = answer.json()
    except ValueError:
        return answer.reason or ""
    return str(data.get("message") or "")[:200] if isinstance(data, dict) else ""


def manifest_json(value: dict[str, Any]) -> str:
    """The manifest as the form field carries it."""
    return json.dumps(value, separators=(",", ":"))
