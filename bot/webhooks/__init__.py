"""Webhook intake: verify and parse GitHub and GitLab deliveries into forge-neutral events.

Pure (no I/O): the web layer (``bot.app``) passes the request's headers and raw body and gets
back an :class:`Outcome` (the :class:`~bot.events.Event` to queue, or why none is needed), or a
:class:`WebhookError` whose ``status`` and ``message`` are the HTTP answer. Nothing a sender
controls raises anything else.

Each provider module owns a :class:`~bot.webhooks.router.Router`; one decorated function
handles each (event, action) pair. :data:`PROVIDERS` describes each provider's endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bot.events import Provider
from bot.webhooks import github, gitlab
from bot.webhooks.base import HeaderSource, IntakeOptions, Outcome, WebhookError
from bot.webhooks.github import handle_github
from bot.webhooks.gitlab import handle_gitlab
from bot.webhooks.router import Router


@dataclass(frozen=True)
class ProviderIntake:
    """One forge's webhook endpoint: its headers, its secret's setting and its parser."""

    name: Provider
    #: Header naming the event ("pull_request", "Merge Request Hook").
    event_header: str
    #: Headers carrying the delivery id, in order of preference.
    delivery_headers: tuple[str, ...]
    #: Environment variable of the webhook secret, for the "not configured" answer.
    secret_setting: str
    handle: Callable[..., Outcome]
    router: Router


PROVIDERS: Final[dict[str, ProviderIntake]] = {
    "github": ProviderIntake(
        name="github",
        event_header=github.EVENT_HEADER,
        delivery_headers=(github.DELIVERY_HEADER,),
        secret_setting="GITHUB_WEBHOOK_SECRET",
        handle=handle_github,
        router=github.router,
    ),
    "gitlab": ProviderIntake(
        name="gitlab",
        event_header=gitlab.EVENT_HEADER,
        delivery_headers=gitlab.DELIVERY_HEADERS,
        secret_setting="GITLAB_WEBHOOK_SECRET",
        handle=handle_gitlab,
        router=gitlab.router,
    ),
}

KNOWN_EVENTS: Final[frozenset[str]] = frozenset(
    name for intake in PROVIDERS.values() for name in intake.router.events
)
"""The events some handler is registered for: the metric labels. Anything else is counted as
"other", so a sender cannot grow the metrics without bound."""

__all__ = [
    "KNOWN_EVENTS",
    "PROVIDERS",
    "HeaderSource",
    "IntakeOptions",
    "Outcome",
    "ProviderIntake",
    "WebhookError",
    "handle_github",
    "handle_gitlab",
]
