from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from sortie_core.http import parse_retry_after


def test_retry_after_seconds_date_and_junk():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = datetime.now(UTC) + timedelta(seconds=30)
    value = parse_retry_after(format_datetime(later, usegmt=True))
    assert value is not None and 27 <= value <= 30
    assert parse_retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0
