"""The workers' side of the streams, played by a test against a live orchestrator: read the
commands it published, answer with reports as the m365-worker, ent-worker and CAS would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis as redis_sync

from sortie_core import streams
from sortie_core.broker import entry_fields
from sortie_core.events import (
    Evidence,
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    StepResult,
    Subject,
    Verification,
)
from sortie_testkit.waiting import wait_until

T = TypeVar("T")


def until(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """The first true value of `probe`, polled every 50 ms (`wait_until`)."""
    value = wait_until(probe, timeout, 0.05, what or str(probe))
    assert value is not None
    return value


def commands(url: str, stream: str, rid: str) -> list[tuple[float, dict[str, Any]]]:
    """(published at, epoch s; the command) of every entry of `rid` on `stream`."""
    client = redis_sync.Redis.from_url(url)
    try:
        return [
            (int(entry.decode().split("-")[0]) / 1000, json.loads(fields[b"data"]))
            for entry, fields in client.xrange(stream)
            if fields[b"request_id"].decode() == rid
        ]
    finally:
        client.close()


def step(action: str, recorded: dict[str, Any] | None = None, **extra: Any) -> StepResult:
    now = datetime.now(UTC)
    return StepResult(
        action=action,
        outcome=Outcome.SUCCEEDED,
        started_at=now,
        finished_at=now,
        verification=Verification.VERIFIED,
        evidence=Evidence(source="test worker", observed={"ok": True}, read_at=now),
        recorded=recorded,
        **extra,
    )


def publish(url: str, stream: str, event: Any) -> None:
    client = redis_sync.Redis.from_url(url)
    try:
        client.xadd(stream, entry_fields(event))  # type: ignore[arg-type]
    finally:
        client.close()


def report(url: str, rid: str, service: str, steps: list[StepResult]) -> None:
    publish(
        url,
        streams.REVOCATION_COMPLETED,
        RevocationCompleted(
            request_id=uuid.UUID(rid),
            subject=Subject(user_id="test"),
            service=service,
            steps=tuple(steps),
        ),
    )


def sso_done(url: str, rid: str) -> None:
    publish(
        url,
        streams.SSO_LOGOUT_COMPLETED,
        SsoLogoutCompleted(
            request_id=uuid.UUID(rid),
            subject=Subject(user_id="test"),
            steps=(step("destroy_all_sso_sessions"),),
        ),
    )


def answer_offboarding(url: str, rid: str, m365: list[StepResult]) -> None:
    """Phase 1 (m365 as given, ent's applications), then the SSO logout once asked."""
    until(lambda: commands(url, streams.OFFBOARD_REQUESTED, rid), what="offboard.requested")
    report(url, rid, "m365", m365)
    report(url, rid, "ent", [step("app_logout")])
    until(lambda: commands(url, streams.SSO_LOGOUT_REQUESTED, rid), what="sso.logout.requested")
    sso_done(url, rid)
