"""``gitops-bot doctor``: is this bot set up to do its job? One table, a fix for each failure.

:func:`diagnose` runs every check in order and never stops at the first failure (a broken
setting ends only the checks that need it):

1. **settings** — the environment parses (:class:`bot.settings.Settings`), the clusters file
   too, the data directory is writable when the embedded Redis will use it, an App made with
   ``/setup/github-app`` is loaded;
2. **forges** — the credentials, and what they allow, asked of the forge
   (:mod:`bot.forges.probes`);
3. **webhooks** — a secret for each configured forge;
4. **redis** — reachable, keeping an append-only file (``CONFIG GET appendonly``; a managed
   Redis that refuses ``CONFIG`` is said to be unknown, not fine), never evicting jobs;
5. **repository** (``--repo``) — its apps render, name configured targets, and the repository
   is served (``GITOPS_REPOSITORIES``, each target's ``repositories``);
6. **cluster <target>** — credentials load, the API server answers (its version), the
   namespace allowlist admits what the apps declare, and the bot's rights for each kind and
   namespace the apps use, asked with SelfSubjectAccessReviews (:mod:`bot.cluster.access`,
   computed by :mod:`bot.rbac`).

The answer is a list of :class:`~bot.checks.Check` s; :func:`render_text` and
:func:`render_json` print it, :func:`exit_code` is 0 only when everything passed (skipped
parts that are not configured count as passed), 1 when something could not be verified
(warnings), 2 when something failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.checks import Check, Status, failed, passed, skipped, unsure, worst
from bot.errors import ConfigError, SettingsError
from bot.settings import Settings

EXIT_OK, EXIT_UNSURE, EXIT_FAILED = 0, 1, 2
RBAC_HINT = "`gitops-bot doctor --repo {repo} --rbac` prints the Roles that grant them"


@dataclass
class Options:
    """What to check beyond the configuration: a clone (``repo``) whose apps' needs are
    checked, and forge repositories (``owner/name``, ``github:owner/name``) to probe."""

    repo: Path | None = None
    repositories: tuple[str, ...] = ()


@dataclass
class Repository:
    """What doctor learned of ``--repo``."""

    path: Path
    rendered: list[Any] = field(default_factory=list)  # bot.manifests.RenderedApp
    forge_name: str | None = None  # owner/name on the configured forge, from its origin
    checks: list[Check] = field(default_factory=list)


def diagnose(options: Options, env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order of the module's docstring."""
    checks: list[Check] = []
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        return [
            failed(
                "settings",
                "environment",
                str(exc),
                'fix the variable it names (README, "Settings"); nothing else was checked',
            )
        ]
    checks.append(passed("settings", "environment", "every variable parses"))
    targets, target_checks = _targets(settings)
    checks += target_checks
    checks += _data_dir_checks(settings)
    checks += _stored_app_checks(settings)
    repository = _repository(options.repo, settings) if options.repo else None
    names = _forge_repositories(options, settings, repository)
    from bot.forges.probes import forge_checks

    checks += forge_checks(settings, repositories=names)
    checks += webhook_checks(settings)
    checks += redis_checks(settings)
    if repository is not None:
        checks += repository.checks
        checks += _served_checks(settings, repository, targets)
    if targets is not None:
        checks += cluster_checks(settings, targets, repository)
    return checks


# --- settings ------------------------------------------------------------------------------------


def _targets(settings: Settings) -> tuple[Any, list[Check]]:
    from bot.cluster import TargetError, Targets

    name = "GITOPS_CLUSTERS_FILE"
    try:
        targets = Targets.from_settings(settings.clusters_file)
    except TargetError as exc:
        return None, [
            failed("settings", name, str(exc), "fix the clusters file (docs/clusters.md)")
        ]
    if settings.clusters_file is None:
        detail = "unset: one target, `default` (KUBECONFIG's current context, or in-cluster)"
    else:
        detail = f"targets {', '.join(targets)}"
    return targets, [passed("settings", name, detail)]


