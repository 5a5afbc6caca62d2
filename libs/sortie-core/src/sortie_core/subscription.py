"""What a process subscribes to: a stream, its handler, and where the result goes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .entries import command_request_key, preview_request_key
from .events import DeadLettered, PreviewRequested
from .streams import DEADLETTER


@dataclass(slots=True)
class Delivery:
    stream: str
    group: str
    entry_id: str
    deliveries: int
    # Set by a handler that acknowledged the entry in its own script (the orchestrator's
    # compare-and-set does, to save a round trip).
    acked: bool = False


# A handler returns the event to publish on its subscription's `publishes` stream, or None.
Handler = Callable[[Any, Delivery], Awaitable[BaseModel | None]]
# Called with the decoded event (when it could be decoded) when its entry is given up;
# returns the report to publish with the dead-letter record (the failed step), or None.
DeadLetterHook = Callable[[Any, DeadLettered], BaseModel | None]


@dataclass(slots=True)
class Subscription:
    stream: str
    group: str
    handler: Handler
    # Event types this subscription accepts; any other one is dead-lettered.
    accepts: tuple[type[BaseModel], ...]
    on_deadletter: DeadLetterHook | None = None
    # Where the handler's (and the dead-letter hook's) result is published.
    publishes: str | None = None
    # A Pub/Sub (channel, message) published with each result (an agent's wake-up of the
    # orchestrator), or None. Pub/Sub, not a stream: nothing one agent publishes there can
    # block or empty what another agent writes.
    announce: tuple[str, str] | None = None
    dedupe: bool = True
    # Dedupe keys are `<prefix>:<event_id>`, by default `sortie:seen:<group>`; a
    # workstation agent uses one per host so its Redis ACL can be limited to its own keys.
    dedupe_prefix: str | None = None
    # Where given-up entries go; a workstation agent writes its own per-host stream,
    # since an account that may XADD to a shared stream can block it for everyone.
    deadletter_stream: str = DEADLETTER
    # A command names its request's key: refused (`unknown_request`) when it does not
    # exist, i.e. the orchestrator never accepted that request (or it expired).
    request_key: Callable[[Any], str] | None = None
    # Reason for a type this subscription does not accept.
    unexpected_reason: str = "unexpected_type"
    # Label of `sortie_deadletter_total` (one for all agents' results streams).
    metric_stream: str | None = None

    def seen_key(self, event_id: str) -> str:
        return f"{self.dedupe_prefix or f'sortie:seen:{self.group}'}:{event_id}"


def command_subscription(
    stream: str,
    group: str,
    handler: Handler,
    accepts: type[BaseModel],
    publishes: str,
    on_deadletter: DeadLetterHook | None = None,
) -> Subscription:
    """A worker's subscription to one command stream: a preview command names its
    preview's key (it is taken while the preview is awaited), any other its request's."""
    return Subscription(
        stream,
        group,
        handler,
        accepts=(accepts,),
        on_deadletter=on_deadletter,
        publishes=publishes,
        request_key=preview_request_key if accepts is PreviewRequested else command_request_key,
    )
