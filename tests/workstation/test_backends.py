"""The command backends running real subprocesses: the fakes in `bin/` behave like the
Windows, MultiPoint and systemd commands, exit codes and messages included."""

from __future__ import annotations

import time

import pytest

from sortie_core.errors import NotFoundError, PermanentError, TransientError
from sortie_core.events import Outcome
from sortie_core.steps import RetryPolicy
from sortie_workstation.adapters import Session, SessionAction
from sortie_workstation.adapters.commands import CommandFailed, run
from sortie_workstation.adapters.system import LinuxSessions, MultiPointSessions, WindowsSessions
from sortie_workstation.bootstrap import detect_backend, make_backend
from sortie_workstation.handlers import close_browsers, end_sessions, handle_logout
from sortie_workstation.settings import AgentSettings
from tests.support.workers import logout
from tests.workstation.conftest import Machine

POLICY = RetryPolicy(max_attempts=2, base_s=0.001, max_s=0.002)
TWO = [
    {"id": 1, "user": "alice", "state": "active", "station": "console"},
    {"id": 2, "user": "bob", "state": "active", "station": "rdp-tcp#1"},
]


@pytest.mark.parametrize("lang", ["en", "fr"])
async def test_windows_lists_logs_off_and_disconnects(machine: Machine, lang: str) -> None:
    machine.set(lang=lang, sessions=TWO)
    backend = WindowsSessions(timeout_s=10)
    assert await backend.list_sessions() == [
        Session(1, "alice", "active", "console"),
        Session(2, "bob", "active", "rdp-tcp#1"),
    ]
    await backend.disconnect(2)
    await backend.logoff(1)
    assert machine.sessions == [{**TWO[1], "state": "disconnected"}]
    assert [c for c in machine.calls if c[0] != "query"] == [["tsdiscon", "2"], ["logoff", "1"]]
    assert [s.state for s in await backend.list_sessions()] == ["disconnected"]


async def test_windows_gone_session_is_not_found_other_failures_keep_the_message(
    machine: Machine,
) -> None:
    machine.set(sessions=TWO)
    backend = WindowsSessions(timeout_s=10)
    with pytest.raises(NotFoundError, match="Session ID 9 not found"):
        await backend.logoff(9)
    machine.set(fail={"logoff": {"rc": 5, "stderr": "Access is denied."}})
    with pytest.raises(CommandFailed, match="exited 5: Access is denied") as info:
        await backend.logoff(1)
    assert info.value.code == "command_failed"
    with pytest.raises(PermanentError, match="cannot lock"):
        await backend.lock(1)
    with pytest.raises(PermanentError, match="invalid session id"):
        await backend.logoff("1; shutdown")


async def test_a_hung_command_is_killed_at_its_timeout(machine: Machine) -> None:
    machine.set(sessions=TWO, hang={"query": 30})
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"did not answer within 0\.5s") as info:
        await WindowsSessions(timeout_s=0.5).list_sessions()
    assert info.value.code == "command_timeout"
    assert time.monotonic() - started < 5


async def test_missing_command_is_permanent() -> None:
    with pytest.raises(PermanentError, match="is not installed"):
        await run(["sortie-no-such-command-xyz"], timeout_s=1)


async def test_multipoint_end_suspend_lock(machine: Machine) -> None:
    machine.set(sessions=[*TWO, {"id": 5, "user": "carol", "state": "active", "station": "3"}])
    backend = MultiPointSessions(powershell="pwsh", timeout_s=10)
    assert [(s.id, s.user) for s in await backend.list_sessions()] == [
        (1, "alice"),
        (2, "bob"),
        (5, "carol"),
    ]
    await backend.lock(5)
    await backend.disconnect(2)
    await backend.logoff(1)
    assert [(s["id"], s["state"]) for s in machine.sessions] == [
        (2, "disconnected"),
        (5, "locked"),
    ]
    scripts = [c[-1] for c in machine.calls if not c[-1].startswith("Get-")]
    assert scripts == [
        "Lock-WmsSession -SessionId 5",
        "Disconnect-WmsSession -SessionId 2",
        "Close-WmsSession -SessionId 1 -Confirm:$false",
    ]
    with pytest.raises(NotFoundError, match="could not be found"):
        await backend.logoff(1)
    machine.set(sessions=[TWO[0]])
    assert await backend.list_sessions() == [Session(1, "alice", "active", "console")]
    machine.set(sessions=[])
    assert await backend.list_sessions() == []