def _data_dir_checks(settings: Settings) -> list[Check]:
    """The embedded Redis's directory: writable, or creatable (doctor creates nothing)."""
    if settings.redis_url:
        return []
    directory = settings.data_dir.expanduser().absolute()
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    name = "GITOPS_DATA_DIR"
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return [
            failed(
                "settings",
                name,
                f"{directory} is not writable ({existing} is not a writable directory); the "
                "embedded Redis keeps its append-only file there",
                "point GITOPS_DATA_DIR at a writable directory, or set REDIS_URL",
            )
        ]
    state = "is writable" if existing == directory else "can be created"
    return [passed("settings", name, f"{directory} {state}")]


def _stored_app_checks(settings: Settings) -> list[Check]:
    """An App written by /setup/github-app to a file that the environment does not load yet."""
    from bot.app_credentials import Store

    store = Store.from_settings(settings)
    if store.kind != "file" or not store.env_file.exists() or settings.github_app_id:
        return []
    return [
        unsure(
            "settings",
            "GitHub App from /setup/github-app",
            f"{store.env_file} holds an App, but GITHUB_APP_ID is not set",
            f"load it into the bot's environment (set -a; . {store.env_file}; set +a) and "
            "restart the bot",
        )
    ]


def webhook_checks(settings: Settings) -> list[Check]:
    """A webhook secret for each forge with credentials (and a warning for a short one)."""
    from bot.forges.github_probes import configured as github_configured
    from bot.forges.gitlab_probes import configured as gitlab_configured

    checks = []
    forges = [
        ("GitHub", "GITHUB_WEBHOOK_SECRET", settings.github_webhook_secret, github_configured),
        ("GitLab", "GITLAB_WEBHOOK_SECRET", settings.gitlab_webhook_secret, gitlab_configured),
    ]
    for forge, variable, secret, is_configured in forges:
        if not is_configured(settings):
            continue
        if not secret:
            checks.append(
                failed(
                    "webhooks",
                    variable,
                    f"unset: /webhooks/{forge.lower()} answers 404 and no {forge} delivery is "
                    "taken",
                    f"set {variable} to the secret of the {forge} webhook (a GitHub App has its "
                    "own webhook secret)",
                )
            )
        elif len(secret) < 16:
            checks.append(
                unsure(
                    "webhooks",
                    variable,
                    "set, but shorter than 16 characters",
                    "use a long random secret (openssl rand -hex 32) in the forge and here",
                )
            )
        else:
            checks.append(passed("webhooks", variable, "set"))
    return checks


# --- Redis ---------------------------------------------------------------------------------------


def redis_checks(settings: Settings) -> list[Check]:
    """Reachable, persistent (AOF), not evicting."""
    import redis

    from bot.queue import redis_client

    if not settings.redis_url:
        return [
            passed(
                "redis",
                "REDIS_URL",
                "unset: `gitops-bot serve` runs an embedded Redis with an append-only file in "
                "GITOPS_DATA_DIR (`worker` and `beat` need REDIS_URL)",
            )
        ]
    where = _redis_where(settings.redis_url)
    client = redis_client(settings.redis_url, timeout=settings.redis_timeout)
    try:
        try:
            client.ping()
        except redis.AuthenticationError:
            return [
                failed(
                    "redis",
                    "reachable",
                    f"{where} refused the password",
                    "check the password in REDIS_URL",
                )
            ]
        except redis.RedisError as exc:
            return [
                failed(
                    "redis",
                    "reachable",
                    f"{where} does not answer: {type(exc).__name__}: {_redis_error(exc)}",
                    "check REDIS_URL and that Redis runs and is reachable from the bot",
                )
            ]
        version = str(client.info("server").get("redis_version", "?"))
        checks = [passed("redis", "reachable", f"Redis {version} at {where}")]
        checks += _redis_config_checks(client)
        return checks
    finally:
        client.close()


