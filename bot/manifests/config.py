"""The repository's ``.gitops.yaml``: which directories are apps, where they go, how they render.

The file is validated against the JSON Schema shipped in this package
(``bot/manifests/gitops.schema.json``, also usable by editors) and then checked for what a schema
cannot say (unique names, paths inside the repository). Every problem becomes a
:class:`ConfigError` naming the file, the line and the fix; all problems of one file are raised
together as :class:`ConfigProblems`. Without the file, apps are discovered
(:mod:`bot.manifests.discover`).

Target names are kept as written: only the bot's own settings know which targets exist, and the
cluster engine refuses unknown ones.
"""

from __future__ import annotations

import difflib
import functools
import json
import posixpath
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

from bot.errors import ConfigError, RenderError
from bot.manifests.loader import load_documents, read_text
from bot.model import ObjectError

CONFIG_FILE = ".gitops.yaml"
DEFAULT_TARGET = "default"
DEFAULT_RENDER_TIMEOUT = 120.0
DEFAULT_HEALTH_TIMEOUT = 300
DEFAULT_STUCK_POD_TIMEOUT = 60

MSG_UNKNOWN_KEY = "unknown key {key!r} in {where}{hint}"
MSG_MISSING_KEY = "{where} is missing the required key {key!r}"
MSG_REQUIRED_BY_IF = " (needed with {rule})"
MSG_DUPLICATE_APP = "app name {name!r} is used twice (first on line {first}); names must be unique"
MSG_SAME_PATH_TARGET = (
    "apps {first!r} and {second!r} both deploy {path!r} to target {target!r}; "
    "give one of them another path or target"
)
MSG_ABSOLUTE = "{what} {path!r} must be relative to the repository root, not absolute"
MSG_DOTDOT = "{what} {path!r} must not contain '..' (it has to stay inside the repository)"
MSG_LEAVES_REPO = "{what} {path!r} leads outside the repository"
MSG_PATH_MISSING = "app path {path!r} does not exist at this commit"
MSG_PATH_NOT_DIR = "app path {path!r} is not a directory"
MSG_VALUES_MISSING = "values file {path!r} does not exist at this commit"
MSG_NOT_MAPPING = "the file must be a mapping with `version: 1` and `apps:`"
MSG_YML = "found .gitops.yml: the bot reads .gitops.yaml; rename the file"
MSG_DEPLOY_BRANCH = (
    "deployBranch is not supported: the deploy branch is the repository's default branch "
    "(pushes to it are deployed); remove the key, or change the default branch on the forge"
)
MSG_UNKNOWN_DEPENDENCY = "app {name!r} depends on {other!r}, which is not an app of this file{hint}"
MSG_SELF_DEPENDENCY = "app {name!r} depends on itself; remove it from its dependsOn"
MSG_DEPENDENCY_CYCLE = (
    "dependsOn cycle: {cycle}; apps that wait for each other can never deploy, so remove one "
    "of these dependencies"
)


