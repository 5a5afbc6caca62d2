"""The Graph simulator's HTTP face: `/v1.0/{path}` and JSON batching (`POST /v1.0/$batch`,
https://learn.microsoft.com/en-us/graph/json-batching), answered as Graph answers them
(`request-id` on every response, `client-request-id` echoed, 401 with `WWW-Authenticate`).
Items run in the order sent; one whose `dependsOn` names an item that did not succeed (or
is not before it) is not run and is answered 424, as Graph answers it.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .common import bearer_token, sleep_ms
from .graph_model import Reply, bad_request, graph_error

if TYPE_CHECKING:
    from .graph import GraphSimulator

MAX_BATCH = 20


def _response(reply: Reply, request: Request) -> Response:
    headers = dict(reply.headers)
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    headers["request-id"] = error["innerError"]["request-id"] if error else str(uuid.uuid4())
    if "client-request-id" in request.headers:
        headers["client-request-id"] = request.headers["client-request-id"]
    if reply.body is None:
        return Response(status_code=reply.status, headers=headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)


def _unauthorized() -> Reply:
    reply = graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
    reply.headers["WWW-Authenticate"] = 'Bearer realm="", authorization_uri="", client_id=""'
    return reply


def _json_body(raw: bytes) -> tuple[Any, str | None]:
    if not raw.strip():
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, "Unable to read JSON request payload."


def _item_body(item: dict[str, Any]) -> tuple[Any, str | None]:
    """A batch item's body is JSON, or base64 of JSON (msgraph-core sends either)."""
    body = item.get("body")
    if not isinstance(body, str):
        return body, None
    try:
        return _json_body(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError):
        return None, "Unable to read the body of a batch request item."


def _check_batch(payload: Any) -> str | list[dict[str, Any]]:
    """The batch's items, or the reason the whole batch is refused."""
    items = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        return "Invalid batch payload format: 'requests' must be a non-empty array."
    if len(items) > MAX_BATCH:
        return f"The number of requests in a batch exceeds the limit of {MAX_BATCH}."
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("id", "method", "url")
        ):
            return "Invalid batch payload format: each request needs 'id', 'method' and 'url'."
        if item["id"] in seen:
            return f"Batch request ids must be unique: '{item['id']}' is repeated."
        seen.add(item["id"])
    return items


async def batch_response(sim: GraphSimulator, request: Request) -> Response:
    await sleep_ms(sim.config.latency_ms)
    app = bearer_token(request)
    if app is None:
        return _response(_unauthorized(), request)
    payload, problem = _json_body(await request.body())
    items = _check_batch(payload) if problem is None else problem
    if isinstance(items, str):
        return _response(bad_request(items, "BadRequest"), request)
    responses = []
    succeeded: set[str] = set()
    for item in items:
        body, body_error = _item_body(item)
        sent = item.get("headers")
        level = sent.get("ConsistencyLevel") if isinstance(sent, dict) else None
        needs = item.get("dependsOn") or []
        if not isinstance(needs, list) or not all(n in succeeded for n in needs):
            reply = graph_error(424, "FailedDependency", "A request it depends on failed.")
        else:
            reply = sim.execute_url(item["method"], item["url"], body, body_error, app, level)
        if 200 <= reply.status < 300:
            succeeded.add(item["id"])
        headers = {"Content-Type": "application/json"} if reply.body is not None else {}
        headers.update(reply.headers)
        responses.append(
            {"id": item["id"], "status": reply.status, "headers": headers, "body": reply.body}
        )
    return _response(Reply(200, {"responses": responses}), request)


async def operation_response(sim: GraphSimulator, path: str, request: Request) -> Response:
    await sleep_ms(sim.config.latency_ms)
    app = bearer_token(request)
    if app is None:
        return _response(_unauthorized(), request)
    body, body_error = _json_body(await request.body())
    segments = path.strip("/").split("/")
    query = dict(request.query_params)
    reply = sim.execute(
        request.method,
        segments,
        body,
        query=query,
        body_error=body_error,
        app=app,
        consistency=request.headers.get("ConsistencyLevel"),
    )
    return _response(reply, request)


_METHODS = frozenset(("GET", "POST", "PATCH", "PUT", "DELETE"))
# ASGI's types (starlette.types), spelled out: the simulators depend on FastAPI only.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class GraphFastPath:
    """ASGI middleware answering `/v1.0/…` itself, as the routes below do, before FastAPI's
    router, endpoint and dependency machinery: that costs the simulator a seventh of its
    CPU per call (py-spy, bench/m365_logout_cpu.py). Anything else goes to the app."""

    def __init__(self, app: ASGIApp, sim: GraphSimulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        method = scope.get("method")
        if path.startswith("/v1.0/") and method in _METHODS:
            request = Request(scope, receive)
            if path == "/v1.0/$batch" and method == "POST":
                response = await batch_response(self.sim, request)
            else:
                response = await operation_response(self.sim, path[len("/v1.0/") :], request)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def add_graph_routes(app: FastAPI, sim: GraphSimulator) -> None:
    """The routes (the OpenAPI page lists them); GraphFastPath answers them first."""

    @app.post("/v1.0/$batch")
    async def batch(request: Request) -> Response:
        return await batch_response(sim, request)

    @app.api_route("/v1.0/{path:path}", methods=sorted(_METHODS))
    async def operation(path: str, request: Request) -> Response:
        return await operation_response(sim, path, request)

    app.add_middleware(GraphFastPath, sim=sim)
