"""Parsers of the session listings printed by Windows and Linux.

`query session` and `quser` print fixed-width columns whose headers and states are in the
system's language (`SESSIONNAME USERNAME ID STATE` in English, `SESSION UTILISATEUR ID
ÉTAT` in French); the `ID` header is the same everywhere and its numbers are right-aligned
under it, which is what these parsers key on. `loginctl list-sessions` prints JSON with
`--output=json` (systemd 250 and later) and a plain table before that.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import Session

_TOKEN = re.compile(r"\S+")
_COLUMN = re.compile(r"\S+(?: \S+)*")  # header columns are separated by 2+ spaces

# State words of Windows in the languages schools here use; anything else is lower-cased.
_WINDOWS_STATES = {
    "active": "active",
    "actif": "active",
    "aktiv": "active",
    "activo": "active",
    "attivo": "active",
    "disc": "disconnected",
    "déco": "disconnected",
    "deco": "disconnected",
    "getr.": "disconnected",
    "desc": "disconnected",
    "disco": "disconnected",
}


class TableError(ValueError):
    pass


def windows_state(word: str) -> str:
    return _WINDOWS_STATES.get(word.lower(), word.lower())


def parse_windows_table(text: str, *, user_first: bool) -> list[Session]:
    """`query session` (`user_first=False`) or `quser` (`user_first=True`) output."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise TableError("empty listing")
    header = lines[0]
    columns = [(m.start(), m.group()) for m in _COLUMN.finditer(header)]
    id_cols = [start + len(name) for start, name in columns if name.upper() == "ID"]
    if len(columns) < 3 or not id_cols:
        raise TableError(f"unrecognised header: {header.strip()[:80]!r}")
    id_end = id_cols[0]
    second_col = columns[1][0]
    sessions = []
    for line in lines[1:]:
        tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(line, 1)]
        at = next(
            (
                i
                for i, (_s, end, tok) in enumerate(tokens)
                if tok.isdigit() and abs(end - id_end) <= 1
            ),
            None,
        )
        if at is None or at + 1 >= len(tokens):
            continue
        first = [t for s, _e, t in tokens[:at] if s < second_col - 1]
        second = [t for s, _e, t in tokens[:at] if s >= second_col - 1]
        name, user = (second, first) if user_first else (first, second)
        if not user:
            continue  # services, listeners: no user
        sessions.append(
            Session(
                id=int(tokens[at][2]),
                user=" ".join(user),
                state=windows_state(tokens[at + 1][2]),
                station=" ".join(name) or None,
            )
        )
    return sessions


def parse_loginctl_json(text: str) -> list[Session]:
    try:
        rows: Any = json.loads(text or "[]")
        return [
            Session(
                id=_session_id(str(row["session"])),
                user=str(row["user"]),
                state=str(row.get("state") or "active"),
                station=row.get("seat") or row.get("tty") or None,
            )
            for row in rows
            if row.get("user")
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise TableError("unreadable loginctl JSON") from err


_LOGINCTL_ROW = re.compile(r"^\s*(\S+)\s+(\d+)\s+(\S+)(?:\s+(\S+))?(?:\s+(\S+))?")


def parse_loginctl_text(text: str) -> list[Session]:
    """The table of older systemd: `SESSION UID USER SEAT TTY`, then `N sessions listed.`"""
    sessions = []
    for line in text.splitlines():
        match = _LOGINCTL_ROW.match(line)
        if match is None:
            continue
        sid, _uid, user, seat, tty = match.groups()
        sessions.append(Session(_session_id(sid), user, "active", seat or tty))
    return sessions


def _session_id(raw: str) -> int | str:
    # systemd ids are strings (`3`, `c1`); Windows and MultiPoint ids are numbers.
    return int(raw) if raw.isdigit() else raw


def parse_wms_json(text: str) -> list[Session]:
    """`Get-WmsSession | Select-Object SessionId,UserName,SessionState,StationId |
    ConvertTo-Json`: one object for one session, an array otherwise, nothing for none."""
    if not text.strip():
        return []
    try:
        data: Any = json.loads(text)
        rows = data if isinstance(data, list) else [data]
        return [
            Session(
                id=int(row["SessionId"]),
                user=str(row["UserName"]),
                state=str(row.get("SessionState") or "unknown").lower(),
                station=None if row.get("StationId") is None else str(row["StationId"]),
            )
            for row in rows
            if row.get("UserName")
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise TableError("unreadable Get-WmsSession JSON") from err