class ConfigProblems(ConfigError):
    """Several problems in one configuration file; ``problems`` lists each with its line."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.message))
        first = self.problems[0]
        message = first.message
        if len(self.problems) > 1:
            message = "; ".join(
                f"line {p.line}: {p.message}" if p.line else p.message for p in self.problems
            )
        super().__init__(message, file=first.file, line=first.line)


def config_errors(exc: ConfigError) -> list[ObjectError]:
    """A configuration error as report errors, one per problem, with file and line."""
    problems = exc.problems if isinstance(exc, ConfigProblems) else [exc]
    return [
        ObjectError(p.message, file=p.file, line=p.line, reason="ConfigError") for p in problems
    ]


@dataclass(frozen=True)
class RenderOptions:
    """How an app's directory becomes objects.

    ``type`` is ``auto`` (kustomization.yaml -> kustomize, Chart.yaml -> helm, else plain),
    ``plain``, ``kustomize`` or ``helm``. ``helm_values`` are relative to the app path."""

    type: str = "auto"
    timeout: float = DEFAULT_RENDER_TIMEOUT
    allow_remote_bases: bool = False
    helm_release: str | None = None
    helm_namespace: str | None = None
    helm_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppSpec:
    """One app of the repository. ``path`` is repo-relative, normalised ('.' for the root)."""

    name: str
    path: str
    target: str = DEFAULT_TARGET
    namespace: str | None = None
    create_namespace: bool = False
    """Create ``namespace`` before anything else when it does not exist."""
    prune: bool = True
    render: RenderOptions = field(default_factory=RenderOptions)
    validate_schema: bool = False
    force_conflicts: bool = False
    """Take ownership of fields managed by other field managers on apply."""
    self_heal: bool = False
    """The drift job re-applies the last deployed commit when the live objects drifted."""
    health_timeout: int = DEFAULT_HEALTH_TIMEOUT
    """Seconds to wait for health after apply."""
    stuck_pod_timeout: int = DEFAULT_STUCK_POD_TIMEOUT
    """Seconds after which a rollout whose every new pod is stuck ends the health wait."""
    exclude: tuple[str, ...] = ()
    """Glob patterns relative to ``path`` of files that are not part of the app."""
    depends_on: tuple[str, ...] = ()
    """Apps that must deploy healthy first when one push changes both (``dependsOn``)."""
    line: int | None = field(default=None, compare=False)
    """Where the app is declared in .gitops.yaml (None when discovered)."""
    path_line: int | None = field(default=None, compare=False)
    """The line of its ``path`` in .gitops.yaml (None when discovered)."""


@dataclass(frozen=True)
class RepoConfig:
    """The apps of one commit of a repository."""

    version: int
    apps: tuple[AppSpec, ...]
    source: str = CONFIG_FILE  # or 'discovered'

    def app(self, name: str) -> AppSpec | None:
        """The app called ``name``, if any."""
        return next((a for a in self.apps if a.name == name), None)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.apps]


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``.gitops.yaml`` shipped with the package."""
    text = resources.files("bot.manifests").joinpath("gitops.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_config(root: Path) -> RepoConfig:
    """The configuration of the checkout at ``root``: ``.gitops.yaml`` if present, else the
    discovered apps. Raises :class:`ConfigError` (or :class:`ConfigProblems`) naming file and line."""
    if (root / CONFIG_FILE).exists() or (root / CONFIG_FILE).is_symlink():
        return parse_config(read_text(root, CONFIG_FILE), file=CONFIG_FILE, root=root)
    if (root / ".gitops.yml").exists():
        raise ConfigError(MSG_YML, file=".gitops.yml")
    from bot.manifests.discover import discover_apps

    return RepoConfig(version=1, apps=tuple(discover_apps(root)), source="discovered")


def parse_config(text: str, *, file: str = CONFIG_FILE, root: Path | None = None) -> RepoConfig:
    """Parse and check the text of a ``.gitops.yaml``.

    Every problem of the file is raised at once (:class:`ConfigProblems`): schema errors,
    duplicate names, paths leaving the repository and, with ``root`` (the checkout), app paths
    and values files that do not exist there. A missing app path alone does not fail the whole
    file: it stays an error of that app (see :func:`bot.manifests.render.render_app`), so one
    removed directory does not stop the other apps; it is listed among the others when the
    file fails anyway, so a fix takes one round."""
    try:
        docs = load_documents(text, name=file)
    except RenderError as exc:
        raise ConfigError(exc.message, file=file, line=exc.line) from None
    if len(docs) > 1:
        raise ConfigError("the file must hold one YAML document", file=file, line=docs[1].line)
    data = docs[0].data if docs else None
    if not isinstance(data, dict):
        raise ConfigError(MSG_NOT_MAPPING, file=file, line=1)
    # Limits were enforced above; composing again only to learn each value's line.
    node = yaml.compose(
        text, Loader=yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader
    )
    lines = _Lines(node)
    problems: list[ConfigError] = [
        problem for err in _schema_errors(data) for problem in _schema_problem(err, lines, file)
    ]
    missing: list[ConfigError] = []  # app paths absent from the checkout
    apps: list[AppSpec] = []
    seen: dict[str, int | None] = {}
    placed: dict[tuple[str, str], str] = {}
    raw_apps = data.get("apps")
    # The checks below read what the schema may have refused, so each reads defensively: a
    # file with schema errors still gets every other problem reported in the same run.
    for index, raw in enumerate(raw_apps if isinstance(raw_apps, list) else []):
        if not isinstance(raw, dict):
            continue
        here = ("apps", index)
        name = raw.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    ConfigError(
                        MSG_DUPLICATE_APP.format(name=name, first=seen[name]),
                        file=file,
                        line=lines.line((*here, "name")),
                    )
                )
                continue
            seen[name] = lines.line((*here, "name"))
        raw_path = raw.get("path")
        path = None
        if isinstance(raw_path, str) and raw_path:
            path = _check_path(raw_path, "path", (*here, "path"), lines, file, problems)
        if path is not None and root is not None:
            missing.extend(_missing(root, path, "app path", file, lines.line((*here, "path"))))
        render_raw = _mapping(raw.get("render"))
        helm = _mapping(render_raw.get("helm"))
        values: list[str] = []
        listed = helm.get("valuesFiles")
        for i, vf in enumerate(listed if isinstance(listed, list) else []):
            if not isinstance(vf, str) or not vf:
                continue
            where = (*here, "render", "helm", "valuesFiles", i)
            checked = _check_path(
                vf, "values file", where, lines, file, problems, allow_parent=True
            )
            if checked is not None and path is not None:
                joined = posixpath.normpath(posixpath.join(path, checked))
                if joined.startswith("../") or joined == "..":
                    problems.append(
                        ConfigError(
                            MSG_LEAVES_REPO.format(what="values file", path=vf),
                            file=file,
                            line=lines.line(where),
                        )
                    )
                elif root is not None:
                    missing.extend(_missing(root, joined, "values file", file, lines.line(where)))
                values.append(checked)
        if path is None or not isinstance(name, str):
            continue
        target = raw.get("target", DEFAULT_TARGET)
        other = placed.get((path, str(target)))
        if other is not None:
            problems.append(
                ConfigError(
                    MSG_SAME_PATH_TARGET.format(first=other, second=name, path=path, target=target),
                    file=file,
                    line=lines.line((*here, "path")),
                )
            )
        placed[(path, str(target))] = name
        if problems:
            continue  # the file fails: no need to build specs from values the schema refused
        apps.append(
            AppSpec(
                name=name,
                path=path,
                target=target,
                namespace=raw.get("namespace"),
                create_namespace=raw.get("createNamespace", False),
                prune=raw.get("prune", True),
                render=RenderOptions(
                    type=render_raw.get("type", "auto"),
                    timeout=float(render_raw.get("timeout", DEFAULT_RENDER_TIMEOUT)),
                    allow_remote_bases=_mapping(render_raw.get("kustomize")).get(
                        "allowRemoteBases", False
                    ),
                    helm_release=helm.get("releaseName"),
                    helm_namespace=helm.get("namespace"),
                    helm_values=tuple(values),
                ),
                validate_schema=raw.get("validate", False),
                force_conflicts=raw.get("forceConflicts", False),
                self_heal=raw.get("selfHeal", False),
                health_timeout=raw.get("healthTimeout", DEFAULT_HEALTH_TIMEOUT),
                stuck_pod_timeout=raw.get("stuckPodTimeout", DEFAULT_STUCK_POD_TIMEOUT),
                exclude=tuple(raw.get("exclude", ())),
                depends_on=tuple(raw.get("dependsOn", ())),
                line=lines.line(here),
                path_line=lines.line((*here, "path")),
            )
        )
    if not problems and isinstance(raw_apps, list):
        problems.extend(_dependency_problems(raw_apps, apps, lines, file))
    if problems:
        raise ConfigProblems(problems + missing)
    return RepoConfig(version=data["version"], apps=tuple(apps), source=CONFIG_FILE)


