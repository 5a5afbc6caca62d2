"""An in-memory `SessionBackend` for tests: sessions, recorded calls, scripted failures."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortie_core.errors import NotFoundError

from . import ActsOnSessions, Session, SessionAction, SessionId


def _order(session: Session) -> tuple[int, int, str]:
    sid = session.id
    return (0, sid, "") if isinstance(sid, int) else (1, 0, sid)


@dataclass
class FakeSessions(ActsOnSessions):
    sessions: dict[SessionId, Session] = field(default_factory=dict)
    calls: list[tuple[str, SessionId]] = field(default_factory=list)
    list_calls: int = 0
    # What the next `list_sessions` / actions raise, one per call (None: succeed).
    list_failures: list[Exception | None] = field(default_factory=list)
    action_failures: list[Exception | None] = field(default_factory=list)
    closed: bool = False
    # Accept every action and change nothing (a host whose logoff silently fails).
    lying: bool = False

    def open(
        self, session_id: SessionId, user: str, state: str = "active", station: str = "0"
    ) -> None:
        self.sessions[session_id] = Session(session_id, user, state, station)

    async def list_sessions(self) -> list[Session]:
        self.list_calls += 1
        error = self.list_failures.pop(0) if self.list_failures else None
        if error is not None:
            raise error
        return sorted(self.sessions.values(), key=_order)

    async def _act(self, session_id: SessionId, action: SessionAction) -> None:
        self.calls.append((action.value, session_id))
        error = self.action_failures.pop(0) if self.action_failures else None
        if error is not None:
            raise error
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFoundError(f"session {session_id} is gone")
        if self.lying:
            return
        if action is SessionAction.LOGOFF:
            del self.sessions[session_id]
        else:
            state = "disconnected" if action is SessionAction.DISCONNECT else "locked"
            self.sessions[session_id] = Session(session.id, session.user, state, session.station)

    async def close_browsers(self, account: str) -> str:
        self.calls.append(("close_browsers", account))
        error = self.action_failures.pop(0) if self.action_failures else None
        if error is not None:
            raise error
        return f"browsers of {account} closed"

    async def aclose(self) -> None:
        self.closed = True
