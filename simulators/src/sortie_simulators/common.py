"""Helpers shared by the simulators: timestamps, latency and throttling, form bodies, bearer
tokens, and running an app under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from fastapi import Request

log = logging.getLogger("sortie_simulators")

Clock = Callable[[], float]

# A form or XML body larger than this is refused: every message simulated here is small.
MAX_FORM_BYTES = 64 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_us(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: `2026-11-21T10:00:00.123456Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_s(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, the way Microsoft Graph writes DateTimeOffset."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp() -> dict[str, Any]:
    """Wall-clock and monotonic time of an event, for ordering checks across simulators
    (on Linux, `time.monotonic` is one clock for every process of the machine)."""
    return {"at": iso_us(utc_now()), "monotonic": time.monotonic()}


async def sleep_ms(latency_ms: float) -> None:
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000)


class TokenBucket:
    """`rate` tokens per second, holding at most one second's worth (and at least one)."""

    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def wait(self) -> float | None:
        """Refill; None when a token is there, otherwise the seconds until one is."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return None if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> float | None:
        """Take one token: None when granted, otherwise the seconds until one is free."""
        if self.wait() is None:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def retry_after(wait_s: float) -> str:
    """A Retry-After value in whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))


class FormError(ValueError):
    """A form body that cannot be read; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_form(request: Request) -> dict[str, str]:
    """Read an `application/x-www-form-urlencoded` body (the first value of each field).
    An empty body is an empty form, whatever its content type."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError("body too large", status=413)
    if not body:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError("expected application/x-www-form-urlencoded", status=415)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(f"unreadable form body: {exc}") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class _Server(uvicorn.Server):
    """Logs `listening on http://HOST:PORT` once the socket is open (PORT 0 is resolved)."""

    def __init__(self, config: uvicorn.Config, logger: logging.Logger) -> None:
        super().__init__(config)
        self._logger = logger

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.servers and self.servers[0].sockets:
            port = self.servers[0].sockets[0].getsockname()[1]
            host = self.config.host
            shown = f"[{host}]" if ":" in host else host
            self._logger.info("listening on http://%s:%d", shown, port)


def serve(app: Any, *, name: str, host: str, port: int, log_level: str = "warning") -> None:
    """Run `app` until SIGINT/SIGTERM. The startup line goes to stderr."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    _Server(config, logging.getLogger(f"sortie_simulators.{name}")).run()
