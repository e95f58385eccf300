"""The GitHub App manifest flow on the fake GitHub (GitHub's "Registering a GitHub App from a
manifest").

* ``POST /settings/apps/new?state=S`` (or ``/organizations/<org>/settings/apps/new``), a form
  with a ``manifest`` field: GitHub's web page. Real GitHub then shows the App for the signed-in
  person to name and confirm; the fake confirms at once as :attr:`ManifestFlow.signed_in` (or
  for the organization) and answers what GitHub answers after the click: ``302`` to the
  manifest's ``redirect_url`` with ``?code=C&state=S``. A manifest GitHub would refuse (not
  JSON, no ``url``, a webhook without ``url``, an event without the permission it needs, an
  unknown permission level) gets ``422`` and creates nothing.
* ``POST /app-manifests/{code}/conversions`` (REST, no authentication, checked against the
  OpenAPI description like every API call): the new App's id, slug, owner, ``pem``,
  ``webhook_secret``, ``client_id``/``client_secret``; a code works once, for an hour.

The App becomes a real App of the fake (``FakeGitHub.create_app``): its key signs JWTs the fake
verifies, so a bot configured from the conversion talks to the fake as that App.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:
    from tests.fake_forge.github import App, FakeGitHub

WEB_PATH = re.compile(r"^(?:/organizations/(?P<org>[^/]+))?/settings/apps/new$")
LEVELS = ("read", "write", "admin")
#: The permission an event needs (GitHub refuses a manifest subscribing without it).
EVENT_NEEDS: dict[str, tuple[str, ...]] = {
    "pull_request": ("pull_requests",),
    "issue_comment": ("issues", "pull_requests"),
    "issues": ("issues",),
    "push": ("contents",),
    "status": ("statuses",),
}
CODE_TTL = 3600.0


@dataclass
class Registration:
    """What the fake keeps of an App made from a manifest."""

    app_id: int
    manifest: dict[str, Any]
    webhook_secret: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    state: str | None


@dataclass
class Pending:
    app_id: int
    issued: float
    used: bool = False


class ManifestFlow:
    """The flow's state on one fake: codes handed out, Apps registered."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        #: The person whose browser posts the form: owner of Apps made on a personal account.
        self.signed_in = "octocat"
        self.codes: dict[str, Pending] = {}
        self.registrations: dict[int, Registration] = {}
        self.code_ttl = CODE_TTL
        #: Every form post received (state, org, manifest), for tests.
        self.posts: list[dict[str, Any]] = []

    # --- the web page --------------------------------------------------------------------------

    @staticmethod
    def is_web(path: str) -> bool:
        return WEB_PATH.match(path) is not None

    def web(
        self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        match = WEB_PATH.match(path)
        assert match is not None
        if method != "POST":
            return 405, {"message": "the fake serves only the manifest form's POST"}, {}
        if "application/x-www-form-urlencoded" not in headers.get("content-type", ""):
            return 422, {"message": "the manifest comes as a form field"}, {}
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        state = dict(parse_qsl(query)).get("state")
        org = match.group("org")
        self.posts.append({"state": state, "org": org, "manifest": form.get("manifest")})
        with self.fake._lock:
            if org is not None:
                account = self.fake.users.get(org.lower())
                if account is None or account.type != "Organization":
                    return 404, {"message": "Not Found"}, {}
            try:
                manifest = self._manifest(form.get("manifest"))
            except ValueError as exc:
                return 422, {"message": f"Invalid GitHub App manifest: {exc}"}, {}
            app = self._register(manifest, owner=org or self.signed_in, state=state)
            code = secrets.token_hex(20)
            self.codes[code] = Pending(app.id, time.monotonic())
        target = manifest.get("redirect_url") or manifest["url"]
        params = {"code": code, **({"state": state} if state is not None else {})}
        sep = "&" if urlsplit(target).query else "?"
        return 302, None, {"Location": f"{target}{sep}{urlencode(params)}"}

    def _manifest(self, raw: str | None) -> dict[str, Any]:
        if not raw:
            raise ValueError("the manifest parameter is missing")
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise ValueError("the manifest is not JSON") from None
        if not isinstance(manifest, dict):
            raise ValueError("the manifest is not an object")
        if not _is_url(manifest.get("url")):
            raise ValueError("url is required and must be a URL")
        hook = manifest.get("hook_attributes")
        if hook is not None and (not isinstance(hook, dict) or not _is_url(hook.get("url"))):
            raise ValueError("hook_attributes.url is required and must be a URL")
        for key in ("redirect_url", "setup_url"):
            if key in manifest and not _is_url(manifest[key]):
                raise ValueError(f"{key} must be a URL")
        name = manifest.get("name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 34):
            raise ValueError("name must be 1 to 34 characters")
        permissions = manifest.get("default_permissions") or {}
        if not isinstance(permissions, dict) or any(v not in LEVELS for v in permissions.values()):
            raise ValueError("default_permissions values must be read, write or admin")
        events = manifest.get("default_events") or []
        if not isinstance(events, list):
            raise ValueError("default_events must be a list")
        for event in events:
            needs = EVENT_NEEDS.get(event)
            if needs is not None and not any(p in permissions for p in needs):
                raise ValueError(f"the {event} event needs the {' or '.join(needs)} permission")
        return manifest

    def _register(self, manifest: dict[str, Any], *, owner: str, state: str | None) -> App:
        base = re.sub(r"[^a-z0-9]+", "-", str(manifest.get("name") or owner).lower()).strip("-")
        slug, n = base or "app", 1
        taken = {a.slug for a in self.fake.apps.values()}
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        permissions = {"metadata": "read", **(manifest.get("default_permissions") or {})}
        self.fake.add_user(owner)
        app = self.fake.create_app(
            slug,
            permissions=permissions,
            owner=owner,
            events=list(manifest.get("default_events") or []),
        )
        self.registrations[app.id] = Registration(
            app_id=app.id,
            manifest=manifest,
            webhook_secret=secrets.token_hex(20),
            client_id=f"Iv1.{secrets.token_hex(8)}",
            client_secret=secrets.token_hex(20),
            state=state,
        )
        return app

    # --- the conversion ------------------------------------------------------------------------

    def convert(self, code: str, shapes: Any) -> tuple[int, Any, dict[str, str]]:
        from tests.fake_forge.github import ApiError, iso, now

        with self.fake._lock:
            pending = self.codes.get(code)
            if pending is None or pending.used or time.monotonic() - pending.issued > self.code_ttl:
                raise ApiError(404, "Not Found")
            pending.used = True
            app = self.fake.apps[pending.app_id]
            reg = self.registrations[app.id]
        return (
            201,
            {
                "id": app.id,
                "slug": app.slug,
                "node_id": f"A_{app.id}",
                "client_id": reg.client_id,
                "owner": shapes._user(app.owner),
                "name": reg.manifest.get("name") or app.slug,
                "description": reg.manifest.get("description"),
                "external_url": reg.manifest["url"],
                "html_url": f"{self.fake.url}/apps/{app.slug}",
                "created_at": iso(now()),
                "updated_at": iso(now()),
                "permissions": app.permissions,
                "events": app.events,
                "installations_count": 0,
                "client_secret": reg.client_secret,
                "webhook_secret": reg.webhook_secret,
                "pem": app.private_key_pem,
            },
            {},
        )


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