@pytest.mark.parametrize("json_output", [True, False])
async def test_linux_lists_terminates_and_locks(machine: Machine, json_output: bool) -> None:
    machine.set(
        loginctl_json=json_output,
        sessions=[
            {"id": "3", "user": "alice", "state": "active", "station": "seat0"},
            {"id": "c1", "user": "bob", "state": "active", "station": "seat0"},
        ],
    )
    backend = LinuxSessions(timeout_s=10)
    assert [(s.id, s.user) for s in await backend.list_sessions()] == [(3, "alice"), ("c1", "bob")]
    await backend.lock("c1")
    await backend.logoff(3)
    assert machine.sessions == [{"id": "c1", "user": "bob", "state": "locked", "station": "seat0"}]
    with pytest.raises(NotFoundError, match="No session '3' known"):
        await backend.logoff(3)
    with pytest.raises(PermanentError, match="cannot disconnect"):
        await backend.disconnect("c1")
    await backend.terminate_user("bob")
    assert machine.sessions == []


async def test_logout_step_through_real_commands(machine: Machine) -> None:
    machine.set(sessions=[*TWO, {"id": 4, "user": "SCHOOL\\Alice", "state": "active"}])
    result = await handle_logout(
        logout(), host="pc-1", backend=WindowsSessions(timeout_s=10), policy=POLICY
    )
    [step] = result.steps
    assert (step.action, step.outcome) == ("logoff", Outcome.SUCCEEDED)
    assert step.detail == "logoff of sessions 1, 4"
    assert [s["user"] for s in machine.sessions] == ["bob"]


async def test_failed_command_is_reported_with_its_own_message(machine: Machine) -> None:
    machine.set(sessions=TWO, fail={"tsdiscon": {"rc": 1, "stderr": "Error 5: Access denied"}})
    step = await end_sessions(
        "bob",
        SessionAction.DISCONNECT,
        host="pc-1",
        backend=WindowsSessions(timeout_s=10),
        policy=POLICY,
    )
    assert step.outcome is Outcome.FAILED
    assert step.error is not None and "Error 5: Access denied" in step.error.message


@pytest.mark.parametrize("backend_kind", ["linux", "windows"])
async def test_shared_station_closes_browsers_then_logs_off(
    machine: Machine, backend_kind: str
) -> None:
    names = ("firefox", "chrome") if backend_kind == "linux" else ("firefox.exe", "msedge.exe")
    machine.set(
        sessions=[TWO[0]],
        procs=[
            {"user": "alice", "name": names[0]},
            {"user": "alice", "name": names[1], "stubborn": True},
            {"user": "bob", "name": names[0]},
        ],
    )
    backend = (
        LinuxSessions(timeout_s=10, browser_grace_s=0.3)
        if backend_kind == "linux"
        else WindowsSessions(timeout_s=10, browser_grace_s=0.3)
    )
    result = await handle_logout(
        logout(),
        host="pc-1",
        backend=backend,
        policy=POLICY,
        session_policy="disconnect",
        shared_station=True,
    )
    assert [(s.action, s.outcome) for s in result.steps] == [
        ("close_browsers", Outcome.SUCCEEDED),
        ("logoff", Outcome.SUCCEEDED),
    ]
    assert result.steps[0].detail == "browsers forced to close after 0.3s"
    assert machine.state()["procs"] == [{"user": "bob", "name": names[0]}]
    assert machine.sessions == []
    again = await close_browsers("alice", host="pc-1", backend=backend, policy=POLICY)
    assert again.detail == "no browser open"


def test_backend_is_chosen_by_configuration_or_platform() -> None:
    def settings(**kw: object) -> AgentSettings:
        return AgentSettings(host="pc-1", **kw)  # type: ignore[arg-type]

    assert isinstance(make_backend(settings(backend="windows")), WindowsSessions)
    assert isinstance(make_backend(settings(backend="linux")), LinuxSessions)
    multipoint = make_backend(settings(backend="multipoint", powershell="pwsh"))
    assert isinstance(multipoint, MultiPointSessions) and multipoint.powershell == "pwsh"
    assert detect_backend(settings(backend="auto"), platform="win32") == "windows"
    assert detect_backend(settings(backend="auto"), platform="linux") == "linux"
    with pytest.raises(ValueError, match="backend"):
        settings(backend="macos")
    with pytest.raises(ValueError, match="group"):
        settings(group="room b12")


@pytest.mark.parametrize("lang", ["en", "fr"])
async def test_windows_listing_through_quser(machine: Machine, lang: str) -> None:
    machine.set(lang=lang, sessions=[TWO[0], {**TWO[1], "state": "disconnected"}])
    backend = WindowsSessions(quser=True, timeout_s=10)
    assert await backend.list_sessions() == [
        Session(1, "alice", "active", "console"),
        Session(2, "bob", "disconnected", None),
    ]
    machine.set(sessions=[])
    assert await backend.list_sessions() == []  # "No User exists for *", exit 1
    machine.set(fail={"quser": {"rc": 5, "stderr": "Error 0x000006BA enumerating sessionnames"}})
    with pytest.raises(CommandFailed, match="0x000006BA"):
        await backend.list_sessions()
