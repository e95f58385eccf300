"""``/setup/github-app``: a GitHub App in one click, through GitHub's manifest flow.

Offered by the web process while no App is configured (``GITHUB_APP_ID`` unset, and nothing
stored by an earlier run): answered 404 otherwise, and never registered without Redis.

1. ``GET /setup/github-app``: without the setup key, a page saying where to find it, and the
   link with the key goes to the bot's log (the key is made once, kept in Redis for a day). The
   key keeps a bot reachable from the internet from being connected to a stranger's App by
   whoever finds the page first. With the key: a page naming what will be created (the App's
   permissions and events, its webhook URL: ``GITOPS_PUBLIC_URL``'s or this request's
   ``/webhooks/github``, where the credentials will be written) and a button posting the
   manifest to GitHub (``<github>/settings/apps/new``, or an organization's), with a one-time
   ``state`` kept in Redis for an hour against cross-site request forgery.
2. GitHub redirects the browser to ``/setup/github-app/callback?code=…&state=…``: the state is
   taken from Redis (once), the code exchanged (the only forge call, one per redirect), the App's
   id, private key and webhook secret written where ``GITOPS_GITHUB_APP_STORE`` says
   (:mod:`bot.app_credentials`), and the page says what to load and restart. The private key
   and webhook secret are never in a page, a log line or an error.

None of this touches the webhook endpoints: they keep answering by the settings the process
started with.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from flask import Flask, Response, abort, render_template_string, request

from bot.app_credentials import Store, StoreError
from bot.errors import ForgeError
from bot.forges.app_manifest import (
    EVENTS,
    PERMISSIONS,
    github_web_url,
    manifest,
    manifest_json,
    new_app_url,
    valid_org,
)
from bot.settings import Settings

log = logging.getLogger("gitops_bot.setup")

PATH = "/setup/github-app"
CALLBACK = "/setup/github-app/callback"
KEY = "gitops:setup:github-app:key"
STATE = "gitops:setup:github-app:state:{state}"
FINISHING = "gitops:setup:github-app:finishing"
CREATED = "gitops:setup:github-app:created"
KEY_TTL = 24 * 3600
STATE_TTL = 3600  # GitHub's codes last an hour too
FINISH_TTL = 120

ALREADY = "a GitHub App is already set up for this bot{detail}; /setup/github-app is closed"
LOG_LINK = (
    "GitHub App setup: open {where}{path}?key={key} in your browser to create the bot's GitHub "
    "App (the key is valid until an App is set up, at most a day)"
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}

TITLES = {
    "contents": "Contents",
    "metadata": "Metadata",
    "pull_requests": "Pull requests",
    "issues": "Issues",
    "statuses": "Commit statuses",
}

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gitops-bot: {{ title }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;
line-height:1.5}code,pre{background:#f4f4f4;padding:.1em .3em}pre{padding:.6em;overflow:auto}
button{font-size:1.1em;padding:.4em 1em}.warn{color:#9a4d00}</style></head>
<body><h1>{{ title }}</h1>{{ body|safe }}</body></html>"""

_KEY_PAGE = """<p>To connect this bot to GitHub, open the link the bot printed in its log: look
for the line starting with <code>GitHub App setup:</code>. The link carries a one-time key, so
that only someone who can read the bot's log can choose its GitHub App.</p>"""

_START_PAGE = """<p>This creates a private GitHub App for this bot and stores its credentials in
<code>{{ store }}</code>.</p>
<ul>
<li>Repository permissions: {{ permissions }}.</li>
<li>Events: {{ events }}.</li>
<li>Webhook URL: <code>{{ webhook_url }}</code>{% if local %} <span class="warn">— GitHub cannot
reach this address; start the bot with <code>--url https://&lt;its public address&gt;</code>
(or set GITOPS_PUBLIC_URL) first, or change the App's webhook URL later</span>{% endif %}.</li>
<li>Owner: {% if org %}the organization <code>{{ org }}</code>{% else %}your GitHub account
{% endif %} on <code>{{ web_url }}</code>.</li>
</ul>
<form action="{{ action }}" method="post">
<input type="hidden" name="manifest" value="{{ manifest }}">
<button type="submit">Create the GitHub App on GitHub</button></form>
<form action="{{ path }}" method="get"><p>Or for an organization:
<input type="hidden" name="key" value="{{ key }}">
<input name="org" value="{{ org or '' }}" placeholder="organization"
pattern="[A-Za-z0-9][A-Za-z0-9-]*" maxlength="39">
<button type="submit">Use this organization</button></p></form>
<p>GitHub shows the App for you to name and create, then sends you back here.</p>"""

