"""Webhook intake: verify and parse GitHub and GitLab deliveries into forge-neutral events.

Pure (no I/O): the web layer (``bot.app``) passes the request's headers and raw body and gets
back an :class:`Outcome` (the :class:`~bot.events.Event` to queue, or why none is needed), or a
:class:`WebhookError` whose ``status`` and ``message`` are the HTTP answer. Nothing a sender
controls raises anything else.

Each provider module owns a :class:`~bot.webhooks.router.Router`; one decorated function
handles each (event, action) pair.
"""

from bot.webhooks.base import MAX_BODY_BYTES, HeaderSource, IntakeOptions, Outcome, WebhookError
from bot.webhooks.github import handle_github
from bot.webhooks.gitlab import handle_gitlab

__all__ = [
    "MAX_BODY_BYTES",
    "HeaderSource",
    "IntakeOptions",
    "Outcome",
    "WebhookError",
    "handle_github",
    "handle_gitlab",
]
