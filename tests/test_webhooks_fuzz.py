"""Property tests: whatever a sender puts in headers and body, ``handle_github`` and
``handle_gitlab`` return an ``Outcome`` or raise ``WebhookError`` with status 400, 401 or 413,
never anything else (which would be a 500).

Real fixtures are mutated at random paths (values replaced by random JSON, keys deleted), and
random bodies and headers are thrown at both handlers. ``max_examples`` stays modest so the suite
stays fast; set ``WEBHOOK_FUZZ_EXAMPLES`` (e.g. 20000) to hunt harder locally.
"""

from __future__ import annotations

import copy
import json
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.events import Event
from bot.webhooks import IntakeOptions, Outcome, WebhookError, handle_github, handle_gitlab
from bot.webhooks.github import sign

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
GITHUB_SECRET = "fuzz-github-secret"
GITLAB_SECRET = "fuzz-gitlab-token"
GITLAB_EVENTS = {
    "merge_request": "Merge Request Hook",
    "note": "Note Hook",
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "pipeline": "Pipeline Hook",
}
FUZZ = settings(
    # WEBHOOK_FUZZ_EXAMPLES=20000 hunts harder locally; the suite keeps a fast default.
    max_examples=int(os.environ.get("WEBHOOK_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Path_ = tuple[str | int, ...]


def _fixtures(provider: str) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((FIXTURES / provider).glob("*.json"))}


GITHUB = _fixtures("github")
GITLAB = _fixtures("gitlab")


def _paths(value: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Every key/index path inside a JSON value."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


PATHS = {name: list(_paths(payload)) for name, payload in {**GITHUB, **GITLAB}.items()}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.sampled_from(["", "0" * 40, "main", "refs/heads/main", "/sync web", "https://x", "Bot"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


def _set(payload: Any, path: Path_, value: Any) -> None:
    node = payload
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _delete(payload: Any, path: Path_) -> None:
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def _check(call: Callable[[], Outcome]) -> None:
    """The property: an Outcome, or a WebhookError with a client status and a message."""
    try:
        outcome = call()
    except WebhookError as error:
        assert error.status in (400, 401, 413)
        assert error.message
        error.message.encode("utf-8")  # printable in a JSON answer and a log line
        return
    assert isinstance(outcome, Outcome)
    assert outcome.event is None or isinstance(outcome.event, Event)
    assert outcome.reason
    outcome.reason.encode("utf-8")
    if outcome.event is not None:
        # What goes to the queue must survive JSON.
        json.dumps(outcome.event.to_task()).encode("utf-8")


def _github(payload: Any, name: str, options: IntakeOptions, *, form: bool = False) -> Outcome:
    text = json.dumps(payload)
    if form:
        body = urllib.parse.urlencode({"payload": text}).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = text.encode()
        content_type = "application/json"
    headers = {
        "X-GitHub-Event": name.split("__")[0],
        "X-GitHub-Delivery": "fuzz-delivery",
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
        "Content-Type": content_type,
    }
    return handle_github(headers=headers, body=body, secret=GITHUB_SECRET, options=options)


def _gitlab(payload: Any, name: str, options: IntakeOptions) -> Outcome:
    headers = {
        "X-Gitlab-Event": GITLAB_EVENTS[name.split("__")[0]],
        "X-Gitlab-Token": GITLAB_SECRET,
        "Content-Type": "application/json",
    }
    body = json.dumps(payload).encode()
    return handle_gitlab(headers=headers, body=body, secret=GITLAB_SECRET, options=options)


options_strategy = st.builds(
    IntakeOptions,
    preview_drafts=st.booleans(),
    bot_logins=st.frozensets(st.sampled_from(["octocat", "jsmith", "renovate[bot]"]), max_size=2),
)


@st.composite
def mutated(draw: st.DrawFn, fixtures: dict[str, dict[str, Any]]) -> tuple[str, Any]:
    """A fixture with 1-3 random paths replaced by random JSON or deleted."""
    name = draw(st.sampled_from(sorted(fixtures)))
    payload = copy.deepcopy(fixtures[name])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = list(_paths(payload))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            _set(payload, path, draw(json_values))
        else:
            _delete(payload, path)
    return name, payload


@FUZZ
@given(case=mutated(GITHUB), options=options_strategy, form=st.booleans())
def test_github_mutated_fixtures(case: tuple[str, Any], options: IntakeOptions, form: bool) -> None:
    name, payload = case
    _check(lambda: _github(payload, name, options, form=form))


@FUZZ
@given(case=mutated(GITLAB), options=options_strategy)
def test_gitlab_mutated_fixtures(case: tuple[str, Any], options: IntakeOptions) -> None:
    name, payload = case
    _check(lambda: _gitlab(payload, name, options))


@FUZZ
@given(name=st.sampled_from(sorted(GITHUB)), value=json_values)
def test_github_fixture_replaced_wholesale(name: str, value: Any) -> None:
    _check(lambda: _github(value, name, IntakeOptions()))


@FUZZ
@given(name=st.sampled_from(sorted(GITLAB)), value=json_values)
def test_gitlab_fixture_replaced_wholesale(name: str, value: Any) -> None:
    _check(lambda: _gitlab(value, name, IntakeOptions()))


@FUZZ
@given(
    body=st.binary(max_size=2000),
    event=st.sampled_from(["pull_request", "issue_comment", "push", "ping", "x"]),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]
    ),
)
def test_github_random_signed_bodies(body: bytes, event: str, content_type: str) -> None:
    headers = {
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
        "Content-Type": content_type,
    }
    _check(
        lambda: handle_github(
            headers=headers, body=body, secret=GITHUB_SECRET, options=IntakeOptions()
        )
    )


@FUZZ
@given(
    body=st.binary(max_size=2000),
    event=st.sampled_from([*GITLAB_EVENTS.values(), "System Hook", "x"]),
)
def test_gitlab_random_bodies(body: bytes, event: str) -> None:
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Token": GITLAB_SECRET}
    _check(
        lambda: handle_gitlab(
            headers=headers, body=body, secret=GITLAB_SECRET, options=IntakeOptions()
        )
    )


header_names = st.sampled_from(
    [
        "X-GitHub-Event",
        "X-GitHub-Delivery",
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "Content-Type",
        "X-Gitlab-Event",
        "X-Gitlab-Token",
        "Idempotency-Key",
        "X-Gitlab-Event-UUID",
    ]
) | st.text(max_size=20)


@FUZZ
@given(
    headers=st.dictionaries(header_names, st.text(max_size=80), max_size=8),
    name=st.sampled_from(sorted(GITHUB)),
    secret=st.sampled_from(["", GITHUB_SECRET]),
)
def test_github_random_headers(headers: dict[str, str], name: str, secret: str) -> None:
    body = json.dumps(GITHUB[name]).encode()
    _check(
        lambda: handle_github(headers=headers, body=body, secret=secret, options=IntakeOptions())
    )


@FUZZ
@given(
    headers=st.dictionaries(header_names, st.text(max_size=80), max_size=8),
    name=st.sampled_from(sorted(GITHUB)),
)
def test_github_random_extra_headers_on_a_signed_delivery(
    headers: dict[str, str], name: str
) -> None:
    body = json.dumps(GITHUB[name]).encode()
    signed = {
        "X-GitHub-Event": name.split("__")[0],
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
        "Content-Type": "application/json",
    }
    merged = {**headers, **signed} if len(headers) % 2 else {**signed, **headers}
    _check(
        lambda: handle_github(
            headers=merged, body=body, secret=GITHUB_SECRET, options=IntakeOptions()
        )
    )


@FUZZ
@given(
    headers=st.dictionaries(header_names, st.text(max_size=80), max_size=8),
    name=st.sampled_from(sorted(GITLAB)),
    with_token=st.booleans(),
)
def test_gitlab_random_headers(headers: dict[str, str], name: str, with_token: bool) -> None:
    body = json.dumps(GITLAB[name]).encode()
    if with_token:
        headers = {**headers, "X-Gitlab-Token": GITLAB_SECRET}
    _check(
        lambda: handle_gitlab(
            headers=headers, body=body, secret=GITLAB_SECRET, options=IntakeOptions()
        )
    )


@pytest.mark.parametrize("name", sorted(GITHUB))
def test_every_github_fixture_passes_the_property(name: str) -> None:
    _check(lambda: _github(GITHUB[name], name, IntakeOptions()))


@pytest.mark.parametrize("name", sorted(GITLAB))
def test_every_gitlab_fixture_passes_the_property(name: str) -> None:
    _check(lambda: _gitlab(GITLAB[name], name, IntakeOptions()))
