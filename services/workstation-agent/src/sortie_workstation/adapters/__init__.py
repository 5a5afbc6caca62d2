"""The contract between the agent and the machine's session manager.

Implementations translate failures into Sortie's error tree (`sortie_core.errors`):
`NotFoundError` for a session that is already gone, `TransientError` for what is worth
retrying, `PermanentError` for the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sortie_core.errors import PermanentError


class SessionAction(StrEnum):
    LOGOFF = "logoff"  # ends the session and its programs
    DISCONNECT = "disconnect"  # detaches the user; programs keep running
    LOCK = "lock"  # the session stays, behind the lock screen


# Windows and MultiPoint number sessions; systemd names them (`3`, `c1`).
SessionId = int | str


@dataclass(frozen=True, slots=True)
class Session:
    id: SessionId
    user: str
    state: str  # as the backend names it: `active`, `disconnected`, `locked`, …
    station: str | None = None


def account_name(user: str) -> str:
    """`SCHOOL\\Alice` and `alice` are the same account here: lower-case, no domain."""
    return user.rsplit("\\", 1)[-1].strip().lower()


# What Windows, MultiPoint and systemd name a session by; anything else never reaches a
# command line or a URL.
_SAFE_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


class ActsOnSessions:
    """The three session actions of `SessionBackend` as one `_act`, for implementations
    whose actions differ only by name (a command, a URL path, a state change). A session
    id that no session manager could have given is refused (`invalid_session`)."""

    async def _act(self, session_id: SessionId, action: SessionAction) -> None:
        raise NotImplementedError

    async def _checked(self, session_id: SessionId, action: SessionAction) -> None:
        if not _SAFE_ID.fullmatch(str(session_id)):
            raise PermanentError(
                f"invalid session id {str(session_id)[:40]!r}", code="invalid_session"
            )
        await self._act(session_id, action)

    async def logoff(self, session_id: SessionId) -> None:
        await self._checked(session_id, SessionAction.LOGOFF)

    async def disconnect(self, session_id: SessionId) -> None:
        await self._checked(session_id, SessionAction.DISCONNECT)

    async def lock(self, session_id: SessionId) -> None:
        await self._checked(session_id, SessionAction.LOCK)


class SessionBackend(Protocol):
    async def list_sessions(self) -> list[Session]:
        """Every user session open on this machine."""

    async def logoff(self, session_id: SessionId) -> None: ...

    async def disconnect(self, session_id: SessionId) -> None: ...

    async def lock(self, session_id: SessionId) -> None: ...

    async def close_browsers(self, account: str) -> str:
        """End `account`'s browser processes (cleanly, then forcibly after a grace
        period); returns what was done. Raises `StepSkipped` where there are none."""

    async def aclose(self) -> None: ...
