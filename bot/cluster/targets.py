"""Deploy targets: which cluster an app goes to and what the bot may touch there.

``GITOPS_CLUSTERS_FILE`` names a YAML file (schema: :data:`CLUSTERS_SCHEMA`, documented in
docs/clusters.md)::

    targets:
      production:
        kubeconfig: /etc/gitops/prod.kubeconfig   # relative paths: to the clusters file
        context: prod-admin                       # default: the kubeconfig's current context
        namespaces: [web, api]                    # optional allowlist
        cluster_scoped: false                     # default: true without an allowlist
        repositories: [acme/prod-*]               # optional: who may preview and deploy here
      staging:
        in_cluster: true                          # the pod's service account

Without the setting there is one target, ``default``: ``$KUBECONFIG`` (or ~/.kube/config) and
its current context, or the in-cluster service account when no kubeconfig exists. An app naming
any other target is an error for that app — never a fallback to some other cluster.

``repositories`` (``owner/name`` globs as in ``GITOPS_REPOSITORIES``; default: every repository
the bot serves) says which repositories may preview against and deploy to a target: a bot
installed on a whole organisation must not let any repository in it name the production
cluster. A repository naming a target it may not use gets :meth:`Target.repository_refusal`'s
message in its report, and nothing is sent to that cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

from bot.cluster.errors import NotAllowedError, TargetError, UnknownTargetError
from bot.forges.policy import RepositoryFilter

DEFAULT_TARGET = "default"

UNKNOWN_TARGET = "unknown target {name!r}: configured targets are {known}"
NAMESPACE_NOT_ALLOWED = (
    "namespace {namespace!r} is not allowed on target {target!r} (allowed: {allowed})"
)
REPOSITORY_NOT_ALLOWED = (
    "repository {repository} may not use target {target!r}: the clusters file allows only "
    "{allowed} there"
)
CLUSTER_SCOPED_NOT_ALLOWED = (
    "{ref} is cluster-scoped and target {target!r} does not allow cluster-scoped objects "
    "(set cluster_scoped: true for it in the clusters file)"
)

CLUSTERS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "gitops-bot clusters file",
    "type": "object",
    "required": ["targets"],
    "additionalProperties": False,
    "properties": {
        "targets": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "kubeconfig": {"type": "string", "minLength": 1},
                    "context": {"type": "string", "minLength": 1},
                    "in_cluster": {"type": "boolean"},
                    "namespaces": {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "uniqueItems": True,
                    },
                    "cluster_scoped": {"type": "boolean"},
                    "repositories": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "minLength": 1,
                            "pattern": "^(?!/)(?!.*//)(?!.*/$).+$",
                        },
                        "uniqueItems": True,
                    },
                },
                "not": {
                    "required": ["in_cluster", "kubeconfig"],
                    "properties": {"in_cluster": {"const": True}},
                },
            },
        }
    },
}


@dataclass(frozen=True)
class Target:
    """One named cluster and the bot's allowlist on it.

    ``kubeconfig`` None and ``in_cluster`` False means: the default kubeconfig loading rules
    (``$KUBECONFIG``, then ~/.kube/config, then the in-cluster service account)."""

    name: str
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False
    namespaces: frozenset[str] | None = None  # None: every namespace
    cluster_scoped: bool = True
    repositories: tuple[str, ...] | None = None  # None: every repository the bot serves

    def repository_refusal(self, repository: str) -> str | None:
        """Why ``repository`` (``owner/name``) may not preview against or deploy to this
        target, or None when it may."""
        if self.repositories is None or RepositoryFilter(self.repositories).allows(repository):
            return None
        return REPOSITORY_NOT_ALLOWED.format(
            repository=repository, target=self.name, allowed=", ".join(self.repositories)
        )

    def namespace_allowed(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def check(self, *, kind: str, namespace: str | None, name: str, label: str) -> None:
        """Raise :class:`NotAllowedError` when the object lies outside the allowlist.

        ``namespace`` None means cluster-scoped. A Namespace named in the allowlist is allowed
        even when other cluster-scoped objects are not: creating an allowed namespace is part
        of deploying into it."""
        if namespace is not None:
            if not self.namespace_allowed(namespace):
                raise NotAllowedError(
                    NAMESPACE_NOT_ALLOWED.format(
                        namespace=namespace, target=self.name, allowed=self._allowed()
                    )
                )
            return
        if kind == "Namespace" and self.namespaces is not None:
            if name in self.namespaces:
                return
            raise NotAllowedError(
                NAMESPACE_NOT_ALLOWED.format(
                    namespace=name, target=self.name, allowed=self._allowed()
                )
            )
        if not self.cluster_scoped:
            raise NotAllowedError(CLUSTER_SCOPED_NOT_ALLOWED.format(ref=label, target=self.name))

    def _allowed(self) -> str:
        return ", ".join(sorted(self.namespaces or ())) or "none"


class Targets(Mapping[str, Target]):
    """The configured targets by name; ``targets[name]`` raises :class:`TargetError`."""

    def __init__(self, targets: Mapping[str, Target]) -> None:
        self._targets = dict(targets)

    def __getitem__(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            raise UnknownTargetError(
                UNKNOWN_TARGET.format(name=name, known=", ".join(sorted(self._targets)) or "none")
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    @classmethod
    def default(cls) -> Targets:
        """The single ``default`` target (current kubeconfig context or in-cluster)."""
        return cls({DEFAULT_TARGET: Target(name=DEFAULT_TARGET)})

    @classmethod
    def single(cls, name: str, *, kubeconfig: Path | None, context: str | None) -> Targets:
        """One target under ``name`` (the CLI's ``--kubeconfig``: every app goes there)."""
        return cls({name: Target(name=name, kubeconfig=kubeconfig, context=context)})

    @classmethod
    def from_settings(cls, clusters_file: Path | None) -> Targets:
        """The targets of ``GITOPS_CLUSTERS_FILE``, or the default target when it is unset."""
        if clusters_file is None:
            return cls.default()
        try:
            text = Path(clusters_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise TargetError(f"{clusters_file}: cannot read the clusters file: {exc}") from exc
        return cls.parse(text, source=Path(clusters_file))

    @classmethod
    def parse(cls, text: str, *, source: Path) -> Targets:
        """Parse and validate a clusters file's text; relative kubeconfig paths are resolved
        against the file's directory."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TargetError(f"{source}: not valid YAML: {exc}") from exc
        validator = jsonschema.Draft202012Validator(CLUSTERS_SCHEMA)
        problems = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if problems:
            lines = []
            for problem in problems:
                where = ".".join(str(p) for p in problem.absolute_path) or "(top level)"
                message = problem.message
                if problem.validator == "not":
                    message = "in_cluster: true and kubeconfig are mutually exclusive"
                lines.append(f"{where}: {message}")
            raise TargetError(f"{source}: invalid clusters file:\n  " + "\n  ".join(lines))
        targets: dict[str, Target] = {}
        for name, raw in data["targets"].items():
            kubeconfig = None
            if raw.get("kubeconfig"):
                kubeconfig = Path(os.path.expanduser(raw["kubeconfig"]))
                if not kubeconfig.is_absolute():
                    kubeconfig = source.parent / kubeconfig
            namespaces = raw.get("namespaces")
            repositories = raw.get("repositories")
            targets[name] = Target(
                name=name,
                kubeconfig=kubeconfig,
                context=raw.get("context"),
                in_cluster=bool(raw.get("in_cluster", False)),
                namespaces=frozenset(namespaces) if namespaces is not None else None,
                cluster_scoped=bool(raw.get("cluster_scoped", namespaces is None)),
                repositories=tuple(repositories) if repositories is not None else None,
            )
        return cls(targets)
