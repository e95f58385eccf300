"""The bot's settings: one typed object, built once at start-up from environment variables.

Every field documents its environment variable; the settings reference (docs/settings.md) is
generated from the same list (``python -m bot.settings --update docs/settings.md``), so the two
cannot drift apart. Nothing reads the environment at import time: call
:meth:`Settings.from_env` where the process starts.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.errors import SettingsError

MIB = 1024 * 1024
MAX_BODY_BYTES = 25 * MIB
"""Default largest webhook body (GitHub caps payloads at 25 MB; GitLab's default is the same)."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_positive_int(raw: str) -> int:
    value = int(raw.strip())
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _parse_positive_float(raw: str) -> float:
    value = float(raw.strip())
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _parse_logins(raw: str) -> frozenset[str]:
    return frozenset(login.strip().lower() for login in raw.split(",") if login.strip())


def _parse_optional_path(raw: str) -> Path | None:
    return Path(raw).expanduser() if raw.strip() else None


def _parse_redis_url(raw: str) -> str | None:
    url = raw.strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return url


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


def _parse_log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError("must be text or json")
    return value


def _parse_port_or_off(raw: str) -> int:
    value = int(raw.strip())
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number, or 0 for off")
    return value


def _parse_api_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http(s) URL such as https://api.github.com or https://gitlab.com"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be a plain URL without credentials, query or fragment")
    return url


_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def _parse_instance(raw: str) -> str:
    value = raw.strip()
    if value and not _INSTANCE.fullmatch(value):
        raise ValueError(
            "must be at most 40 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _parse_globs(raw: str) -> tuple[str, ...]:
    globs = tuple(g for g in re.split(r"[\s,]+", raw.strip()) if g)
    if not globs:
        raise ValueError("give at least one pattern such as acme/* (or * for every repository)")
    for glob in globs:
        if glob.startswith("/") or glob.endswith("/") or "//" in glob:
            raise ValueError(f"{glob!r} is not an owner/name pattern")
    return globs


def _parse_public_url(raw: str) -> str | None:
    url = raw.strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://gitops-bot.example.com")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be a plain URL without credentials, query or fragment")
    return url


APP_STORE_SECRET = re.compile(
    r"^secret:([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$"
)
"""``secret:<namespace>/<name>`` of GITOPS_GITHUB_APP_STORE (groups 1 and 3)."""


def _parse_app_store(raw: str) -> str:
    value = raw.strip() or "file"
    if value != "file" and not APP_STORE_SECRET.match(value):
        raise ValueError("must be `file` or `secret:<namespace>/<name>`")
    return value


def _parse_optional_positive_int(raw: str) -> int | None:
    return _parse_positive_int(raw) if raw.strip() else None


def _parse_non_negative_float(raw: str) -> float:
    value = float(raw.strip())
    if not value >= 0:
        raise ValueError("must be zero or a positive number")
    return value


def _setting(env: str, parse: Callable[[str], Any], doc: str, **kwargs: Any) -> Any:
    return field(metadata={"env": env, "parse": parse, "doc": doc}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Everything the operator configures. Secrets stay in this object and never reach a task
    argument, a log line or a comment."""

    github_webhook_secret: str | None = _setting(
        "GITHUB_WEBHOOK_SECRET",
        str,
        "Secret of the GitHub webhook; deliveries must carry a matching X-Hub-Signature-256. "
        "Unset: /webhooks/github answers 404.",
        default=None,
        repr=False,
    )
    gitlab_webhook_secret: str | None = _setting(
        "GITLAB_WEBHOOK_SECRET",
        str,
        "Secret token of the GitLab webhook, compared with X-Gitlab-Token. "
        "Unset: /webhooks/gitlab answers 404.",
        default=None,
        repr=False,
    )
    redis_url: str | None = _setting(
        "REDIS_URL",
        _parse_redis_url,
        "Redis holding the job queue (redis://, rediss:// or unix://). Unset: `gitops-bot serve` "
        "starts an embedded Redis in GITOPS_DATA_DIR, with the workers and beat beside it; "
        "`gitops-bot worker`, `gitops-bot beat` and the Procfile's web line need it set.",
        default=None,
        repr=False,  # may embed a password
    )
    data_dir: Path = _setting(
        "GITOPS_DATA_DIR",
        lambda raw: Path(raw).expanduser(),
        "Directory for local state: the embedded Redis's append-only file, the workers' git "
        "cache (`repos/`) and liveness files, a GitHub App stored by /setup/github-app, the "
        "metrics of worker processes.",
        default=Path(".gitops-bot"),
    )
    redis_timeout: float = _setting(
        "GITOPS_REDIS_TIMEOUT",
        _parse_positive_float,
        "Seconds any single Redis call may take (connect or answer) before the webhook answers "
        "503 so the forge can redeliver.",
        default=2.0,
    )
    delivery_ttl: int = _setting(
        "GITOPS_DELIVERY_TTL",
        _parse_positive_int,
        "Seconds a delivery id is remembered, so redeliveries within it queue nothing new.",
        default=7 * 24 * 3600,
    )
    max_body_bytes: int = _setting(
        "GITOPS_MAX_BODY_BYTES",
        _parse_positive_int,
        "Largest webhook body accepted; larger deliveries get 413 without being read.",
        default=MAX_BODY_BYTES,
    )
    preview_drafts: bool = _setting(
        "GITOPS_PREVIEW_DRAFTS",
        _parse_bool,
        "Preview draft pull/merge requests too (default: wait until they are ready for review).",
        default=False,
    )
    live_preview_forks: bool = _setting(
        "GITOPS_LIVE_PREVIEW_FORKS",
        _parse_bool,
        "Preview pull/merge requests from forks against the cluster too. Default: their preview "
        "is the offline diff only, with no cluster credential used, since a live dry-run would "
        "let any outside author read live objects through the diff.",
        default=False,
    )
    bot_logins: frozenset[str] = _setting(
        "GITOPS_BOT_LOGINS",
        _parse_logins,
        "Comma-separated extra logins whose comments are ignored as bots' (accounts of type Bot "
        "and `[bot]` logins always are).",
        default=frozenset(),
    )
    job_timeout: int = _setting(
        "GITOPS_JOB_TIMEOUT",
        _parse_positive_int,
        "Seconds a job may run before it is killed; the queue's visibility timeout is derived "
        "from it so a running job is never handed to a second worker.",
        default=1800,
    )
    retry_delay: float = _setting(
        "GITOPS_RETRY_DELAY",
        _parse_positive_float,
        "Seconds before a job that failed for a transient reason (forge or cluster outage, "
        "Redis) runs again; doubled at each attempt up to 5 minutes, retried only while the "
        "job's first start is less than GITOPS_JOB_TIMEOUT ago.",
        default=5.0,
    )
    deploy_lock_ttl: float = _setting(
        "GITOPS_DEPLOY_LOCK_TTL",
        _parse_positive_float,
        "Seconds an app's deploy lock (one deploy per app and target at a time) outlives its "
        "holder's last renewal; a running deploy renews it every third of that, so a killed "
        "worker's lock is free again within this time.",
        default=60.0,
    )
    preview_result_ttl: int = _setting(
        "GITOPS_PREVIEW_RESULT_TTL",
        _parse_positive_int,
        "Seconds each pull request's last preview is kept in Redis, for the deploy of its merge "
        'to check itself against ("as previewed" or "Differs from the preview").',
        default=14 * 24 * 3600,
    )
    preview_concurrency: int = _setting(
        "GITOPS_PREVIEW_CONCURRENCY",
        _parse_positive_int,
        "Worker processes for preview and command jobs (queue `previews`).",
        default=2,
    )
    deploy_concurrency: int = _setting(
        "GITOPS_DEPLOY_CONCURRENCY",
        _parse_positive_int,
        "Worker processes for deploy jobs (queue `deploys`, never behind previews).",
        default=1,
    )
    worker_shutdown_grace: float = _setting(
        "GITOPS_WORKER_SHUTDOWN_GRACE",
        _parse_non_negative_float,
        "Seconds a stopping worker (SIGTERM, `serve` stopped, a pod deleted) lets its running "
        "jobs finish; then it hands them back to the queue, where another worker takes them at "
        "once (Celery's soft shutdown). `serve` and `worker` wait this plus 10 s before killing "
        "a worker; keep it under the pod's terminationGracePeriodSeconds.",
        default=20.0,
    )
    port: int = _setting(
        "PORT",
        _parse_positive_int,
        "Port the web process listens on under the Procfile's gunicorn line (platforms such as "
        "Heroku set it); `gitops-bot serve` takes --port instead.",
        default=8080,
    )
    web_workers: int = _setting(
        "GITOPS_WEB_WORKERS",
        _parse_positive_int,
        "gunicorn worker processes of the web server (`gitops-bot serve`, and the gunicorn "
        "line of the Procfile and of the image).",
        default=2,
    )
    web_threads: int = _setting(
        "GITOPS_WEB_THREADS",
        _parse_positive_int,
        "Threads per gunicorn worker process (more threads wait on Redis together, but contend "
        "for the GIL).",
        default=4,
    )
    lock_timeout: float = _setting(
        "GITOPS_LOCK_TIMEOUT",
        _parse_positive_float,
        "Seconds `gitops-bot serve` waits for another bot to release GITOPS_DATA_DIR (long "
        "enough for a restart) before it exits with an error; two bots never share one.",
        default=30.0,
    )
    restart_limit: int = _setting(
        "GITOPS_RESTART_LIMIT",
        _parse_positive_int,
        "Times `serve` and `worker` restart one of their processes (embedded Redis, a worker, "
        "the web server, beat) within GITOPS_RESTART_WINDOW before they give up and exit "
        "non-zero, for the service manager to restart the whole bot.",
        default=5,
    )
    restart_window: float = _setting(
        "GITOPS_RESTART_WINDOW",
        _parse_positive_float,
        "Seconds over which GITOPS_RESTART_LIMIT counts restarts.",
        default=600.0,
    )
    worker_heartbeat: float = _setting(
        "GITOPS_WORKER_HEARTBEAT",
        _parse_positive_float,
        "Seconds between a worker's heartbeats in Redis; after three missed ones /readyz "
        "counts it gone.",
        default=10.0,
    )
    clusters_file: Path | None = _setting(
        "GITOPS_CLUSTERS_FILE",
        _parse_optional_path,
        "YAML file mapping target names to clusters (see docs/clusters.md). Unset: one target, "
        "`default`, from KUBECONFIG's current context or the in-cluster service account.",
        default=None,
    )
    field_manager: str = _setting(
        "GITOPS_FIELD_MANAGER",
        str,
        "Field manager name the bot applies with (server-side apply).",
        default="gitops-bot",
    )
    applyset_tooling: str | None = _setting(
        "GITOPS_APPLYSET_TOOLING",
        lambda raw: raw.strip() or None,
        "The `applyset.kubernetes.io/tooling` value the bot writes and accepts on ApplySet "
        "parents (default `gitops-bot/<version>`); `kubectl/v1.37` lets kubectl's "
        "`apply --prune --applyset` and the bot share sets (docs/clusters.md).",
        default=None,
    )
    kube_concurrency: int = _setting(
        "GITOPS_KUBE_CONCURRENCY",
        _parse_positive_int,
        "Most API requests in flight per cluster during preview, apply, prune and the health "
        "wait (docs/clusters.md).",
        default=16,
    )
    github_token: str | None = _setting(
        "GITHUB_TOKEN",
        lambda raw: raw.strip() or None,
        "Token the bot uses on GitHub (a classic token with `repo` scope, or a fine-grained "
        'one; README "Wiring GitHub"). Alternative: a GitHub App (GITHUB_APP_ID).',
        default=None,
        repr=False,
    )
    github_app_id: int | None = _setting(
        "GITHUB_APP_ID",
        _parse_optional_positive_int,
        "Run as this GitHub App (with GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE); "
        "each installation gets its own short-lived token. Takes precedence over GITHUB_TOKEN.",
        default=None,
    )
    github_app_private_key: str | None = _setting(
        "GITHUB_APP_PRIVATE_KEY",
        lambda raw: raw.strip() or None,
        "The GitHub App's private key (PEM text).",
        default=None,
        repr=False,
    )
    github_app_private_key_file: Path | None = _setting(
        "GITHUB_APP_PRIVATE_KEY_FILE",
        _parse_optional_path,
        "File holding the GitHub App's private key (PEM), instead of GITHUB_APP_PRIVATE_KEY.",
        default=None,
    )
    github_api_url: str = _setting(
        "GITHUB_API_URL",
        _parse_api_url,
        "REST API root of the GitHub the bot serves (`https://<host>/api/v3` for GitHub "
        "Enterprise Server). Credentials go nowhere else: deliveries naming another API are "
        "ignored and logged.",
        default="https://api.github.com",
    )
    gitlab_token: str | None = _setting(
        "GITLAB_TOKEN",
        lambda raw: raw.strip() or None,
        "Token the bot uses on GitLab: a personal, group or project access token with the "
        "`api` scope whose user has the Developer role (or higher) on the projects served "
        '(README "Wiring GitLab").',
        default=None,
        repr=False,
    )
    gitlab_url: str = _setting(
        "GITLAB_URL",
        _parse_api_url,
        "Root of the GitLab the bot serves (`https://gitlab.example.com`, with its relative "
        "path if any, e.g. `https://example.com/gitlab`); the API is `<GITLAB_URL>/api/v4`. "
        "Credentials go nowhere else: deliveries naming another GitLab are ignored and logged.",
        default="https://gitlab.com",
    )
    public_url: str | None = _setting(
        "GITOPS_PUBLIC_URL",
        _parse_public_url,
        "The bot's public URL (`https://gitops-bot.example.com`; `gitops-bot serve --url` sets "
        "it): a GitHub App made with /setup/github-app sends its webhooks to "
        "`<url>/webhooks/github`. Unset: the address the browser used for the setup page.",
        default=None,
    )
    github_app_store: str = _setting(
        "GITOPS_GITHUB_APP_STORE",
        _parse_app_store,
        "Where /setup/github-app writes a new GitHub App's id, private key and webhook secret: "
        "`file` (`GITOPS_DATA_DIR/github-app/`, mode 0600) or `secret:<namespace>/<name>` (a "
        "Kubernetes Secret, created through KUBECONFIG or the pod's service account).",
        default="file",
    )
    forge_timeout: float = _setting(
        "GITOPS_FORGE_TIMEOUT",
        _parse_positive_float,
        "Seconds one forge API request may take before it counts as failed (and is retried).",
        default=15.0,
    )
    forge_write_interval: float = _setting(
        "GITOPS_FORGE_WRITE_INTERVAL",
        _parse_non_negative_float,
        "Least seconds between two writes (comments, statuses) to the forge by one worker "
        "process, as GitHub asks of integrations to stay clear of its secondary rate limits.",
        default=1.0,
    )
    instance: str = _setting(
        "GITOPS_INSTANCE",
        _parse_instance,
        "Name of this bot installation, for two bots on one repository (say staging and "
        "production clusters): statuses become `gitops/<instance>/preview` and the hidden "
        "markers of comments and issues carry it. Empty: `gitops/preview`.",
        default="",
    )
    repositories: tuple[str, ...] = _setting(
        "GITOPS_REPOSITORIES",
        _parse_globs,
        "Repositories the bot serves, as comma-separated `owner/name` globs (`acme/*`, "
        "`acme/app-*`; `*` matches any characters, `/` included, so `acme/*` covers GitLab "
        "subgroups too; case is ignored). "
        "Deliveries from others are answered `ignored`.",
        default=("*",),
    )
    log_level: str = _setting(
        "GITOPS_LOG_LEVEL",
        _parse_log_level,
        "DEBUG, INFO, WARNING or ERROR.",
        default="INFO",
    )
    log_format: str = _setting(
        "GITOPS_LOG_FORMAT",
        _parse_log_format,
        "`text` (one line per event, for people) or `json` (one JSON object per line, with the "
        "delivery id, job id, repository, PR and SHA as fields, for log pipelines), for every "
        'process (web, workers, beat, the CLI). README "Metrics and logs".',
        default="text",
    )
    drift_interval: float = _setting(
        "GITOPS_DRIFT_INTERVAL",
        _parse_non_negative_float,
        "Seconds between two drift checks of every served repository (each app compared with "
        "its last deployed commit; one issue per repository; `selfHeal` apps re-applied); 0: "
        'off. README "Drift and self-heal".',
        default=600.0,
    )
    reconcile_interval: float = _setting(
        "GITOPS_RECONCILE_INTERVAL",
        _parse_non_negative_float,
        "Seconds between two catch-ups: every served repository's default-branch head and open "
        "pull/merge requests are checked for work a lost webhook left undone (a deploy, a "
        'preview), which is then queued; 0: off. README "Catch-up".',
        default=180.0,
    )
    worker_metrics_port: int = _setting(
        "GITOPS_WORKER_METRICS_PORT",
        _parse_port_or_off,
        "Port on which `gitops-bot worker` serves its Prometheus `/metrics` (jobs run, their "
        "times, forge calls, objects applied) on every address; 0: off. `gitops-bot serve` "
        "ignores it: its web `/metrics` shows its workers' metrics too.",
        default=0,
    )

    @property
    def visibility_timeout(self) -> int:
        """Seconds before Redis hands an unacknowledged job to another worker: longer than the
        longest job (plus margin), else a slow deploy would run twice."""
        return self.job_timeout * 2 + 300

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, require_webhook_secret: bool = False
    ) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``).

        Raises :class:`SettingsError` naming the variable when one is malformed, or when
        ``require_webhook_secret`` and neither webhook secret is set (a web server that would
        answer every delivery with 404 is a misconfiguration worth stopping for)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = env.get(name)
            if raw is None:
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(
                    f"{name} is malformed: {exc} (got {_shown(name, raw)})"
                ) from exc
        settings = cls(**values)
        if settings.github_webhook_secret == "" or settings.gitlab_webhook_secret == "":
            raise SettingsError(
                "GITHUB_WEBHOOK_SECRET / GITLAB_WEBHOOK_SECRET is set but empty; unset it or "
                "give it the webhook's secret"
            )
        if require_webhook_secret and not (
            settings.github_webhook_secret or settings.gitlab_webhook_secret
        ):
            raise SettingsError(
                "set GITHUB_WEBHOOK_SECRET and/or GITLAB_WEBHOOK_SECRET to the secret of the "
                "webhook you configured on the forge"
            )
        return settings

    def with_redis_url(self, url: str) -> Settings:
        return dataclasses.replace(self, redis_url=url)


def _shown(name: str, raw: str) -> str:
    """The value for an error message, unless the variable may hold a secret."""
    if "SECRET" in name or "TOKEN" in name or "PRIVATE_KEY" in name or name == "REDIS_URL":
        return "a value that is not shown"
    return repr(raw)


TABLE_BEGIN = (
    "<!-- BEGIN settings table: generated by `python -m bot.settings --update docs/settings.md` -->"
)
TABLE_END = "<!-- END settings table -->"


def shown_default(spec: dataclasses.Field[Any]) -> str:
    """A setting's default as the reference prints it: a value that, given as the variable,
    yields the default (``false``, `` `2.0` ``), or ``(unset)`` / ``(empty)`` / ``(none)``."""
    default = spec.default
    if default is None:
        return "(unset)"
    if isinstance(default, frozenset) and not default:
        return "(none)"
    if default == "":
        return "(empty)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`"
    return f"`{default}`"


def settings_table() -> str:
    """The settings reference table (docs/settings.md), in Markdown: one row per field of
    :class:`Settings`, in declaration order; settings that hold a secret say so."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for spec in dataclasses.fields(Settings):
        name = f"`{spec.metadata['env']}`" + (" (secret)" if not spec.repr else "")
        rows.append(f"| {name} | {shown_default(spec)} | {spec.metadata['doc']} |")
    return "\n".join(rows)


def update_reference(path: Path) -> bool:
    """Rewrite the generated table in ``path`` (between :data:`TABLE_BEGIN` and
    :data:`TABLE_END`); True when it changed."""
    text = path.read_text()
    try:
        head, rest = text.split(TABLE_BEGIN + "\n", 1)
        _, tail = rest.split(TABLE_END, 1)
    except ValueError:
        raise SystemExit(f"{path} lacks the lines {TABLE_BEGIN} and {TABLE_END}") from None
    new = f"{head}{TABLE_BEGIN}\n{settings_table()}\n{TABLE_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


def main(argv: list[str]) -> None:
    """``python -m bot.settings``: print the table; ``--update FILE``: rewrite it in FILE."""
    if len(argv) == 2 and argv[0] == "--update":
        changed = update_reference(Path(argv[1]))
        print(f"{argv[1]}: {'updated' if changed else 'already up to date'}")
    elif not argv:
        print(settings_table())
    else:
        raise SystemExit("usage: python -m bot.settings [--update docs/settings.md]")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
