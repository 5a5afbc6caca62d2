"""Errors as RFC 9457 problem details (`application/problem+json`), and the request-size
guard. Every 4xx says clearly what was wrong; no 5xx says anything about internals."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError, ResponseError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sortie_orchestrator.adapters.saga_store import IdempotencyMismatch

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# Redis answers that mean "not now" rather than "wrong command".
_UNAVAILABLE = re.compile(
    r"^(OOM|BUSY|LOADING|MASTERDOWN|READONLY|NOREPLICAS|TRYAGAIN|CLUSTERDOWN)"
)
RETRY_AFTER_S = 2


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    default_slug = _TITLES.get(status, "error").lower().replace(" ", "-")
    body: dict[str, Any] = {
        "type": f"urn:sortie:problem:{slug or default_slug}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_detail(errors: list[Any]) -> tuple[int, str, list[dict[str, Any]]]:
    items = []
    status = 422
    for err in errors[:20]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            status = 400
        items.append({"field": ".".join(loc) or "(body)", "message": err.get("msg", "")})
    if status == 400:
        return status, "the request body is not valid JSON", items
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    return status, f"invalid request: {summary}", items


async def _problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(
        exc.status,
        exc.detail,
        slug=exc.slug,
        instance=request.url.path,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    status, detail, items = _validation_detail(list(exc.errors()))
    return problem_response(
        status,
        detail,
        slug="invalid-request" if status == 422 else "malformed-json",
        instance=request.url.path,
        extra={"errors": items},
    )


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem_response(
        exc.status_code,
        str(exc.detail),
        instance=request.url.path,
        headers=getattr(exc, "headers", None),
    )


async def _reused(request: Request, exc: IdempotencyMismatch) -> JSONResponse:
    return problem_response(
        422,
        "this Idempotency-Key was already used for a request with another body;"
        " use a new key for a new request",
        slug="idempotency-key-reused",
        instance=request.url.path,
        extra={"request_id": exc.request_id},
    )


async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
    # json.loads (and pydantic on what it returns) recurse once per nesting level: a
    # deeply nested body, on any route that parses JSON itself (/scim, /ui/login).
    return problem_response(
        400,
        "the JSON body is nested too deeply",
        slug="malformed-json",
        instance=request.url.path,
    )


async def _redis(request: Request, exc: RedisError) -> JSONResponse:
    # Unreachable, saturated (no free pooled connection in time), loading, out of
    # memory, or not durable yet: the request was not accepted (the store writes a
    # request in one script, so nothing half-written is left); the client retries.
    if isinstance(exc, ResponseError) and not _UNAVAILABLE.match(str(exc)):
        log.exception("Redis refused a command on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; the request was not accepted")
    log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "the request store is unavailable; nothing was accepted, retry later "
        "(with the same Idempotency-Key)",
        slug="store-unavailable",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "internal error; the request was not accepted")


_HANDLERS: tuple[tuple[type[Exception], Any], ...] = (
    (Problem, _problem),
    (RequestValidationError, _invalid),
    (StarletteHTTPException, _http),
    (IdempotencyMismatch, _reused),
    (RecursionError, _too_deep),
    (RedisError, _redis),
    (Exception, _crash),
)


def install(app: FastAPI) -> None:
    """Every error the app can raise, answered as problem details."""
    for exc, handler in _HANDLERS:
        app.exception_handler(exc)(handler)


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes` (413) before anything reads them,
    and bodies not received within `read_timeout_s` (408): a client trickling one byte a
    second would otherwise hold a connection and a task for ever."""

    def __init__(self, app: Any, max_bytes: int, read_timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # Read the (small) body here, with the limit, then replay it to the app.
        chunks: list[bytes] = []
        seen = 0
        deadline = asyncio.get_running_loop().time() + self.read_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                response = problem_response(
                    408,
                    f"request body not received within {self.read_timeout_s:g} s",
                    slug="body-timeout",
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = problem_response(
            413, f"request body larger than {self.max_bytes} bytes", slug="body-too-large"
        )
        await response(scope, receive, send)
