"""The event contract: every message on Sortie's streams.

Commands read as orders (`*.requested`), events in the past tense (`*.completed`,
`request.finished`). Every message is a frozen pydantic model that carries the common
envelope and a `type` literal; `decode_event` reads any of them through one discriminated
union. Unknown fields are ignored so that a newer producer does not break an older consumer;
`version` changes when a field changes meaning.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

CONTRACT_VERSION = 1

UserId = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(max_length=500)]
# `m365`, `ent`, `sso` or `workstation:<host>`
ServiceName = Annotated[
    str, Field(pattern=r"^(m365|ent|sso|workstation:[a-z0-9][a-z0-9_-]{0,62})$")
]
ActionName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-z0-9_:.\-]+$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Target(StrEnum):
    M365 = "m365"
    ENT = "ent"
    WORKSTATIONS = "workstations"


class Outcome(StrEnum):
    """Outcome of one step. The last two are written by the orchestrator only."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"


GOOD_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.NOT_FOUND, Outcome.SKIPPED})


class Kind(StrEnum):
    LOGOUT = "logout"
    OFFBOARD = "offboard"
    # An administrator's action on workstation sessions (no SSO phase).
    WORKSTATION_ADMIN = "workstation_admin"


class M365Action(StrEnum):
    BLOCK_SIGN_IN = "block_sign_in"
    RESET_PASSWORD = "reset_password"
    REVOKE_SESSIONS = "revoke_sessions"
    DISABLE_MAIL_PROTOCOLS = "disable_mail_protocols"


OFFBOARD_M365_ORDER: tuple[M365Action, ...] = (
    M365Action.BLOCK_SIGN_IN,
    M365Action.RESET_PASSWORD,
    M365Action.REVOKE_SESSIONS,
    M365Action.DISABLE_MAIL_PROTOCOLS,
)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Subject(Frozen):
    """Who the request is about, as each system names them."""

    user_id: UserId
    upn: Annotated[str, Field(max_length=320)] | None = None
    cas_username: Annotated[str, Field(max_length=256)] | None = None
    windows_account: Annotated[str, Field(max_length=256)] | None = None

    @property
    def sso_username(self) -> str:
        return self.cas_username or self.user_id

    @property
    def workstation_account(self) -> str:
        return (self.windows_account or self.cas_username or self.user_id).lower()


class ServiceTicket(Frozen):
    service: Annotated[str, Field(min_length=1, max_length=2048)]
    # A consumed one-time ticket; still kept out of reprs.
    ticket: str = Field(min_length=1, max_length=256, repr=False)


class SsoSession(Frozen):
    # The TGT is a bearer credential for the whole SSO session: never shown.
    tgt: str | None = Field(default=None, max_length=256, repr=False)
    service_tickets: Annotated[tuple[ServiceTicket, ...], Field(max_length=200)] = ()


class Envelope(Frozen):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    version: int = CONTRACT_VERSION
    request_id: uuid.UUID
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    subject: Subject


class LogoutRequested(Envelope):
    type: Literal["logout.requested"] = "logout.requested"
    reason: ShortText = "user_logout"
    targets: tuple[Target, ...] = (Target.M365, Target.ENT, Target.WORKSTATIONS)
    sso_session: SsoSession | None = None
    deadline: AwareDatetime


class OffboardRequested(Envelope):
    type: Literal["offboard.requested"] = "offboard.requested"
    reason: ShortText = "offboarding"
    requested_by: ShortText = "unknown"
    # Empty means every action of every service.
    actions: tuple[ActionName, ...] = ()
    deadline: AwareDatetime

    def wants(self, action: str) -> bool:
        return not self.actions or action in self.actions


class WorkstationCommandRequested(Envelope):
    """An administrator's order to one host: end (`logoff`) or suspend (`disconnect`) one
    session, the sessions of `subject`, or, with `all_sessions`, every session there."""

    type: Literal["workstation.command.requested"] = "workstation.command.requested"
    action: Literal["logoff", "disconnect"]
    session_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")] | None = None
    all_sessions: bool = False
    reason: ShortText = "administrator"
    requested_by: ShortText = "unknown"
    deadline: AwareDatetime


class StepError(Frozen):
    code: Annotated[str, Field(max_length=128)]
    message: Annotated[str, Field(max_length=2000)]
    retryable: bool = False


class StepResult(Frozen):
    action: ActionName
    outcome: Outcome
    attempts: Annotated[int, Field(ge=0)] = 1
    started_at: AwareDatetime
    finished_at: AwareDatetime
    error: StepError | None = None
    # Free-form facts a person reading the report needs (e.g. which session ids).
    detail: Annotated[str, Field(max_length=2000)] | None = None

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


class RevocationCompleted(Envelope):
    type: Literal["revocation.completed"] = "revocation.completed"
    service: ServiceName
    steps: Annotated[tuple[StepResult, ...], Field(max_length=500)]


class SsoLogoutRequested(Envelope):
    type: Literal["sso.logout.requested"] = "sso.logout.requested"
    kind: Kind
    # Known only for a logout whose request carried the SSO session.
    tgt: str | None = Field(default=None, max_length=256, repr=False)
    # Offboarding ends every SSO session of the user, not only one.
    all_sessions: bool = False


class SsoLogoutCompleted(Envelope):
    type: Literal["sso.logout.completed"] = "sso.logout.completed"
    service: Literal["sso"] = "sso"
    steps: Annotated[tuple[StepResult, ...], Field(max_length=50)]


class ServiceSummary(Frozen):
    state: str
    outcomes: dict[str, Outcome]


class RequestFinished(Envelope):
    type: Literal["request.finished"] = "request.finished"
    kind: Kind
    status: Literal["completed", "partial", "failed", "cancelled"]
    duration_seconds: float
    services: dict[str, ServiceSummary]


class DeadLettered(Frozen):
    """What `deadletter` (and an agent's `agent.deadletter.<host>`) holds: the original
    entry and why it was given up."""

    type: Literal["deadletter"] = "deadletter"
    stream: str
    group: str
    entry_id: str
    reason: str
    detail: str
    deliveries: int
    data: str
    occurred_at: AwareDatetime = Field(default_factory=utcnow)


Event = Annotated[
    LogoutRequested
    | OffboardRequested
    | WorkstationCommandRequested
    | RevocationCompleted
    | SsoLogoutRequested
    | SsoLogoutCompleted
    | RequestFinished,
    Field(discriminator="type"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def decode_event(data: bytes | str) -> Event:
    """Decode any message of the contract; raises pydantic.ValidationError on bad input."""
    return _EVENT_ADAPTER.validate_json(data)


def encode_event(event: BaseModel) -> str:
    return event.model_dump_json()


def event_json_schema() -> dict[str, Any]:
    return _EVENT_ADAPTER.json_schema()
