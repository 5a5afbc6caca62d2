"""Who is signed in to the console (`Viewer`) and how a session is named; the sessions
and the audit themselves are kept by `adapters/console_store.py` (`Deps.console`)."""

from sortie_orchestrator.adapters.console_store import (
    AUDIT,
    SESSIONS,
    Viewer,
    record_of,
    session_hash,
    session_key,
)

__all__ = ["AUDIT", "SESSIONS", "Viewer", "record_of", "session_hash", "session_key"]
