"""Where ``/setup/github-app`` keeps a new GitHub App's credentials, and how the bot tells an App
was set up that way.

``GITOPS_GITHUB_APP_STORE`` says where (:class:`Store`):

* ``file`` (default): ``GITOPS_DATA_DIR/github-app/`` (mode 0700) with ``private-key.pem`` and
  ``github-app.env`` (mode 0600 each, created exclusively: an existing App is never
  overwritten). The env file sets ``GITHUB_APP_ID``, ``GITHUB_APP_PRIVATE_KEY_FILE`` and
  ``GITHUB_WEBHOOK_SECRET`` (and ``GITHUB_API_URL`` off github.com); load it into the bot's
  environment (``set -a; . github-app.env; set +a``, systemd's ``EnvironmentFile=``, ``docker
  run --env-file``).
* ``secret:<namespace>/<name>``: a Kubernetes Secret with the keys ``GITHUB_APP_ID``,
  ``GITHUB_APP_PRIVATE_KEY`` and ``GITHUB_WEBHOOK_SECRET`` (for ``envFrom``), created (never
  replaced) through the default kubeconfig or the pod's service account
  (:mod:`bot.cluster.secrets`).

Nothing here prints a value: callers get paths and names to show.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import PermanentError
from bot.forges.app_manifest import CreatedApp
from bot.settings import APP_STORE_SECRET, Settings

DEFAULT_API_URL = "https://api.github.com"
DIRECTORY = "github-app"
ENV_FILE = "github-app.env"
KEY_FILE = "private-key.pem"
_PLAIN = re.compile(r"^[A-Za-z0-9_./+=:@-]+$")


class StoreError(PermanentError):
    """The credentials could not be written; the message says where and why (no value)."""


@dataclass(frozen=True)
class Store:
    """Where the credentials go: ``kind`` ``file`` (in ``data_dir``) or ``secret``."""

    kind: str
    data_dir: Path
    namespace: str = ""
    name: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls.from_setting(settings.github_app_store, data_dir=settings.data_dir)

    @classmethod
    def from_setting(cls, value: str, *, data_dir: Path) -> Store:
        match = APP_STORE_SECRET.match(value)
        if match:
            return cls("secret", data_dir, namespace=match.group(1), name=match.group(3))
        return cls("file", data_dir)

    @property
    def directory(self) -> Path:
        return self.data_dir / DIRECTORY

    @property
    def env_file(self) -> Path:
        return self.directory / ENV_FILE

    @property
    def key_file(self) -> Path:
        return self.directory / KEY_FILE

    def describe(self) -> str:
        if self.kind == "secret":
            return f"Kubernetes Secret {self.namespace}/{self.name}"
        return f"{self.directory.resolve()}/"

    def holds_app(self) -> bool:
        """Whether an App was already stored here (the setup page is then gone)."""
        if self.kind == "secret":
            from bot.cluster.secrets import KubeError, secret_exists

            try:
                return secret_exists(self.namespace, self.name)
            except KubeError as exc:
                raise StoreError(f"cannot read {self.describe()}: {exc.message}") from None
        return self.env_file.exists()

    def write(self, app: CreatedApp, *, api_url: str) -> None:
        """Store ``app``'s id, key and webhook secret; raises :class:`StoreError`."""
        if self.kind == "secret":
            from bot.cluster.secrets import create_secret

            values = {
                "GITHUB_APP_ID": str(app.id),
                "GITHUB_APP_PRIVATE_KEY": app.pem,
                "GITHUB_WEBHOOK_SECRET": app.webhook_secret,
            }
            if api_url.rstrip("/") != DEFAULT_API_URL:
                values["GITHUB_API_URL"] = api_url
            from bot.cluster.secrets import ConflictError, KubeError

            try:
                create_secret(
                    self.namespace,
                    self.name,
                    values,
                    annotations={"gitops-bot.io/github-app": f"{app.slug} ({app.id})"},
                )
            except ConflictError:
                raise StoreError(
                    f"{self.describe()} already exists; the new App was not written (delete "
                    "it on GitHub, or delete the Secret and start again)"
                ) from None
            except KubeError as exc:
                raise StoreError(f"cannot create {self.describe()}: {exc.message}") from None
            return
        self._write_files(app, api_url=api_url)

    def _write_files(self, app: CreatedApp, *, api_url: str) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            key = self.key_file.resolve()
            _create(self.key_file, app.pem if app.pem.endswith("\n") else app.pem + "\n")
            lines = [
                f"# GitHub App {app.slug} (id {app.id}, owner {app.owner or '?'}), created by "
                f"gitops-bot's /setup/github-app on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
                "# Holds a secret: keep this file mode 0600. Load it into the bot's environment.",
                f"GITHUB_APP_ID={app.id}",
                f"GITHUB_APP_PRIVATE_KEY_FILE={_quoted(str(key))}",
                f"GITHUB_WEBHOOK_SECRET={_quoted(app.webhook_secret)}",
            ]
            if api_url.rstrip("/") != DEFAULT_API_URL:
                lines.append(f"GITHUB_API_URL={_quoted(api_url)}")
            try:
                _create(self.env_file, "\n".join(lines) + "\n")
            except OSError:
                self.key_file.unlink(missing_ok=True)
                raise
        except FileExistsError:
            raise StoreError(
                f"{self.directory} already holds a GitHub App; the new one was not written "
                "(delete it on GitHub, or move the old files away and start again)"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot write to {self.directory}: {exc.strerror}") from None


def _create(path: Path, text: str) -> None:
    """Write ``text`` to a new file readable by its owner only (never an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _quoted(value: str) -> str:
    """As a shell (and systemd) reads it; plain when that needs no quotes (``docker
    --env-file`` keeps quotes literally)."""
    return value if _PLAIN.match(value) else shlex.quote(value)