def _redis_config_checks(client: Any) -> list[Check]:
    import redis

    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError as exc:
        return [
            unsure(
                "redis",
                "persistent (append-only file)",
                f"cannot tell: this Redis refuses CONFIG ({_redis_error(exc)}), as managed "
                "Redis services do",
                "make sure persistence (AOF) is on in the provider's settings, and the eviction "
                "policy is noeviction: a Redis that loses or evicts data loses queued jobs",
            )
        ]
    checks = []
    if appendonly in ("yes", b"yes"):
        checks.append(passed("redis", "persistent (append-only file)", "appendonly yes"))
    else:
        checks.append(
            failed(
                "redis",
                "persistent (append-only file)",
                "appendonly no: a restart of Redis loses every queued job",
                "set `appendonly yes` in redis.conf (now: redis-cli CONFIG SET appendonly yes; "
                "then CONFIG REWRITE), or turn on AOF persistence in the managed service",
            )
        )
    if policy in (None, "noeviction", b"noeviction"):
        checks.append(passed("redis", "eviction", "maxmemory-policy noeviction"))
    else:
        shown = policy.decode() if isinstance(policy, bytes) else policy
        checks.append(
            failed(
                "redis",
                "eviction",
                f"maxmemory-policy {shown}: a full Redis drops queued jobs instead of refusing "
                "new ones",
                "set `maxmemory-policy noeviction` (the webhook then answers 503 and GitHub "
                "redelivers)",
            )
        )
    return checks


