"""The ENT worker in-process against a real redis-server and in-test CAS and applications."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import (
    Kind,
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    Verification,
)
from sortie_ent.bootstrap import SERVICE, make_build
from sortie_ent.settings import EntSettings
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast
from tests.support.stub_http import Reply, StubHttp
from tests.support.workers import (
    ALICE,
    command,
    logout,
    offboard,
    running_worker,
    wait_for_events,
)

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"


def actuator(sessions: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
    """A `GET ssoSessions/users/alice` answer in Apereo's shape."""
    return {
        "activeSsoSessions": [
            {
                "authenticated_principal": "alice",
                "ticket_granting_ticket": tgt,
                "authenticated_services": {st: {"id": url} for st, url in services.items()},
            }
            for tgt, services in sessions
        ],
        "totalSsoSessions": len(sessions),
    }


@pytest.fixture
def peer(serve: Callable[[Any], str]) -> tuple[StubHttp, str]:
    stub = StubHttp(lambda _: Reply(200, {"ok": True}))
    return stub, serve(stub)


@pytest.fixture
def settings(
    tmp_path: Path,
    redis_server: RedisServer,
    peer: tuple[StubHttp, str],
    monkeypatch: pytest.MonkeyPatch,
) -> EntSettings:
    base = peer[1]
    escaped = base.replace(".", r"\.")
    path = tmp_path / "registry.yaml"
    path.write_text(
        "applications:\n"
        f"  - name: esper\n    protocol: cas_slo\n    service_patterns: ['{escaped}/esper/.*']\n"
        f"  - name: mer\n    protocol: http\n    logout_url: '{base}/mer/logout/{{user_id}}'\n"
        "    token_env: TEST_MER_TOKEN\n"
    )
    monkeypatch.setenv("TEST_MER_TOKEN", "mer-secret")
    return fast(EntSettings, redis_server.url, cas_url=f"{base}/cas", registry_path=path)


async def test_logout_then_sso_logout(
    redis: Redis, settings: EntSettings, peer: tuple[StubHttp, str]
) -> None:
    stub, base = peer
    # The CAS knows the session and a service the caller did not send: discovery, the SSO
    # step's own look, then the read-back after the delete.
    users = "/cas/actuator/ssoSessions/users/alice"
    known = actuator([("TGT-1-alice", {"ST-1-esper": f"{base}/esper/", "ST-7": f"{base}/esper/x"})])
    stub.script("GET", users, Reply(200, known), Reply(200, known), Reply(200, actuator([])))
    event = logout(
        tgt="TGT-1-alice",
        tickets=[(f"{base}/esper/", "ST-1-esper"), (f"{base}/evil/?steal=1", "ST-2-evil")],
    )
    async with running_worker(SERVICE, settings, make_build(settings)):
        await command(redis, streams.LOGOUT_REQUESTED, event)
        [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
        sso_request = SsoLogoutRequested(
            request_id=event.request_id, subject=ALICE, kind=Kind.LOGOUT, tgt="TGT-1-alice"
        )
        await command(redis, streams.SSO_LOGOUT_REQUESTED, sso_request)
        [sso_done] = await wait_for_events(redis, streams.SSO_LOGOUT_COMPLETED)
    assert isinstance(done, RevocationCompleted)
    assert (done.service, done.request_id) == ("ent", event.request_id)
    assert {s.action: s.outcome for s in done.steps} == {
        "app_logout:esper": Outcome.SUCCEEDED,
        "app_logout:mer": Outcome.SUCCEEDED,
        "app_logout:unregistered": Outcome.FAILED,
    }
    [slo] = stub.calls("POST", "/esper/")
    root = ET.fromstring(slo.form()["logoutRequest"])
    session_index = root.find(f"{SAMLP}SessionIndex")
    assert session_index is not None and session_index.text == "ST-1-esper"
    # The ticket only the CAS knew was logged out too.
    assert len(stub.calls("POST", "/esper/x")) == 1
    esper = next(s for s in done.steps if s.action == "app_logout:esper")
    assert len(esper.items) == 2
    assert done.discovery is not None
    assert (done.discovery.tickets_found, done.discovery.tickets_from_caller) == (2, 2)
    [identity] = stub.calls("POST", "/mer/logout/alice")
    assert identity.headers["authorization"] == "Bearer mer-secret"
    assert stub.calls(path="/evil/") == []  # the unregistered URL was never called

    assert isinstance(sso_done, SsoLogoutCompleted)
    assert sso_done.request_id == event.request_id
    assert [(s.action, s.outcome, s.verification) for s in sso_done.steps] == [
        ("destroy_sso_session", Outcome.SUCCEEDED, Verification.VERIFIED)
    ]
    assert len(stub.calls("DELETE", "/cas/v1/tickets/TGT-1-alice")) == 1
    # The CAS logout came after the application logouts.
    order = [s.path for s in stub.seen]
    assert order.index("/cas/v1/tickets/TGT-1-alice") > order.index("/esper/")


async def test_offboard_and_all_sso_sessions(
    redis: Redis, settings: EntSettings, peer: tuple[StubHttp, str]
) -> None:
    stub, base = peer
    stub.script("DELETE", "/cas/actuator/ssoSessions/users/alice", Reply(503), Reply(200, {}))
    users = "/cas/actuator/ssoSessions/users/alice"
    known = actuator([("TGT-1", {"ST-1": f"{base}/esper/"}), ("TGT-2", {"ST-2": f"{base}/esper/"})])
    stub.script("GET", users, Reply(200, known), Reply(200, known), Reply(200, actuator([])))
    event = offboard()
    async with running_worker(SERVICE, settings, make_build(settings)):
        await command(redis, streams.OFFBOARD_REQUESTED, event)
        await command(
            redis,
            streams.SSO_LOGOUT_REQUESTED,
            SsoLogoutRequested(
                request_id=event.request_id, subject=ALICE, kind=Kind.OFFBOARD, all_sessions=True
            ),
        )
        [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
        [sso_done] = await wait_for_events(redis, streams.SSO_LOGOUT_COMPLETED)
    # Every session the CAS listed is logged out of its applications.
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("app_logout:esper", Outcome.SUCCEEDED),
        ("app_logout:mer", Outcome.SUCCEEDED),
    ]
    assert len(stub.calls("POST", "/esper/")) == 2
    step = sso_done.steps[0]
    assert (step.action, step.outcome, step.attempts) == (
        "destroy_all_sso_sessions",
        Outcome.SUCCEEDED,
        2,
    )
