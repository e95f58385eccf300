"""The manifest engine: from a commit of a Git repository to validated objects per app.

Pure apart from reading the checkout and running ``git``, ``kubectl kustomize`` and
``helm template``; no cluster, no forge. The public API (re-exported here):

* :func:`load_config` -- ``.gitops.yaml`` (JSON Schema in ``gitops.schema.json``) or discovery,
  giving a :class:`RepoConfig` of :class:`AppSpec` s; errors name file and line.
* :func:`render_app` / :func:`render_apps` -- each app as a :class:`RenderedApp`: its
  :class:`bot.model.Manifest` s (namespace filled for namespaced kinds from the app's
  namespace, else ``"default"``; removed for cluster-scoped kinds), per-object errors, notes
  and the files it read; an object two apps declare on one target is an error of both.
  :func:`render_with_neighbours` also returns every other app rendered on the same targets
  (what the cluster engine's ``Declarations`` are built from).
* :func:`changed_files`, :func:`affected_apps`, :func:`select_apps` -- which apps a change
  touches, and which changed files no app reads.
* :func:`checkout`, :func:`resolve_commit` -- a temporary tree of one commit.

The diff of two commits per app (offline and live) is :mod:`bot.jobs.compare`'s.
"""

from bot.errors import ConfigError, RenderError
from bot.manifests.changes import Selection, affected_apps, app_inputs, select_apps
from bot.manifests.config import (
    CONFIG_FILE,
    AppSpec,
    ConfigProblems,
    RenderOptions,
    RepoConfig,
    config_errors,
    load_config,
    parse_config,
    schema,
)
from bot.manifests.gitrepo import GitError, changed_files, checkout, checkouts, resolve_commit
from bot.manifests.loader import Limits
from bot.manifests.render import (
    RenderedApp,
    Rendering,
    detect_renderer,
    kubectl_path,
    render_app,
    render_apps,
    render_with_neighbours,
)
from bot.manifests.validate import DEFAULT_NAMESPACE, KUBE_VERSION, validate_objects

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_NAMESPACE",
    "KUBE_VERSION",
    "AppSpec",
    "ConfigError",
    "ConfigProblems",
    "GitError",
    "Limits",
    "RenderError",
    "RenderOptions",
    "RenderedApp",
    "Rendering",
    "RepoConfig",
    "Selection",
    "affected_apps",
    "app_inputs",
    "changed_files",
    "checkout",
    "checkouts",
    "config_errors",
    "detect_renderer",
    "kubectl_path",
    "load_config",
    "parse_config",
    "render_app",
    "render_apps",
    "render_with_neighbours",
    "resolve_commit",
    "schema",
    "select_apps",
    "validate_objects",
]