_DONE_PAGE = """<p>GitHub App <strong>{{ slug }}</strong> (id {{ app_id }}, owner
<code>{{ owner }}</code>) is created, and its id, private key and webhook secret are stored in
<code>{{ store }}</code>. This page is now closed.</p>
<ol>
<li>Install the App on the repositories the bot serves:
<a href="{{ install_url }}">{{ install_url }}</a></li>
{% if kind == "file" %}
<li>Load the settings into the bot's environment and restart it, for instance:
<pre>set -a; . {{ env_file }}; set +a
gitops-bot serve ...</pre>
(or <code>EnvironmentFile={{ env_file }}</code> in a systemd unit, <code>docker run
--env-file</code>). The file sets GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_FILE and
GITHUB_WEBHOOK_SECRET; remove GITHUB_TOKEN if you set one.</li>
{% else %}
<li>Give the web and worker pods the Secret's keys (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY,
GITHUB_WEBHOOK_SECRET) and restart them:
<pre>envFrom:
  - secretRef:
      name: {{ secret_name }}</pre>
<pre>kubectl -n {{ namespace }} rollout restart deployment/gitops-bot-web deployment/gitops-bot-worker</pre></li>
{% endif %}
<li>Check everything: <code>gitops-bot doctor</code>.</li>
</ol>"""

_FAILED_PAGE = """<p>{{ message }}</p>{% if retry %}<p><a href="{{ path }}">Start again</a>
(you need the link with the key from the bot's log).</p>{% endif %}"""


class _SetupRedisDown(Exception):
    """Redis failed during a setup request (answered 503)."""


@contextmanager
def _redis_guard() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        log.error("GitHub App setup: Redis failed: %s", type(exc).__name__)
        raise _SetupRedisDown() from None


def setup_offered(settings: Settings) -> bool:
    """Whether the web process offers /setup/github-app: no App configured, Redis known."""
    return settings.github_app_id is None and bool(settings.redis_url)


def web_settings() -> Settings:
    """The web process's settings from the environment: a webhook secret is required unless
    /setup/github-app is offered (the way to get one)."""
    settings = Settings.from_env()
    if not setup_offered(settings):
        Settings.from_env(require_webhook_secret=True)  # raises naming what to set
    return settings


def _page(title: str, body: str, status: int = 200, **values: Any) -> Response:
    # The body template escapes every value; the layout takes its result as it is.
    inner = render_template_string(body, **values)
    html = render_template_string(_LAYOUT, title=title, body=inner)
    return Response(html, status=status, mimetype="text/html", headers=PAGE_HEADERS)


