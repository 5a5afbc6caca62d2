"""msgraph-sdk's httpx client on the aiohttp transport, over real HTTP: the request goes
as httpx built it (method, path and query as encoded, headers, body), the answer comes
back as sent, decoded once by httpx, and a redirect is not followed."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sortie_m365.adapters.aiohttp_transport import AiohttpTransport
from tests.m365.conftest import ALICE, GraphSim, make_directory


def _echo_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/moved":
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", b"/elsewhere")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return
        seen = {
            "method": scope["method"],
            "path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
            "body": body.decode(),
        }
        packed = gzip.compress(json.dumps(seen).encode())
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                   (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]  # fmt: skip
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": packed})

    return app


async def test_request_and_answer_go_through_unchanged(serve: Callable[[Any], str]) -> None:
    url = serve(_echo_app())
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=5) as client:
        answer = await client.patch(
            f"{url}/v1.0/users/alice%40school.example?%24select=id",
            json={"accountEnabled": False},
            headers={"ConsistencyLevel": "eventual", "User-Agent": "kiota-test"},
        )
        moved = await client.get(f"{url}/moved")
    assert answer.status_code == 201
    seen = answer.json()  # gzip undone once, by httpx
    assert seen["method"] == "PATCH"
    assert seen["path"] == "/v1.0/users/alice%40school.example"
    assert seen["query"] == "%24select=id"
    assert seen["headers"]["consistencylevel"] == "eventual"
    assert seen["headers"]["user-agent"] == "kiota-test"
    assert json.loads(seen["body"]) == {"accountEnabled": False}
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert moved.status_code == 302 and moved.headers["location"] == "/elsewhere"


async def test_an_unreachable_host_is_an_httpx_connect_error() -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:9/")


async def test_closing_the_directory_closes_the_aiohttp_session(graph_sim: GraphSim) -> None:
    # The directory closes the client, and the client its transport (the aiohttp session).
    directory = make_directory(graph_sim.url)
    await directory.get_user(ALICE)
    http = directory._client.request_adapter._http_client
    inner = http._transport
    assert isinstance(inner, AiohttpTransport) and inner._session is not None
    assert not inner._session.closed
    await directory.aclose()
    assert inner._session.closed
