"""Server-sent events that follow one request: an `update` with the page's fragment each
time the request's state changes, then `end` with its final status. Used by the status
page and by the user's logout page."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from sortie_orchestrator.adapters.saga_store import SagaStore
from sortie_orchestrator.saga import SagaState

SSE_MAX_S = 600
QUIET_S = 15


def event(name: str, data: str) -> str:
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n"


def follow(
    store: SagaStore,
    request: Request,
    request_id: uuid.UUID,
    fragment: Callable[[SagaState], str],
    allowed: Callable[[], Awaitable[bool]] | None = None,
    max_s: float = SSE_MAX_S,
) -> StreamingResponse:
    """`allowed`: asked before each read; when it says no the stream ends `signed out`."""

    async def stream() -> AsyncIterator[str]:
        seen: int | None = None
        quiet_since = time.monotonic()
        stop_at = time.monotonic() + max_s
        yield "retry: 2000\n\n"
        while time.monotonic() < stop_at and not await request.is_disconnected():
            if allowed is not None and not await allowed():
                yield event("end", "signed out")
                return
            loaded = await store.load(request_id)
            if loaded is None:
                yield event("end", "gone")
                return
            if loaded.version != seen:
                seen = loaded.version
                quiet_since = time.monotonic()
                yield event("update", fragment(loaded.state))
                if loaded.state.finished:
                    yield event("end", loaded.state.status)
                    return
            elif time.monotonic() - quiet_since > QUIET_S:
                quiet_since = time.monotonic()
                yield ": still running\n\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
