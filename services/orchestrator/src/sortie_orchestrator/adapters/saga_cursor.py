"""The listing's cursor: where a page ended (score, request id), opaque to the client."""

from __future__ import annotations

import base64
import uuid


def encode_cursor(pos: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{pos[0]}:{pos[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, rid = raw.split(":", 1)
        uuid.UUID(rid)
        return int(score), rid
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