def _dependency_problems(
    raw_apps: list[Any], apps: list[AppSpec], lines: _Lines, file: str
) -> list[ConfigError]:
    """Unknown names, self-dependencies and cycles in the apps' ``dependsOn``, each at the line
    of the dependency that closes it."""
    problems: list[ConfigError] = []
    names = [a.name for a in apps]
    index = {a.name: i for i, a in enumerate(apps)}

    def line_of(app: str, other: str) -> int | None:
        position = index[app]
        listed = raw_apps[position].get("dependsOn") or []
        where = listed.index(other) if other in listed else None
        path = ("apps", position, "dependsOn") + ((where,) if where is not None else ())
        return lines.line(path)

    graph: dict[str, list[str]] = {}
    for app in apps:
        graph[app.name] = []
        for other in app.depends_on:
            if other == app.name:
                problems.append(
                    ConfigError(
                        MSG_SELF_DEPENDENCY.format(name=app.name),
                        file=file,
                        line=line_of(app.name, other),
                    )
                )
            elif other not in index:
                close = difflib.get_close_matches(other, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    ConfigError(
                        MSG_UNKNOWN_DEPENDENCY.format(name=app.name, other=other, hint=hint),
                        file=file,
                        line=line_of(app.name, other),
                    )
                )
            else:
                graph[app.name].append(other)
    for cycle in _cycles(graph):
        shown = " → ".join([*cycle, cycle[0]])
        problems.append(
            ConfigError(
                MSG_DEPENDENCY_CYCLE.format(cycle=shown),
                file=file,
                line=line_of(cycle[-1], cycle[0]),
            )
        )
    return problems


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per group of apps that wait for each other (cycles sharing an app are one
    group), each listed from its first app in file order, following the dependencies."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []
    seen: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for other in graph[node]:
            if state.get(other) == 1:
                cycle = path[path.index(other) :]
                if seen.isdisjoint(cycle):
                    seen.update(cycle)
                    found.append(cycle)
            elif other not in state:
                visit(other, path)
        path.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    return found


