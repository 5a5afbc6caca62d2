"""The CAS simulator's session index and event log, and its hot calls (answered in front
of the FastAPI routes) against the routes themselves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from sortie_simulators import cas
from sortie_simulators.cas_sessions import MAX_EVENTS, CasSimulator
from tests.simulators.asgi import asgi_client

CREATED = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)


def seeded(app: FastAPI) -> None:
    sim: CasSimulator = app.state.sim
    for tgt_id, user, services in (
        ("TGT-1-a", "Alice", ("https://ent.test/a/", "https://ent.test/b/")),
        ("TGT-2-a", "alice", ()),
        ("TGT-3-b", "bob", ("https://ent.test/a/",)),
    ):
        tgt = sim.create_tgt(user, tgt_id)
        tgt.created_at = CREATED
        for n, service in enumerate(services):
            sim.grant(tgt, service, f"ST-{n}-{tgt_id}")


CALLS = (
    ("GET", "/cas/actuator/ssoSessions/users/ALICE"),
    ("GET", "/cas/actuator/ssoSessions/users/nobody"),
    ("DELETE", "/cas/v1/tickets/TGT-unknown"),
    ("DELETE", "/cas/v1/tickets/TGT-2-a"),
    ("GET", "/cas/actuator/ssoSessions/users/alice"),
    ("HEAD", "/cas/actuator/ssoSessions/users/alice"),
    ("GET", "/cas/actuator/ssoSessions/users/a%2Fb"),
    ("GET", "/cas/actuator/ssoSessions/users/alice/"),
    ("DELETE", "/cas/actuator/ssoSessions/users/Alice"),
    ("DELETE", "/cas/actuator/ssoSessions/users/alice"),
    ("GET", "/cas/actuator/ssoSessions/users/bob"),
    ("PUT", "/cas/v1/tickets/TGT-3-b"),
)


async def answers(app: FastAPI) -> tuple[list[tuple[int, dict[str, str], bytes]], list[Any]]:
    seeded(app)
    out = []
    async with asgi_client(app) as client:
        for method, path in CALLS:
            r = await client.request(method, path)
            out.append((r.status_code, dict(r.headers), r.content))
        events = [
            (e["what"], e["username"], e["tgts"]) for e in (await client.get("/_sim/events")).json()
        ]
    return out, events


async def test_the_hot_calls_answer_exactly_as_their_routes() -> None:
    hot = cas.create_app()
    # With a latency every call goes through the FastAPI routes.
    routed = cas.create_app(latency_ms=0.001)
    hot_answers, hot_events = await answers(hot)
    assert (hot_answers, hot_events) == await answers(routed)
    statuses = [status for status, _, _ in hot_answers]
    assert statuses == [200, 200, 200, 200, 200, 405, 404, 307, 200, 200, 200, 405]
    assert hot_answers[0][1]["content-type"] == "application/json"
    listed = httpx.Response(200, content=hot_answers[0][2]).json()
    assert [s["ticket_granting_ticket"] for s in listed["activeSsoSessions"]] == [
        "TGT-1-a",
        "TGT-2-a",
    ]
    assert listed["totalSsoSessions"] == 3
    assert hot_events == [
        ("tgt_deleted", "alice", ["TGT-2-a"]),
        ("sso_sessions_deleted", "Alice", ["TGT-1-a"]),
        ("sso_sessions_deleted", "alice", []),
    ]


async def test_a_missing_rest_module_and_an_outage_apply_to_the_hot_calls() -> None:
    app = cas.create_app()
    seeded(app)
    async with asgi_client(app) as client:
        await client.post("/_sim/config", json={"tickets_api_missing": True})
        missing = await client.delete("/cas/v1/tickets/TGT-1-a")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
        assert "TGT-1-a" in app.state.sim.tgts
        await client.post("/_sim/config", json={"tickets_api_missing": False, "down": True})
        down = await client.delete("/cas/actuator/ssoSessions/users/alice")
        assert (down.status_code, down.text) == (503, "Service Unavailable")
        assert len(app.state.sim.tgts) == 3


def test_sessions_are_found_by_user_case_insensitively() -> None:
    sim = CasSimulator()
    made = [sim.create_tgt(f"user{n % 50}", f"TGT-{n:04d}") for n in range(1000)]
    assert [t.id for t in sim.sessions_of("USER7")] == [f"TGT-{n:04d}" for n in range(7, 1000, 50)]
    sim.delete_tgt("TGT-0007")
    assert sim.delete_user_sessions("user7") == [f"TGT-{n:04d}" for n in range(57, 1000, 50)]
    assert sim.sessions_of("user7") == []
    # A TGT id given again belongs to its new user only.
    sim.create_tgt("bob", "TGT-0008")
    assert "TGT-0008" not in [t.id for t in sim.sessions_of("user8")]
    assert [t.id for t in sim.sessions_of("Bob")] == ["TGT-0008"]
    assert len(sim.sessions_of(None)) == len(sim.tgts) == len(made) - 20
    assert sim.newest_tgt("user9") is sim.tgts["TGT-0959"]


def test_the_event_log_keeps_the_last_events_only() -> None:
    sim = CasSimulator()
    for n in range(MAX_EVENTS + 5):
        sim.delete_tgt(sim.create_tgt("carol", f"TGT-{n}").id)
    assert len(sim.events) == MAX_EVENTS
    assert sim.events[0]["tgt"] == "TGT-5"
    assert sim.events[-1]["tgt"] == f"TGT-{MAX_EVENTS + 4}"
