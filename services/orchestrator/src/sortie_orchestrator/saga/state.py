"""The saga's state: what one request is, and what a transition hands to the store.

`SagaState` is the request as stored (adapters/saga_store.py persists it with the messages
of a `Transition` in one atomic step); `Timeouts` are the saga's clocks, `HostPresence` what
the presence index says of a host. Nothing here does I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, PrivateAttr

from sortie_core.events import (
    Discovery,
    Envelope,
    Kind,
    Outcome,
    RequestFinished,
    SsoSession,
    StepError,
    StepResult,
    Subject,
    Target,
)
from sortie_core.services import expected_actions
from sortie_core.statuses import FINAL_STATUSES, RequestStatus
from sortie_core.steps import ended
from sortie_orchestrator.saga.phases import PhaseState
from sortie_orchestrator.saga.phases import next_at as next_phase_at

Status = RequestStatus
ServiceStateName = Literal["pending", "reported", "timed_out", "unreachable"]


class ServiceState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: ServiceStateName = "pending"
    steps: list[StepResult] = []
    reported_at: datetime | None = None
    # A report that arrived after the service was given up (kept for the record).
    late: bool = False
    # What the service learnt of where the user had access (from its report).
    discovery: Discovery | None = None
    # For a host: the age of its presence record when the request started.
    presence_age_s: float | None = None


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    detail: str | None = None


class AdminOrder(BaseModel):
    """What the administrator asked: `logoff` or `disconnect` of one session (by id),
    of the subject's sessions, or of every session on the hosts."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["logoff", "disconnect"]
    session_id: str | None = None
    all_sessions: bool = False
    group: str | None = None


class FollowUp(BaseModel):
    """The next delivery of one service's unfinished actions."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = 0
    next_at: datetime
    # The actions to send again; empty: every action (the service never reported).
    actions: list[str]
    last_error: str | None = None


class SagaState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Set on a state decoded for one transition only (the store's `apply`): its first
    # deep copy is itself, since nothing else holds it.
    _spare: bool = PrivateAttr(default=False)

    def __deepcopy__(self, memo: dict[int, object] | None = None) -> SagaState:
        if self._spare:
            self._spare = False
            return self
        # `model_copy(deep=True)` (every transition) through pydantic-core's JSON, ~4x
        # cheaper than copy.deepcopy over the nested models; the state round-trips, as
        # stored (doc_codec).
        return SagaState.model_validate_json(self.model_dump_json())

    request_id: uuid.UUID
    kind: Kind
    status: Status
    subject: Subject
    reason: str
    requested_by: str | None = None
    targets: list[Target] = []
    actions: list[str] = []
    # The SSO session's TGT is needed for phase 2 and dropped when the request ends.
    sso_session: SsoSession | None = Field(default=None, repr=False)
    created_at: datetime
    effective_at: datetime | None = None
    started_at: datetime | None = None
    phase1_deadline: datetime | None = None
    sso_requested_at: datetime | None = None
    sso_deadline: datetime | None = None
    finished_at: datetime | None = None
    services: dict[str, ServiceState] = {}
    sso: ServiceState | None = None
    timeline: list[TimelineEntry] = []
    # An administrator's order on workstation sessions (kind `workstation_admin`).
    admin: AdminOrder | None = None
    # Follow-up delivery after the deadline (followup.py), per service, until the horizon.
    followups: dict[str, FollowUp] = {}
    followup_until: datetime | None = None
    # When a request that had ended `partial`/`failed` became `completed`.
    healed_at: datetime | None = None
    # The offboarding profile (profiles.py): phase 0's options, and its later phases.
    profile: str | None = None
    options: dict[str, dict[str, JsonValue]] = {}
    phases: list[PhaseState] = []
    # Reversal (reversal.py): the offboarding it reverses / the reversal of this one.
    reverses: uuid.UUID | None = None
    reversed_by: uuid.UUID | None = None
    restore: dict[str, dict[str, JsonValue]] = {}
    issue_tap: bool = False
    # The X25519 public key the pass is sealed to (public: the private one is the caller's).
    tap_public_key: str | None = None
    tap_issued_at: datetime | None = None
    tap_revealed_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def next_deadline(self) -> datetime | None:
        if self.status == "scheduled":
            return self.effective_at
        if self.status == "in_progress":
            return self.phase1_deadline
        if self.status == "sso_logout":
            return self.sso_deadline
        if self.status in ("partial", "failed", "completed"):
            followup = min((f.next_at for f in self.followups.values()), default=None)
            due = [d for d in (followup, next_phase_at(self.phases)) if d]
            return min(due, default=None)
        return None

    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - (self.started_at or self.created_at)).total_seconds()


@dataclass(frozen=True, slots=True)
class Outgoing:
    stream: str
    event: Envelope


@dataclass
class Transition:
    state: SagaState
    messages: list[Outgoing] = field(default_factory=list)
    # A finished request finished again with another status (healed by a follow-up).
    refinished: bool = False

    @property
    def finished_now(self) -> bool:
        return any(isinstance(m.event, RequestFinished) for m in self.messages)


@dataclass(frozen=True, slots=True)
class Timeouts:
    phase1: timedelta
    sso: timedelta
    # Follow-up delivery: first retry after ~base, doubling up to max, until the horizon.
    followup_base: timedelta = timedelta(seconds=5)
    followup_max: timedelta = timedelta(minutes=10)
    followup_horizon: timedelta = timedelta(hours=24)
    # How long after the SSO logout was first asked it still waits for the CAS to list the
    # session's tickets when applications must be logged out first (app_logout_first).
    sso_apps_first: timedelta = timedelta(minutes=10)


DEFAULT_TIMEOUTS = Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60))


@dataclass(frozen=True, slots=True)
class HostPresence:
    """What the presence index says of one host holding a session of the subject."""

    host: str
    live: bool
    # Seconds since the agent last wrote its presence record (None: no record any more).
    age_s: float | None = None


def note(state: SagaState, at: datetime, event: str, detail: str | None = None) -> None:
    """Add a line to the request's timeline."""
    state.timeline.append(TimelineEntry(at=at, event=event, detail=detail))


def synthetic_steps(
    state: SagaState, service: str, outcome: Outcome, since: datetime, now: datetime, why: str
) -> list[StepResult]:
    """The steps of a service that did not report: each expected action, with `outcome`."""
    error = StepError(code=outcome.value, message=why, retryable=True)
    return [
        ended(action, outcome, started_at=since, finished_at=now, error=error)
        for action in expected_actions(state.kind, service, state.actions)
    ]


def all_services(state: SagaState) -> dict[str, ServiceState]:
    """Phase 1's services and the SSO logout, by name."""
    return {**state.services, **({"sso": state.sso} if state.sso else {})}