def dependency_order(config: RepoConfig, names: Collection[str]) -> list[str]:
    """``names`` ordered so that every app comes after the apps it depends on (file order
    otherwise). The configuration has no cycle (:func:`parse_config` refuses one)."""
    wanted = set(names)
    specs = {a.name: a for a in config.apps}
    ordered: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        for other in specs[name].depends_on if name in specs else ():
            if other in wanted:
                place(other)
        ordered.append(name)

    for spec in config.apps:
        if spec.name in wanted:
            place(spec.name)
    ordered += [n for n in names if n not in placed]
    return ordered


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _missing(root: Path, path: str, what: str, file: str, line: int | None) -> list[ConfigError]:
    if (root / path).exists():
        if what == "app path" and not (root / path).is_dir():
            return [ConfigError(MSG_PATH_NOT_DIR.format(path=path), file=file, line=line)]
        return []
    message = MSG_PATH_MISSING if what == "app path" else MSG_VALUES_MISSING
    return [ConfigError(message.format(path=path), file=file, line=line)]


def _check_path(
    value: str,
    what: str,
    where: tuple[Any, ...],
    lines: _Lines,
    file: str,
    problems: list[ConfigError],
    *,
    allow_parent: bool = False,
) -> str | None:
    """A normalised relative POSIX path, or None after recording why it is refused.

    ``allow_parent`` permits '..' for paths relative to an app (the caller checks the result
    stays inside the repository)."""
    line = lines.line(where)
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        problems.append(
            ConfigError(MSG_ABSOLUTE.format(what=what, path=value), file=file, line=line)
        )
        return None
    parts = value.replace("\\", "/").split("/")
    if ".." in parts and not allow_parent:
        problems.append(ConfigError(MSG_DOTDOT.format(what=what, path=value), file=file, line=line))
        return None
    return "/".join(parts) if allow_parent else posixpath.normpath("/".join(parts))


def _schema_errors(data: Any) -> Iterator[jsonschema.ValidationError]:
    validator = jsonschema.Draft202012Validator(schema())
    yield from validator.iter_errors(data)


def _where(path: tuple[Any, ...]) -> str:
    if not path:
        return "the top level"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_problem(err: jsonschema.ValidationError, lines: _Lines, file: str) -> list[ConfigError]:
    path = tuple(err.absolute_path)
    where = _where(path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {})) if isinstance(err.schema, dict) else []
        out = []
        for key in err.instance:
            if key in allowed:
                continue
            if not path and key == "deployBranch":
                # removed: nothing honoured it (the intake cannot read this file)
                out.append(ConfigError(MSG_DEPLOY_BRANCH, file=file, line=lines.key_line((key,))))
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; allowed keys: {', '.join(allowed)}"
            )
            out.append(
                ConfigError(
                    MSG_UNKNOWN_KEY.format(key=key, where=where, hint=hint),
                    file=file,
                    line=lines.key_line((*path, key)),
                )
            )
        return out
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in (err.instance or {})]
        # a `then` branch: the key is required because of another one (createNamespace)
        why = MSG_REQUIRED_BY_IF.format(rule=_condition()) if "then" in err.schema_path else ""
        return [
            ConfigError(
                MSG_MISSING_KEY.format(where=where, key=k) + why, file=file, line=lines.line(path)
            )
            for k in missing
        ]
    # The schema carries the fixes (VS Code's and the YAML language server's extensions), so
    # editors and the bot word a refused value the same way.
    subschema = err.schema if isinstance(err.schema, dict) else {}
    hint = str(subschema.get("errorMessage", ""))
    message = err.message
    if err.validator == "pattern":
        message = f"{err.instance!r} is not allowed"
        hint = str(subschema.get("patternErrorMessage", hint))
    return [
        ConfigError(
            f"{where}: {message}" + (f" ({hint})" if hint else ""),
            file=file,
            line=lines.line(path),
        )
    ]


def _condition() -> str:
    """``key: value`` of the app's ``if`` (the one conditional rule: createNamespace needs a
    namespace), as the reason a ``then`` branch requires a key."""
    condition = schema()["$defs"]["app"].get("if", {}).get("properties", {})
    return ", ".join(f"{key}: {json.dumps(rule.get('const'))}" for key, rule in condition.items())


class _Lines:
    """Maps a path of keys/indexes in the parsed config to a 1-based line of the file."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def _walk(self, path: tuple[Any, ...]) -> tuple[yaml.Node | None, yaml.Node | None]:
        """(key node, value node) of the deepest reachable element of ``path``."""
        node, key_node = self.node, None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        key_node, node = k, v
                        break
                else:
                    return key_node, node
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return key_node, node
                key_node, node = None, node.value[part]
            else:
                return key_node, node
        return key_node, node

    def line(self, path: tuple[Any, ...]) -> int | None:
        _, node = self._walk(path)
        return node.start_mark.line + 1 if node is not None else None

    def key_line(self, path: tuple[Any, ...]) -> int | None:
        key, node = self._walk(path)
        target = key or node
        return target.start_mark.line + 1 if target is not None else None
