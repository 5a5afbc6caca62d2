"""An in-memory `SessionBackend` for tests: sessions, recorded calls, scripted failures."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortie_core.errors import NotFoundError

from . import Session, SessionAction


@dataclass
class FakeSessions:
    sessions: dict[int, Session] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)
    list_calls: int = 0
    # What the next `list_sessions` / actions raise, one per call (None: succeed).
    list_failures: list[Exception | None] = field(default_factory=list)
    action_failures: list[Exception | None] = field(default_factory=list)
    closed: bool = False

    def open(self, session_id: int, user: str, state: str = "active", station: str = "0") -> None:
        self.sessions[session_id] = Session(session_id, user, state, station)

    async def list_sessions(self) -> list[Session]:
        self.list_calls += 1
        error = self.list_failures.pop(0) if self.list_failures else None
        if error is not None:
            raise error
        return sorted(self.sessions.values(), key=lambda s: s.id)

    async def _act(self, session_id: int, action: SessionAction) -> None:
        self.calls.append((action.value, session_id))
        error = self.action_failures.pop(0) if self.action_failures else None
        if error is not None:
            raise error
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFoundError(f"session {session_id} is gone")
        if action is SessionAction.LOGOFF:
            del self.sessions[session_id]
        else:
            state = "disconnected" if action is SessionAction.DISCONNECT else "locked"
            self.sessions[session_id] = Session(session.id, session.user, state, session.station)

    async def logoff(self, session_id: int) -> None:
        await self._act(session_id, SessionAction.LOGOFF)

    async def disconnect(self, session_id: int) -> None:
        await self._act(session_id, SessionAction.DISCONNECT)

    async def lock(self, session_id: int) -> None:
        await self._act(session_id, SessionAction.LOCK)

    async def aclose(self) -> None:
        self.closed = True
