"""pytest plugin: a session-wide kube emulator, reset before each test, and a kubeconfig for it.

Enable with ``pytest_plugins = ["tests.kube_emulator.fixture"]``. Fixtures:

- ``kube_emulator``: the running ``EmulatorServer`` (session-scoped server, fresh cluster per test).
- ``kubeconfig``: path (str) of an admin kubeconfig for it in ``tmp_path``. When the environment
  variable ``GITOPS_TEST_KUBECONFIG`` is set, that path is returned instead, so tests written
  against this fixture can run against a real cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from . import EmulatorServer

REAL_CLUSTER_ENV = "GITOPS_TEST_KUBECONFIG"


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
