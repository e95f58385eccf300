"""The web process end to end with a real Redis: what each delivery gets answered and queued."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from bot.app import create_app
from bot.queue import JOB_KEY, count_restart, record_heartbeat
from bot.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
GITHUB_SECRET = "gh-secret"
GITLAB_SECRET = "gl-secret"


def make_client(redis_url: str, **overrides: Any) -> FlaskClient:
    env = {
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        "GITLAB_WEBHOOK_SECRET": GITLAB_SECRET,
        # The self-managed GitLab the captured fixtures come from.
        "GITLAB_URL": "https://git.example.com/gitlab",
        "REDIS_URL": redis_url,
        "GITOPS_REDIS_TIMEOUT": "0.5",
    }
    env.update(overrides)
    return create_app(Settings.from_env(env)).test_client()


@pytest.fixture
def client(redis_url: str) -> FlaskClient:
    return make_client(redis_url)


def github(
    client: FlaskClient,
    fixture: str,
    *,
    delivery: str = "gh-delivery-1",
    secret: str = GITHUB_SECRET,
    form: bool = False,
) -> tuple[int, dict[str, Any]]:
    event = fixture.split("__")[0]
    raw = (FIXTURES / "github" / f"{fixture}.json").read_bytes()
    if form:
        body = urllib.parse.urlencode({"payload": raw.decode()}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body, content_type = raw, "application/json"
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
            "Content-Type": content_type,
        },
    )
    return response.status_code, response.get_json()


GITLAB_EVENTS = {
    "merge_request": "Merge Request Hook",
    "note": "Note Hook",
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "pipeline": "Pipeline Hook",
}


def gitlab(
    client: FlaskClient, fixture: str, *, key: str = "gl-1", token: str = GITLAB_SECRET
) -> tuple[int, dict[str, Any]]:
    body = (FIXTURES / "gitlab" / f"{fixture}.json").read_bytes()
    response = client.post(
        "/webhooks/gitlab",
        data=body,
        headers={
            "X-Gitlab-Event": GITLAB_EVENTS[fixture.split("__")[0]],
            "X-Gitlab-Token": token,
            "Idempotency-Key": key,
            "X-Gitlab-Event-UUID": "uuid-" + key,
            "Content-Type": "application/json",
        },
    )
    return response.status_code, response.get_json()


def queued_count(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    return int(client.llen("previews")) + int(client.llen("deploys"))


def test_pull_request_synchronize_queues_a_preview(client: FlaskClient, redis_url: str) -> None:
    status, body = github(client, "pull_request__synchronize")
    assert status == 202
    assert body["action"] == "queued" and body["job"] == "preview"
    assert body["delivery"] == "gh-delivery-1"
    record = redis.Redis.from_url(redis_url).hgetall(JOB_KEY.format(job_id=body["job_id"]))
    assert record[b"state"] == b"queued"


def test_form_encoded_delivery_is_accepted(client: FlaskClient) -> None:
    assert github(client, "pull_request__opened", form=True)[1]["action"] == "queued"


def test_redelivery_answers_with_the_original_job(client: FlaskClient, redis_url: str) -> None:
    _, first = github(client, "pull_request__synchronize", delivery="same")
    status, again = github(client, "pull_request__synchronize", delivery="same")
    assert status == 200
    assert again == {
        "delivery": "same",
        "action": "duplicate",
        "job": "preview",
        "job_id": first["job_id"],
    }
    assert queued_count(redis_url) == 1


def test_gitlab_idempotency_key_survives_retries(client: FlaskClient, redis_url: str) -> None:
    _, first = gitlab(client, "merge_request__update_new_commits", key="k1")
    assert first["action"] == "queued" and first["job"] == "preview"
    _, again = gitlab(client, "merge_request__update_new_commits", key="k1")
    assert again["action"] == "duplicate" and again["job_id"] == first["job_id"]
    assert queued_count(redis_url) == 1


def test_push_to_default_branch_queues_a_deploy(client: FlaskClient, redis_url: str) -> None:
    assert github(client, "push__default_branch")[1]["job"] == "deploy"
    assert redis.Redis.from_url(redis_url).llen("deploys") == 1


def test_sync_comment_queues_a_command(client: FlaskClient) -> None:
    assert github(client, "issue_comment__created_sync")[1]["job"] == "command"


def test_ignored_delivery_says_why(client: FlaskClient, redis_url: str) -> None:
    status, body = github(client, "pull_request__labeled")
    assert status == 200 and body["action"] == "ignored"
    assert "labeled" in body["reason"]
    assert queued_count(redis_url) == 0


def test_ping_is_answered(client: FlaskClient) -> None:
    assert github(client, "ping__default") == (200, {"delivery": "gh-delivery-1", "action": "pong"})


def test_bad_signature_is_401_and_queues_nothing(client: FlaskClient, redis_url: str) -> None:
    status, body = github(client, "pull_request__synchronize", secret="wrong")
    assert status == 401 and body["action"] == "rejected"
    assert queued_count(redis_url) == 0
    status, _ = gitlab(client, "merge_request__open", token="wrong")
    assert status == 401
    assert queued_count(redis_url) == 0


def test_missing_event_header_is_400(client: FlaskClient) -> None:
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), b"{}", hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/github",
        data=b"{}",
        headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["action"] == "rejected"


def test_invalid_json_is_400_naming_the_problem(client: FlaskClient) -> None:
    body = b"{not json"
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "x",
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400
    assert "JSON" in response.get_json()["error"]


def test_too_large_body_is_413_without_reading_it(redis_url: str) -> None:
    client = make_client(redis_url, GITOPS_MAX_BODY_BYTES="1000")
    response = client.post(
        "/webhooks/github",
        data=b"x" * 5000,
        headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "1000 bytes" in response.get_json()["error"]


def test_unconfigured_provider_is_404_naming_the_setting(redis_url: str) -> None:
    env = {"GITHUB_WEBHOOK_SECRET": "x", "REDIS_URL": redis_url}
    client = create_app(Settings.from_env(env)).test_client()
    response = client.post("/webhooks/gitlab", data=b"{}", headers={"X-Gitlab-Event": "Push Hook"})
    assert response.status_code == 404
    assert "GITLAB_WEBHOOK_SECRET" in response.get_json()["error"]


def test_redis_down_answers_503_so_the_forge_redelivers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(f"redis://127.0.0.1:{port}/0")
    status, body = github(client, "pull_request__synchronize")
    assert status == 503 and body["action"] == "failed"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_readyz_when_redis_answers(client: FlaskClient) -> None:
    assert client.get("/readyz?exclude=workers").get_json() == {"status": "ready"}


def test_metrics_count_deliveries_and_jobs(client: FlaskClient) -> None:
    github(client, "pull_request__synchronize", delivery="m1")
    github(client, "pull_request__synchronize", delivery="m1")
    github(client, "pull_request__labeled", delivery="m2")
    github(client, "pull_request__synchronize", delivery="m3", secret="bad")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gitops_webhooks_received_total{event="pull_request",provider="github"} 4.0' in text
    assert 'gitops_jobs_queued_total{job="preview"} 1.0' in text
    assert 'gitops_webhooks_duplicate_total{event="pull_request",provider="github"} 1.0' in text
    assert 'gitops_webhooks_ignored_total{event="pull_request",provider="github"} 1.0' in text
    assert (
        'gitops_webhooks_rejected_total{event="pull_request",provider="github",status="401"} 1.0'
        in text
    )
    assert 'gitops_queue_depth{queue="previews"} 1.0' in text
    assert "gitops_queue_up 1.0" in text
    assert 'gitops_queue_workers{queue="deploys"} 0.0' in text


def test_metrics_count_process_restarts(client: FlaskClient, redis_url: str) -> None:
    count_restart(redis.Redis.from_url(redis_url), "redis")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gitops_process_restarts_total{process="redis"} 1.0' in text


def test_unknown_event_names_do_not_grow_the_metrics(client: FlaskClient) -> None:
    for n in range(3):
        client.post("/webhooks/github", data=b"{}", headers={"X-GitHub-Event": f"junk{n}"})
    text = client.get("/metrics").get_data(as_text=True)
    assert "junk" not in text
    assert 'event="other"' in text


def test_every_answer_is_json(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.is_json
    response = client.get("/webhooks/github")
    assert response.status_code == 405 and response.is_json


def test_event_payload_in_queue_is_plain_values(client: FlaskClient, redis_url: str) -> None:
    import base64

    github(client, "pull_request__synchronize")
    raw = redis.Redis.from_url(redis_url).lindex("previews", 0)
    assert raw is not None
    args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
    event = args[0]
    assert event["type"] == "PullRequestEvent"
    assert GITHUB_SECRET not in json.dumps(args)


def test_a_chunked_body_over_the_limit_is_413(redis_url: str) -> None:
    """No Content-Length to refuse up front: the body is read up to the limit, no further."""
    import io

    client = make_client(redis_url, GITOPS_MAX_BODY_BYTES="1000")
    stream = io.BytesIO(b"x" * 5000)
    response = client.post(
        "/webhooks/github",
        input_stream=stream,
        headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json()["action"] == "rejected"
    assert stream.tell() <= 1001


def test_readyz_names_a_queue_no_worker_consumes(client: FlaskClient, redis_url: str) -> None:
    """Merges would queue and never deploy: not ready, saying which queue lacks a worker."""
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["workers"] == {"deploys": 0, "previews": 0}
    assert "deploys or previews" in response.get_json()["error"]
    # A web process that must take deliveries while the workers are away asks for less.
    assert client.get("/readyz?exclude=workers").get_json() == {"status": "ready"}
    redis_store = redis.Redis.from_url(redis_url)
    record_heartbeat(redis_store, worker="previews@host", queues=["previews"], ttl=60)
    response = client.get("/readyz")
    assert (
        response.status_code == 503 and "no worker consumes deploys" in response.get_json()["error"]
    )
    record_heartbeat(redis_store, worker="deploys@host", queues=["deploys"], ttl=60)
    assert client.get("/readyz").get_json() == {
        "status": "ready",
        "workers": {"deploys": 1, "previews": 1},
    }
