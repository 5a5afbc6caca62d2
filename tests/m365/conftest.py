"""The Graph simulator served over HTTP on 127.0.0.1, and the msgraph-sdk adapter pointed at it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from sortie_m365.adapters.credentials import StaticTokenCredential
from sortie_m365.adapters.exchange import ExchangeMailboxProtocols
from sortie_m365.adapters.graph_http import graph_client
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory
from sortie_simulators import graph
from sortie_simulators.graph import GraphSimulator

TOKEN = "graph-test-token"
ALICE = "alice@example.org"
ALICE_MAIL = "alice.martin@example.org"
GUEST = "guest_partner.example#EXT#@example.org"
SCOPE = "https://graph.microsoft.com/.default"


@dataclass
class Recorder:
    """Wraps an ASGI app and keeps every request body (to search for secrets)."""

    app: Any
    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self.bodies.append(body)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def json_bodies(self) -> list[Any]:
        return [json.loads(b) for b in self.bodies if b.strip()]


@dataclass
class GraphSim:
    url: str
    sim: GraphSimulator
    recorder: Recorder


@pytest.fixture
def graph_sim(serve: Callable[[Any], str]) -> GraphSim:
    app = graph.create_app()
    sim: GraphSimulator = app.state.sim
    sim.add_user(ALICE, mail=ALICE_MAIL, object_id="0a11ce00-0000-4000-8000-000000000001")
    sim.add_user(GUEST, mail="guest@partner.example", user_type="Guest")
    recorder = Recorder(app)
    return GraphSim(serve(recorder), sim, recorder)


def make_directory(url: str, token: str = TOKEN, **kw: Any) -> GraphSdkDirectory:
    credential = StaticTokenCredential(SecretStr(token))
    client = graph_client(url, credential, scope=SCOPE, timeout_s=kw.pop("timeout_s", 5.0))
    return GraphSdkDirectory(client, credential=credential, **kw)


def make_mailbox(url: str, token: str = TOKEN) -> ExchangeMailboxProtocols:
    return ExchangeMailboxProtocols(
        url, "tenant-1", StaticTokenCredential(SecretStr(token)), scope="exchange/.default"
    )


@pytest.fixture
async def directory(graph_sim: GraphSim) -> AsyncIterator[GraphSdkDirectory]:
    d = make_directory(graph_sim.url, mailbox=make_mailbox(graph_sim.url))
    yield d
    await d.aclose()
