"""`--at` values: ISO 8601 (a time without a zone is local time), `now`, or a delay
such as `+30m`, `+2h`, `+1d`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DELAY = re.compile(r"^\+(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.lower() == "now":
        return now
    delay = _DELAY.match(value)
    if delay:
        return now + timedelta(**{_UNITS[delay.group(2)]: int(delay.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"cannot read the time {text!r}: use ISO 8601 (2027-06-30T18:00), now, or +2h"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # the machine's local time zone
    return parsed.astimezone(UTC)
