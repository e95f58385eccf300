"""The intake answers "ignored" with the reason for repositories outside GITOPS_REPOSITORIES and
for deliveries naming another GitHub than GITHUB_API_URL, and queues nothing for them."""

from __future__ import annotations

import logging

import pytest

from tests.test_app import github, make_client

PR = "pull_request__opened"


def test_a_served_repository_is_queued(redis_url: str) -> None:
    client = make_client(redis_url, GITOPS_REPOSITORIES="acme-platform/*")
    status, body = github(client, PR)
    assert (status, body["action"]) == (202, "queued")


def test_a_repository_outside_gitops_repositories_is_ignored(redis_url: str) -> None:
    client = make_client(redis_url, GITOPS_REPOSITORIES="other/*,tools/ci")
    status, body = github(client, PR)
    assert (status, body["action"]) == (200, "ignored")
    assert body["reason"] == (
        "repository acme-platform/deploy-config is not served by this bot "
        "(GITOPS_REPOSITORIES: other/*,tools/ci)"
    )
    assert b'gitops_jobs_queued_total{job="preview"} 1' not in client.get("/metrics").data


def test_a_delivery_naming_another_github_is_ignored_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = make_client(redis_url, GITHUB_API_URL="https://ghe.example.com/api/v3")
    status, body = github(client, PR)
    assert (status, body["action"]) == (200, "ignored")
    assert "https://api.github.com" in body["reason"]
    assert "GITHUB_API_URL" in body["reason"] and "no credential is sent there" in body["reason"]
    assert "ignored github delivery" in caplog.text