def _redis_where(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _redis_error(exc: BaseException) -> str:
    # redis-py's messages name host and port, never the password; cut them short anyway
    return re.sub(r"\s+", " ", str(exc))[:200]


# --- the repository ------------------------------------------------------------------------------


def _repository(path: Path, settings: Settings) -> Repository:
    from bot.manifests import load_config, render_apps

    repository = Repository(path=path)
    area = "repository"
    try:
        config = load_config(path)
    except ConfigError as exc:
        repository.checks.append(
            failed(area, ".gitops.yaml", str(exc), "fix it (docs/gitops-yaml.md)")
        )
        return repository
    rendered = render_apps(path, config)
    repository.rendered = rendered
    names = ", ".join(a.spec.name for a in rendered) or "none"
    repository.checks.append(passed(area, "apps", f"{len(rendered)} from {config.source}: {names}"))
    for app in rendered:
        if app.errors:
            first = app.errors[0]
            where = f"{first.file}: " if first.file else ""
            repository.checks.append(
                unsure(
                    area,
                    f"app {app.spec.name}",
                    f"does not render ({where}{first.message}); the rights it needs are "
                    "checked only for what rendered",
                    "fix the app (gitops-bot preview shows every error)",
                )
            )
    repository.forge_name = _origin_name(path, settings)
    return repository


_REMOTE = re.compile(r"^(?:[a-z+]+://)?(?:[^@/]+@)?([^/:]+)(?::\d+)?[:/](.+?)(?:\.git)?/?$")


def _origin_name(path: Path, settings: Settings) -> str | None:
    """``owner/name`` of the clone's ``origin`` when it is on the configured GitHub,
    ``gitlab:group/project`` when on the configured GitLab."""
    from bot.forges.app_manifest import github_web_url

    try:
        proc = subprocess.run(
            ["git", "-C", str(path), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _REMOTE.match(proc.stdout.strip()) if proc.returncode == 0 else None
    if match is None:
        return None
    host, name = match.group(1).lower(), match.group(2)
    github_host = urlsplit(github_web_url(settings.github_api_url)).hostname or ""
    if host == github_host.lower() and name.count("/") == 1:
        return name
    gitlab = urlsplit(settings.gitlab_url)
    if host == (gitlab.hostname or "").lower():
        prefix = gitlab.path.strip("/")  # a GitLab served under a relative path
        if prefix and name.startswith(prefix + "/"):
            name = name[len(prefix) + 1 :]
        return f"gitlab:{name}"
    return None


def _forge_repositories(
    options: Options, settings: Settings, repository: Repository | None
) -> list[str]:
    """The repositories to probe: those named, ``--repo``'s origin, and the names
    GITOPS_REPOSITORIES lists without wildcards."""
    names = list(options.repositories)
    if repository is not None and repository.forge_name:
        names.append(repository.forge_name)
    names += [p for p in settings.repositories if not any(c in p for c in "*?[")]
    return list(dict.fromkeys(names))


def _served_checks(settings: Settings, repository: Repository, targets: Any) -> list[Check]:
    from bot.forges import RepositoryFilter

    checks = []
    area = "repository"
    name = repository.forge_name
    if name and name.startswith("gitlab:"):
        name = name[len("gitlab:") :]
    if name:
        refusal = RepositoryFilter(settings.repositories).refusal(name)
        if refusal:
            checks.append(
                failed(area, "GITOPS_REPOSITORIES", refusal, f"add {name} to GITOPS_REPOSITORIES")
            )
        else:
            checks.append(passed(area, "GITOPS_REPOSITORIES", f"{name} is served"))
    if targets is None:
        return checks
    used = sorted({a.spec.target for a in repository.rendered})
    configured = list(targets)
    for target_name in used:
        if target_name not in configured:
            apps = [a.spec.name for a in repository.rendered if a.spec.target == target_name]
            checks.append(
                failed(
                    area,
                    f"target {target_name}",
                    f"apps {', '.join(apps)} name target {target_name!r}, which is not "
                    f"configured (targets: {', '.join(configured)})",
                    "add it to GITOPS_CLUSTERS_FILE (docs/clusters.md), or fix the apps' target",
                )
            )
            continue
        target = targets[target_name]
        if name and target.repositories is not None:
            refusal = target.repository_refusal(name)
            if refusal:
                checks.append(
                    failed(
                        area,
                        f"target {target_name}",
                        refusal,
                        f"add {name} to the target's repositories in GITOPS_CLUSTERS_FILE",
                    )
                )
            else:
                checks.append(
                    passed(area, f"target {target_name}", f"{name} may preview and deploy there")
                )
    return checks


# --- clusters --------------------------------------------------------------------------------------


def cluster_checks(settings: Settings, targets: Any, repository: Repository | None) -> list[Check]:
    """Per target: credentials, reachable, allowlists, rights."""
    from bot.rbac import needs as compute_needs

    needs = compute_needs(repository.rendered) if repository is not None else []
    checks: list[Check] = []
    for name in targets:
        checks += _target_checks(
            settings, targets[name], [n for n in needs if n.target == name], repository
        )
    return checks


def _target_checks(
    settings: Settings, target: Any, needs: Sequence[Any], repository: Repository | None
) -> list[Check]:
    from bot.cluster import ApiError, Cluster, TargetError
    from bot.cluster.access import server_version

    area = f"cluster {target.name}"
    try:
        cluster = Cluster(target, concurrency=settings.kube_concurrency)
    except TargetError as exc:
        return [
            failed(
                area,
                "credentials",
                str(exc),
                "set KUBECONFIG (or the target's kubeconfig in GITOPS_CLUSTERS_FILE), or run "
                "in a pod with a service account",
            )
        ]
    with cluster:
        try:
            version = server_version(cluster)
        except ApiError as exc:
            return [
                failed(
                    area,
                    "reachable",
                    exc.message,
                    "check the kubeconfig's server address and the network to it",
                )
            ]
        checks = [passed(area, "reachable", f"Kubernetes {version} at {cluster.server}")]
        if repository is None:
            checks.append(
                skipped(
                    area,
                    "rights",
                    "pass --repo PATH to check the rights a repository's apps need here",
                )
            )
            return checks
        checks += _allowlist_checks(area, target, needs)
        if not needs:
            checks.append(skipped(area, "rights", "no app of the repository deploys here"))
            return checks
        checks += _rights_checks(area, cluster, needs, repository.path)
    return checks


def _allowlist_checks(area: str, target: Any, needs: Sequence[Any]) -> list[Check]:
    """What the clusters file's allowlist refuses (the engine's own rule, Target.check)."""
    from bot.cluster import NotAllowedError
    from bot.rbac import Why

    refused: dict[str, set[str]] = {}
    for need in needs:
        objects = need.names or ("*",)
        for name in objects:
            try:
                target.check(
                    kind=need.kind,
                    namespace=need.namespace,
                    name=name,
                    label=f"{need.kind} {name}",
                )
            except NotAllowedError as exc:
                why = "" if need.why == Why.DECLARED else f" ({need.why})"
                refused.setdefault(exc.message + why, set()).update(need.apps)
    if not refused:
        if target.namespaces is None and target.cluster_scoped:
            detail = "no allowlist: every namespace and cluster-scoped objects"
        else:
            detail = "everything the apps declare is inside the allowlist"
        return [passed(area, "allowlist", detail)]
    return [
        failed(
            area,
            "allowlist",
            f"{message} (apps {', '.join(sorted(apps))})",
            "add the namespace (or cluster_scoped: true) to this target in GITOPS_CLUSTERS_FILE, "
            "or move the objects",
        )
        for message, apps in sorted(refused.items())
    ]


def _rights_checks(area: str, cluster: Any, needs: Sequence[Any], repo: Path) -> list[Check]:
    from bot.cluster import ApiError
    from bot.cluster.access import Attributes, may
    from bot.rbac import Why

    try:
        mapper = cluster.mapper
    except ApiError as exc:
        return [failed(area, "rights", f"discovery failed: {exc.message}", "see the error")]
    probe = may(cluster, [Attributes("create", "authorization.k8s.io", "selfsubjectaccessreviews")])
    if probe[0].allowed is None:
        return [
            failed(
                area,
                "rights",
                f"cannot ask the API server what the bot may do: {probe[0].reason}",
                "allow `create` on selfsubjectaccessreviews (ClusterRole gitops-bot-doctor in "
                "deploy/base/rbac.yaml; Kubernetes' system:basic-user grants it by default)",
            )
        ]
    checks: list[Check] = []
    questions: list[tuple[Any, str, Attributes]] = []
    resolved: list[tuple[Any, str]] = []
    for need in needs:
        res = mapper.lookup(need.api_version, need.kind)
        plural = res.plural if res is not None else need.plural
        if plural is None:
            checks.append(
                failed(
                    area,
                    f"{need.kind} ({need.api_version})",
                    f"the cluster serves no {need.kind} in {need.api_version} (apps "
                    f"{', '.join(need.apps)})",
                    "install the kind's CustomResourceDefinition, or fix the apiVersion",
                )
            )
            continue
        resolved.append((need, plural))
        for verb in need.verbs:
            for name in need.names or (None,):
                questions.append(
                    (need, verb, Attributes(verb, need.group, plural, need.namespace, name))
                )
    answers = may(cluster, [q for _, _, q in questions])
    by_need: dict[int, list[tuple[str, Any]]] = {}
    for (need, verb, _question), answer in zip(questions, answers, strict=True):
        by_need.setdefault(id(need), []).append((verb, answer))
    for need, plural in resolved:
        resource = f"{plural}.{need.group}" if need.group else plural
        where = f" -n {need.namespace}" if need.namespace else ""
        names = f"/{','.join(need.names)}" if need.names else ""
        title = f"{', '.join(need.verbs)} {resource}{names}{where}"
        why = {
            Why.DECLARED: f"apps {', '.join(need.apps)}",
            Why.PARENT: f"ApplySet parents of {', '.join(need.apps)}",
            Why.CREATE_NAMESPACE: f"createNamespace of {', '.join(need.apps)}",
            Why.HEALTH: f"the health wait of {', '.join(need.apps)} names stalled pods",
        }[need.why]
        got = by_need.get(id(need), [])
        denied = sorted({verb for verb, a in got if not a.allowed}, key=need.verbs.index)
        if not denied:
            checks.append(passed(area, title, why))
            continue
        example = next(a for _verb, a in got if not a.allowed).attributes.label()
        reason = next((a.reason for _verb, a in got if not a.allowed and a.reason), "")
        report = unsure if need.why == Why.HEALTH else failed  # optional: status alone then
        checks.append(
            report(
                area,
                title,
                f"denied: {', '.join(denied)} ({why})" + (f"; {reason}" if reason else ""),
                "grant them: " + RBAC_HINT.format(repo=repo) + f"; check with `kubectl auth "
                f"can-i {example}`",
            )
        )
    return checks


# --- output --------------------------------------------------------------------------------------


def exit_code(checks: Sequence[Check]) -> int:
    status = worst(list(checks))
    return {Status.FAIL: EXIT_FAILED, Status.WARN: EXIT_UNSURE}.get(status, EXIT_OK)


def summary(checks: Sequence[Check]) -> dict[str, int]:
    counts = {s.value: 0 for s in Status}
    for check in checks:
        counts[check.status.value] += 1
    return counts


def render_json(checks: Sequence[Check]) -> str:
    status = worst(list(checks))
    return json.dumps(
        {
            "ok": status not in (Status.FAIL, Status.WARN),
            "status": status.value,
            "summary": summary(checks),
            "checks": [c.to_json() for c in checks],
        },
        indent=2,
    )


def render_text(checks: Sequence[Check]) -> str:
    """The table: status, area, check, what was found; a ``fix:`` line under each problem."""
    rows = [(c.status.value.upper(), c.area, c.name, c.detail) for c in checks]
    widths = [
        max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("STATUS", "AREA", "CHECK"))
    ]
    lines = []
    header = ("STATUS", "AREA", "CHECK", "RESULT")
    for row, check in zip([header, *rows], [None, *checks], strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
        if check is not None and check.fix:
            indent = " " * (widths[0] + 2)
            lines.append(f"{indent}fix: {check.fix}")
    counts = summary(checks)
    verdict = {
        EXIT_OK: "everything the bot needs is in place",
        EXIT_UNSURE: "nothing failed, but some things could not be verified (WARN)",
        EXIT_FAILED: "some checks failed: see each `fix:`",
    }[exit_code(checks)]
    lines.append("")
    lines.append(
        f"{counts['pass']} passed, {counts['warn']} to verify, {counts['fail']} failed, "
        f"{counts['skip']} skipped: {verdict}"
    )
    return "\n".join(lines)


def rbac_text(path: Path, *, service_account: tuple[str, str], target: str | None = None) -> str:
    """The RBAC objects the apps of the clone at ``path`` need (:func:`bot.rbac.rbac_manifests`),
    per target, as one YAML stream with a comment heading each target's part. Raises
    :class:`ConfigError` for a broken ``.gitops.yaml``, :class:`ValueError` for an unknown
    ``target``."""
    from bot.manifests import load_config, render_apps
    from bot.rbac import guessed_kinds, needs, rbac_manifests

    rendered = render_apps(path, load_config(path))
    found = needs(rendered)
    used = sorted({n.target for n in found})
    if target is not None:
        if target not in used:
            raise ValueError(
                f"no app deploys to target {target!r} (targets used: {', '.join(used) or 'none'})"
            )
        used = [target]
    ns, name = service_account
    head = [
        f"# The rights gitops-bot needs for the apps of {path.resolve().name}, as "
        "`gitops-bot doctor --rbac` worked them out",
        f"# from what the apps declare; subject: ServiceAccount {ns}/{name}. Keep the rules "
        "for a kind you remove from Git",
        "# until a deploy has pruned its objects. Check the result: gitops-bot doctor --repo "
        f"{path}",
    ]
    for app in rendered:
        if app.errors:
            head.append(
                f"# WARNING: app {app.spec.name} does not render ({app.errors[0].message}); "
                "its rights are missing below."
            )
    guessed = guessed_kinds(found, {})
    if guessed:
        head.append(
            f"# WARNING: the resource names of {', '.join(guessed)} are guessed from the kind "
            "(check `kubectl api-resources`)."
        )
    parts = ["\n".join(head)]
    for target_name in used:
        here = [n for n in found if n.target == target_name]
        parts.append(
            f"# ===== target {target_name}: apply with that cluster's kubeconfig =====\n"
            + rbac_manifests(here, service_account=service_account)
        )
    return "\n---\n".join(parts)


__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNSURE",
    "Options",
    "cluster_checks",
    "diagnose",
    "exit_code",
    "rbac_text",
    "redis_checks",
    "render_json",
    "render_text",
    "webhook_checks",
]
