"""A small registry routing a parsed delivery to one handler per (event, action).

Like gidgethub's ``Router``: each behaviour is one decorated function, and supporting a new
event is adding a function, not editing a switch::

    router = Router("github")

    @router.route("pull_request", "opened", "reopened")
    def pull_request_opened(delivery: Delivery) -> Event | str:
        ...

A handler returns the :class:`~bot.events.Event` to queue, or a string saying why the delivery
needs no job. Deliveries without a handler are ignored with a reason naming event and action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.events import Event, Provider
from bot.webhooks.base import IntakeOptions, Outcome, WebhookError, optional, printable

Handler = Callable[["Delivery"], "Event | str"]


@dataclass(frozen=True)
class Delivery:
    """One verified delivery, decoded, as handlers see it."""

    provider: Provider
    event_name: str
    #: The payload's action (``pull_request.action``, GitLab ``object_attributes.action``), if any.
    action: str | None
    delivery_id: str
    payload: Mapping[str, Any]
    options: IntakeOptions


class Router:
    """Maps (event name, action) to handlers; an empty action list matches every action."""

    def __init__(self, provider: Provider) -> None:
        self.provider: Provider = provider
        self._routes: dict[tuple[str, str | None], Handler] = {}

    def route(self, event_name: str, *actions: str) -> Callable[[Handler], Handler]:
        """Register the decorated function for ``event_name`` with any of ``actions``
        (with every action when none are given)."""

        def register(handler: Handler) -> Handler:
            keys: list[tuple[str, str | None]] = [(event_name, a) for a in actions] or [
                (event_name, None)
            ]
            for key in keys:
                if key in self._routes:
                    raise ValueError(f"{self.provider} route {key} is registered twice")
                self._routes[key] = handler
            return handler

        return register

    def handler_for(self, event_name: str, action: str | None) -> Handler | None:
        """The handler for this exact action, else the event's catch-all, else ``None``."""
        if action is not None and (event_name, action) in self._routes:
            return self._routes[(event_name, action)]
        return self._routes.get((event_name, None))

    @property
    def events(self) -> frozenset[str]:
        """The event names some handler is registered for."""
        return frozenset(name for name, _ in self._routes)

    def handles(self, event_name: str) -> bool:
        """True if some handler is registered for ``event_name``."""
        return event_name in self.events

    def dispatch(self, delivery: Delivery) -> Outcome:
        """Run the matching handler and wrap its answer in an :class:`Outcome`."""
        handler = self.handler_for(delivery.event_name, delivery.action)
        if handler is None:
            result: Event | str = no_job_reason(delivery.event_name, delivery.action)
        else:
            result = handler(delivery)
        if isinstance(result, Event):
            return Outcome(
                provider=self.provider,
                event_name=delivery.event_name,
                delivery_id=delivery.delivery_id,
                event=result,
                reason=describe(result),
            )
        return Outcome(
            provider=self.provider,
            event_name=delivery.event_name,
            delivery_id=delivery.delivery_id,
            event=None,
            reason=result,
        )


def no_job_reason(event_name: str, action: str | None) -> str:
    """The standard reason for a delivery nobody handles."""
    if action is None:
        return f"{printable(event_name, limit=100)} events need no job"
    return f"{printable(event_name, limit=100)} action '{printable(action, limit=60)}' needs no job"


def describe(event: Event) -> str:
    """A one-line description of a queued event, for the answer body and logs."""
    number = getattr(event, "number", None)
    where = event.repository.full_name + (f"#{number}" if number is not None else "")
    return f"{event.job_type} job for {printable(where)}"


def action_of(payload: Mapping[str, Any], path: str, *, strict: bool) -> str | None:
    """The payload's action at ``path``.

    ``strict`` (the event has handlers): a mistyped action is a 400 naming it. Otherwise the
    delivery is ignored anyway, so an odd shape just means "no action" rather than an error."""
    if strict:
        return optional(payload, path, str)
    try:
        return optional(payload, path, str)
    except WebhookError:
        return None
