"""One contract for `SsoSessions`, run against the in-memory fake and against the real
HTTP adapter talking to the CAS simulator, so the fake cannot drift from Apereo's
behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from sortie_core.errors import PermanentError
from sortie_core.events import ServiceTicket
from sortie_ent.adapters import SsoSessions
from sortie_ent.adapters.fake import FakeSsoSessions
from sortie_ent.adapters.http import CasRestSessions
from sortie_simulators import cas
from sortie_testkit.redis_server import free_port

A = ServiceTicket(service="https://a.ent.test/", ticket="ST-1-a")
B = ServiceTicket(service="https://b.ent.test/", ticket="ST-2-b")


class Cas(Protocol):
    """What a contract test needs of a CAS: sessions to put in, and faults to set."""

    def login(self, tgt: str, user: str, *services: ServiceTicket) -> None: ...

    def fault(self, *, keep_sessions: bool = False, rest_missing: bool = False) -> None: ...


@dataclass
class FakeCas:
    fake: FakeSsoSessions

    def login(self, tgt: str, user: str, *services: ServiceTicket) -> None:
        self.fake.login(tgt, user, *services)

    def fault(self, *, keep_sessions: bool = False, rest_missing: bool = False) -> None:
        self.fake.keep_sessions_on_delete = keep_sessions
        self.fake.rest_missing = rest_missing


@dataclass
class SimulatedCas:
    sim: cas.CasSimulator

    def login(self, tgt: str, user: str, *services: ServiceTicket) -> None:
        made = self.sim.create_tgt(user, tgt)
        for st in services:
            self.sim.grant(made, st.service, st.ticket)

    def fault(self, *, keep_sessions: bool = False, rest_missing: bool = False) -> None:
        self.sim.faults.keep_sessions_on_delete = keep_sessions
        self.sim.faults.tickets_api_missing = rest_missing


@pytest.fixture(params=["fake", "http"])
async def pair(
    request: pytest.FixtureRequest, serve: Callable[[Any], str]
) -> AsyncIterator[tuple[SsoSessions, Cas]]:
    if request.param == "fake":
        fake = FakeSsoSessions()
        yield fake, FakeCas(fake)
        return
    app = cas.create_app()
    adapter = CasRestSessions(serve(app) + "/cas")
    yield adapter, SimulatedCas(app.state.sim)
    await adapter.aclose()


async def tgts(sso: SsoSessions, user: str) -> list[str]:
    return [s.tgt for s in await sso.user_sessions(user)]


async def test_lists_the_users_sessions_and_their_services(
    pair: tuple[SsoSessions, Cas],
) -> None:
    sso, peer = pair
    peer.login("TGT-1-alice", "alice", A, B)
    peer.login("TGT-2-alice", "alice")
    peer.login("TGT-3-bob", "bob", A)
    sessions = await sso.user_sessions("Alice")
    assert [(s.tgt, s.services) for s in sessions] == [("TGT-1-alice", (A, B)), ("TGT-2-alice", ())]
    assert await sso.user_sessions("nobody") == []
    assert sso.source == "cas ssoSessions actuator"


async def test_tgt_delete_answers_the_same_for_a_known_and_an_unknown_tgt(
    pair: tuple[SsoSessions, Cas],
) -> None:
    sso, peer = pair
    peer.login("TGT-1-alice", "alice", A)
    peer.login("TGT-2-alice", "alice")
    await sso.destroy_ticket("TGT-unknown")
    await sso.destroy_ticket("TGT-1-alice")
    assert await tgts(sso, "alice") == ["TGT-2-alice"]


async def test_user_delete_ends_every_session_of_the_user_only(
    pair: tuple[SsoSessions, Cas],
) -> None:
    sso, peer = pair
    peer.login("TGT-1-alice", "alice", A)
    peer.login("TGT-2-alice", "alice")
    peer.login("TGT-3-bob", "bob")
    await sso.destroy_user_sessions("Alice")  # Apereo matches the user case-insensitively
    assert await tgts(sso, "alice") == []
    assert await tgts(sso, "bob") == ["TGT-3-bob"]
    await sso.destroy_user_sessions("alice")  # nothing left: still fine


async def test_a_lying_cas_accepts_and_keeps(pair: tuple[SsoSessions, Cas]) -> None:
    sso, peer = pair
    peer.login("TGT-1-alice", "alice", A)
    peer.fault(keep_sessions=True)
    await sso.destroy_ticket("TGT-1-alice")
    await sso.destroy_user_sessions("alice")
    assert await tgts(sso, "alice") == ["TGT-1-alice"]


async def test_a_missing_rest_module_is_a_permanent_error(pair: tuple[SsoSessions, Cas]) -> None:
    sso, peer = pair
    peer.login("TGT-1-alice", "alice")
    peer.fault(rest_missing=True)
    with pytest.raises(PermanentError) as info:
        await sso.destroy_ticket("TGT-1-alice")
    assert info.value.code == "cas_rest_missing"
    assert "TGT-1" not in str(info.value)
    assert await tgts(sso, "alice") == ["TGT-1-alice"]


@pytest.mark.parametrize("kind", ["fake", "http"])
async def test_without_the_actuator_nothing_can_be_read(kind: str) -> None:
    sso: SsoSessions
    if kind == "fake":
        sso = FakeSsoSessions(actuator=False)
    else:
        # Nothing listens there: a request sent would fail as unreachable instead.
        sso = CasRestSessions(f"http://127.0.0.1:{free_port()}/cas", actuator=False)
    for call in (sso.user_sessions, sso.destroy_user_sessions):
        with pytest.raises(PermanentError) as info:
            await call("alice")
        assert info.value.code == "cas_actuator_not_configured"
    await sso.aclose()