def register(app: Flask, settings: Settings, client: redis.Redis) -> None:
    """Add the setup routes to ``app`` (only while :func:`setup_offered`)."""
    if not setup_offered(settings):
        return
    store = Store.from_settings(settings)
    web_url = github_web_url(settings.github_api_url)

    def closed() -> None:
        """404 once an App is stored (by this or another web process) or being stored."""
        created = client.get(CREATED)
        if created is not None:
            try:
                info = json.loads(created)
                detail = f" ({info['slug']}, id {info['id']}, in {info['store']})"
            except (ValueError, KeyError, TypeError):
                detail = ""
            abort(404, ALREADY.format(detail=detail))
        try:
            held = store.holds_app()
        except StoreError as exc:
            abort(503, str(exc))
        if held:
            abort(404, ALREADY.format(detail=f" (in {store.describe()})"))

    def setup_key() -> str:
        client.set(KEY, secrets.token_urlsafe(24), nx=True, ex=KEY_TTL)
        key = client.get(KEY)
        return key.decode() if isinstance(key, bytes) else str(key)

    @app.errorhandler(_SetupRedisDown)
    def redis_down(exc: _SetupRedisDown) -> tuple[Response, int]:
        return Response(
            json.dumps({"error": "Redis is unavailable; try again shortly"}),
            mimetype="application/json",
        ), 503

    @app.get(PATH)
    def setup_page() -> Response:
        with _redis_guard():
            return _setup_page()

    def _setup_page() -> Response:
        closed()
        key = setup_key()
        given = request.args.get("key", "")
        if not hmac.compare_digest(given.encode(), key.encode()):
            # Only a path, or the configured public URL: a Host header is the visitor's to
            # choose, and the link must not lead the operator anywhere else.
            where = settings.public_url or ""
            log.warning(LOG_LINK.format(where=where, path=PATH, key=key))
            return _page("Connect a GitHub App", _KEY_PAGE, status=403)
        org = request.args.get("org", "").strip() or None
        if org is not None and not valid_org(org):
            return _page(
                "Connect a GitHub App",
                _FAILED_PAGE,
                status=400,
                message=f"{org!r} is not an organization name.",
                retry=False,
            )
        state = secrets.token_urlsafe(24)
        client.set(STATE.format(state=state), "1", ex=STATE_TTL)
        root = request.url_root.rstrip("/")
        public = settings.public_url or root
        webhook_url = f"{public}/webhooks/github"
        body = manifest(
            webhook_url=webhook_url,
            redirect_url=f"{root}{CALLBACK}",
            homepage=public,
        )
        host = (request.host.rsplit(":", 1)[0] or "").strip("[]")
        local = settings.public_url is None and host in ("localhost", "127.0.0.1", "::1")
        return _page(
            "Connect a GitHub App",
            _START_PAGE,
            store=store.describe(),
            permissions=", ".join(f"{TITLES[p]}: {level}" for p, level in PERMISSIONS.items()),
            events=", ".join(EVENTS),
            webhook_url=webhook_url,
            local=local,
            org=org,
            web_url=web_url,
            action=new_app_url(web_url, state=state, org=org),
            manifest=manifest_json(body),
            path=PATH,
            key=key,
        )

    @app.get(CALLBACK)
    def setup_callback() -> Response:
        with _redis_guard():
            return _setup_callback()

    def _setup_callback() -> Response:
        closed()
        state, code = request.args.get("state", ""), request.args.get("code", "")
        if not state or not code or client.getdel(STATE.format(state=state)) is None:
            # no forge call for a redirect the bot did not start (or one already used)
            return _page(
                "Connect a GitHub App",
                _FAILED_PAGE,
                status=400,
                message="This link is unknown, used or more than an hour old.",
                retry=True,
                path=PATH,
            )
        if not client.set(FINISHING, "1", nx=True, ex=FINISH_TTL):
            return _page(
                "Connect a GitHub App",
                _FAILED_PAGE,
                status=409,
                message="Another GitHub App is being set up right now; reload in a minute.",
                retry=False,
            )
        try:
            return _finish(code)
        finally:
            client.delete(FINISHING)

    def _finish(code: str) -> Response:
        from bot.forges.app_manifest import convert

        try:
            created = convert(settings.github_api_url, code, timeout=settings.forge_timeout)
        except ForgeError as exc:
            log.error("GitHub App setup: the conversion failed: %s", exc.message)
            return _page(
                "Connect a GitHub App",
                _FAILED_PAGE,
                status=502,
                message=f"GitHub did not hand over the App: {exc.message}",
                retry=True,
                path=PATH,
            )
        try:
            store.write(created, api_url=settings.github_api_url)
        except StoreError as exc:
            log.error(
                "GitHub App setup: App %s (id %s) was created on GitHub but not stored: %s",
                created.slug,
                created.id,
                exc,
            )
            return _page(
                "Connect a GitHub App",
                _FAILED_PAGE,
                status=500,
                message=f"GitHub created the App {created.slug} (id {created.id}), but the bot "
                f"could not store it: {exc}. Delete the App on GitHub ({created.html_url}) "
                "and start again.",
                retry=True,
                path=PATH,
            )
        info = {"id": created.id, "slug": created.slug, "store": store.describe()}
        client.set(CREATED, json.dumps(info))
        client.delete(KEY)
        log.warning(
            "GitHub App %s (id %s) created and stored in %s: load it and restart the bot",
            created.slug,
            created.id,
            store.describe(),
        )
        return _page(
            "GitHub App created",
            _DONE_PAGE,
            slug=created.slug,
            app_id=created.id,
            owner=created.owner,
            store=store.describe(),
            install_url=f"{created.html_url}/installations/new",
            kind=store.kind,
            env_file=store.env_file.resolve(),
            secret_name=store.name,
            namespace=store.namespace,
        )


__all__ = ["CALLBACK", "PATH", "register", "setup_offered", "web_settings"]
