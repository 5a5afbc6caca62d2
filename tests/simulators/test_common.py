from __future__ import annotations

import pytest

from sortie_simulators.common import TokenBucket, retry_after
from sortie_simulators.logout_messages import (
    InvalidLogoutMessage,
    logout_request_xml,
    parse_logout_request,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_one_second_of_burst_then_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, clock)
    assert [bucket.take() for _ in range(5)] == [None] * 5
    wait = bucket.take()
    assert wait == pytest.approx(0.2)
    clock.now += 0.2
    assert bucket.take() is None
    clock.now += 100
    assert sum(bucket.take() is None for _ in range(10)) == 5  # capacity stays one second


def test_slow_bucket_holds_one_token_and_asks_for_whole_seconds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.25, clock)
    assert bucket.take() is None
    wait = bucket.take()
    assert wait == pytest.approx(4.0)
    assert retry_after(wait or 0) == "4"
    assert retry_after(0.01) == "1"
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_logout_request_round_trip_escapes_values() -> None:
    xml = logout_request_xml("ST-1&2", "o'brien<x>", "LR-1", "2026-11-21T10:00:00Z")
    message = parse_logout_request(xml)
    assert message.session_index == "ST-1&2"
    assert message.name_id == "o'brien<x>"


def test_logout_request_without_name_id_is_accepted() -> None:
    xml = (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
        "<samlp:SessionIndex>ST-9</samlp:SessionIndex></samlp:LogoutRequest>"
    )
    message = parse_logout_request(xml.encode())
    assert (message.name_id, message.session_index) == (None, "ST-9")


def test_external_entity_is_refused() -> None:
    xml = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
        "<samlp:SessionIndex>&x;</samlp:SessionIndex></samlp:LogoutRequest>"
    )
    with pytest.raises(InvalidLogoutMessage, match="DOCTYPE"):
        parse_logout_request(xml)
