"""One contract for `SessionBackend`, run against the in-memory `FakeSessions`, against
`SimulatedSessions` talking to the workstations simulator, and against the command
backends (Windows, MultiPoint, systemd) running the fake commands of tests/workstation/bin
as subprocesses. An action a platform has no command for (Windows cannot lock, systemd
cannot disconnect) is a `PermanentError` that changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import pytest

from sortie_core.errors import NotFoundError, PermanentError
from sortie_core.steps import StepSkipped
from sortie_simulators import workstations
from sortie_workstation.adapters import SessionAction, SessionBackend, SessionId
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.adapters.simulated import SimulatedSessions
from sortie_workstation.adapters.system import LinuxSessions, MultiPointSessions, WindowsSessions
from tests.workstation.conftest import Machine

STATES = {SessionAction.DISCONNECT: "disconnected", SessionAction.LOCK: "locked"}


class Peer(Protocol):
    """What a contract test needs of a machine: sessions to open, and what is left."""

    def open(self, user: str) -> SessionId: ...

    def left(self) -> list[tuple[str, str, str]]:
        """(id, user, state) of every session, by id."""


@dataclass
class FakePeer:
    fake: FakeSessions
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def open(self, user: str) -> SessionId:
        sid = next(self.ids)
        self.fake.open(sid, user)
        return sid

    def left(self) -> list[tuple[str, str, str]]:
        return sorted((str(s.id), s.user, s.state) for s in self.fake.sessions.values())


@dataclass
class SimulatedPeer:
    sim: workstations.WorkstationsSimulator

    def open(self, user: str) -> SessionId:
        return self.sim.logon(self.sim.add_host("pc-1"), user).id

    def left(self) -> list[tuple[str, str, str]]:
        host = self.sim.add_host("pc-1")
        return sorted((str(s.id), s.user, s.state) for s in host.sessions.values())


@dataclass
class MachinePeer:
    machine: Machine
    station: str
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def open(self, user: str) -> SessionId:
        sid = next(self.ids)
        row = {"id": sid, "user": user, "state": "active", "station": self.station}
        self.machine.set(sessions=[*self.machine.sessions, row])
        return sid

    def left(self) -> list[tuple[str, str, str]]:
        return sorted((str(s["id"]), s["user"], s["state"]) for s in self.machine.sessions)


@dataclass
class Subject:
    backend: SessionBackend
    peer: Peer
    cannot: frozenset[SessionAction] = frozenset()


def on_machine(request: pytest.FixtureRequest, backend: SessionBackend, station: str) -> Peer:
    machine: Machine = request.getfixturevalue("machine")
    return MachinePeer(machine, station)


@pytest.fixture(params=["fake", "simulated", "windows", "multipoint", "linux"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    kind = request.param
    if kind == "fake":
        fake = FakeSessions()
        yield Subject(fake, FakePeer(fake))
    elif kind == "simulated":
        app = workstations.create_app()
        app.state.sim.add_host("pc-1")  # an agent's host is known to the simulator
        backend = SimulatedSessions(
            "http://ws.test", "pc-1", transport=httpx.ASGITransport(app=app)
        )
        yield Subject(backend, SimulatedPeer(app.state.sim))
        await backend.aclose()
    elif kind == "windows":
        windows = WindowsSessions(timeout_s=10, browser_grace_s=0.1)
        yield Subject(
            windows, on_machine(request, windows, "console"), frozenset({SessionAction.LOCK})
        )
    elif kind == "multipoint":
        multipoint = MultiPointSessions(powershell="pwsh", timeout_s=10)
        yield Subject(multipoint, on_machine(request, multipoint, "1"))
    else:
        linux = LinuxSessions(timeout_s=10, browser_grace_s=0.1)
        yield Subject(
            linux, on_machine(request, linux, "seat0"), frozenset({SessionAction.DISCONNECT})
        )


async def test_lists_every_session(subject: Subject) -> None:
    assert await subject.backend.list_sessions() == []
    first, second = subject.peer.open("alice"), subject.peer.open("bob")
    listed = await subject.backend.list_sessions()
    assert [(str(s.id), s.user, s.state) for s in listed] == [
        (str(first), "alice", "active"),
        (str(second), "bob", "active"),
    ]
    assert subject.peer.left() == [(str(s.id), s.user, s.state) for s in listed]


async def test_logoff_ends_one_session(subject: Subject) -> None:
    alice, bob = subject.peer.open("alice"), subject.peer.open("bob")
    await subject.backend.logoff(alice)
    assert subject.peer.left() == [(str(bob), "bob", "active")]


@pytest.mark.parametrize("action", [SessionAction.DISCONNECT, SessionAction.LOCK])
async def test_disconnect_and_lock_keep_the_session(
    subject: Subject, action: SessionAction
) -> None:
    sid = subject.peer.open("alice")
    act = subject.backend.disconnect if action is SessionAction.DISCONNECT else subject.backend.lock
    if action in subject.cannot:
        with pytest.raises(PermanentError):
            await act(sid)
        assert subject.peer.left() == [(str(sid), "alice", "active")]
        return
    await act(sid)
    # Read on the machine: logind lists no lock state (a lock is the screen locker's
    # `LockedHint`, https://www.freedesktop.org/software/systemd/man/latest/org.freedesktop.login1.html).
    assert subject.peer.left() == [(str(sid), "alice", STATES[action])]


async def test_a_gone_session_is_not_found(subject: Subject) -> None:
    sid = subject.peer.open("alice")
    await subject.backend.logoff(sid)
    with pytest.raises(NotFoundError):
        await subject.backend.logoff(sid)
    with pytest.raises(NotFoundError):
        await subject.backend.logoff(99)


async def test_an_id_no_session_manager_gives_is_refused_unsent(subject: Subject) -> None:
    sid = subject.peer.open("alice")
    for bad in ("1; shutdown", f"{sid} /server:x", ""):
        with pytest.raises(PermanentError) as info:
            await subject.backend.logoff(bad)
        assert info.value.code == "invalid_session"
    assert subject.peer.left() == [(str(sid), "alice", "active")]


async def test_closing_browsers_says_what_was_done_or_skips(subject: Subject) -> None:
    subject.peer.open("alice")
    try:
        done = await subject.backend.close_browsers("alice")
    except StepSkipped:
        return
    assert done and isinstance(done, str)
    assert subject.peer.left()[0][1:] == ("alice", "active")
