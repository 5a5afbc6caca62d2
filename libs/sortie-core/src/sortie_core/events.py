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
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from .coverage import Coverage, Discovery
from .dead_letter import DeadLettered  # noqa: F401 (re-exported: an entry, not an event)
from .model import Frozen
from .records import PerAction, Record

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


class Verification(StrEnum):
    """How a step's post-condition is known. Only the first two prove that access is gone."""

    # Read back from the system itself after the step, and the post-condition holds.
    VERIFIED = "verified"
    # The protocol offers no read-back (CAS SLO, OIDC back-channel logout): the peer's own
    # answer is the evidence.
    ACKNOWLEDGED = "acknowledged"
    # Read back, and the post-condition does not hold: access may still be alive.
    CONTRADICTED = "contradicted"
    # The read-back could not be made (an error, or nothing to read it with).
    UNVERIFIED = "unverified"


class SkipReason(StrEnum):
    """Why a step was skipped. Only the policy reasons (POLICY_SKIPS) count as done."""

    EXCLUDED_BY_CALLER = "excluded_by_caller"  # the request's targets left it out
    ACTION_NOT_SELECTED = "action_not_selected"  # the request's `actions` left it out
    GUEST_BY_POLICY = "guest_by_policy"  # a guest account: its home tenant holds its sessions
    # The deployment turned this action off on purpose (e.g. no Exchange admin path).
    DISABLED_BY_CONFIGURATION = "disabled_by_configuration"
    # Something the step needs is missing (e.g. no signing key): access may still be alive.
    NOT_CONFIGURED = "not_configured"


POLICY_SKIPS = frozenset(
    {
        SkipReason.EXCLUDED_BY_CALLER,
        SkipReason.ACTION_NOT_SELECTED,
        SkipReason.GUEST_BY_POLICY,
        SkipReason.DISABLED_BY_CONFIGURATION,
    }
)


class Kind(StrEnum):
    LOGOUT = "logout"
    OFFBOARD = "offboard"
    # An administrator's action on workstation sessions (no SSO phase).
    WORKSTATION_ADMIN = "workstation_admin"
    # Restoring what an offboarding recorded (no SSO phase).
    REVERSAL = "reversal"


class M365Action(StrEnum):
    BLOCK_SIGN_IN = "block_sign_in"
    RESET_PASSWORD = "reset_password"
    REVOKE_SESSIONS = "revoke_sessions"
    DISABLE_MAIL_PROTOCOLS = "disable_mail_protocols"
    # The rest of the leaver procedure: only when a request (its profile) names them.
    REMOVE_LICENSES = "remove_licenses"
    REMOVE_GROUP_MEMBERSHIPS = "remove_group_memberships"
    REMOVE_AUTH_METHODS = "remove_auth_methods"
    DISABLE_DEVICES = "disable_devices"
    SET_AUTO_REPLY = "set_auto_reply"
    CONVERT_TO_SHARED_MAILBOX = "convert_to_shared_mailbox"
    HIDE_FROM_ADDRESS_LISTS = "hide_from_address_lists"
    DELEGATE_MAILBOX = "delegate_mailbox"
    DELEGATE_ONEDRIVE = "delegate_onedrive"


# The M365 actions of an offboarding that names none (step 1 of the leaver guide).
OFFBOARD_M365_ORDER: tuple[M365Action, ...] = (
    M365Action.BLOCK_SIGN_IN,
    M365Action.RESET_PASSWORD,
    M365Action.REVOKE_SESSIONS,
    M365Action.DISABLE_MAIL_PROTOCOLS,
)


class Subject(Frozen):
    """Who the request is about, as each system names them."""

    user_id: UserId
    upn: Annotated[str, Field(max_length=320)] | None = None
    cas_username: Annotated[str, Field(max_length=256)] | None = None
    windows_account: Annotated[str, Field(max_length=256)] | None = None
    site: Annotated[str, Field(max_length=100)] | None = None  # school: UAI code or name

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


class FollowUpScope(Frozen):
    """Set on a command sent again after the deadline (follow-up delivery): only the
    services named act, and only for the actions named; `attempt` counts from 1."""

    services: tuple[ServiceName, ...] = ()
    # Empty: every action of those services (they never reported).
    actions: tuple[ActionName, ...] = ()
    attempt: Annotated[int, Field(ge=1)] = 1


class Command(Envelope):
    followup: FollowUpScope | None = None

    def addressed_to(self, service: str) -> bool:
        """Whether `service` has anything to do with this command."""
        return self.followup is None or service in self.followup.services

    def retries(self, action: str) -> bool:
        """Whether `action` is part of this command (always, unless a follow-up)."""
        return self.followup is None or not self.followup.actions or action in self.followup.actions


class LogoutRequested(Command):
    type: Literal["logout.requested"] = "logout.requested"
    reason: ShortText = "user_logout"
    targets: tuple[Target, ...] = (Target.M365, Target.ENT, Target.WORKSTATIONS)
    sso_session: SsoSession | None = None
    # The orchestrator keeps the SSO session out of the stream (credentials.py): True when
    # the ent-worker is to read it from the request's credentials key.
    sso_session_stored: bool = False
    deadline: AwareDatetime


class OffboardRequested(Command):
    type: Literal["offboard.requested"] = "offboard.requested"
    reason: ShortText = "offboarding"
    requested_by: ShortText = "unknown"
    # Empty: the default actions of every service (OFFBOARD_M365_ORDER, ...); named ones
    # run in the order given.
    actions: tuple[ActionName, ...] = ()
    deadline: AwareDatetime
    # The offboarding profile chosen, and which of its phases this command carries out.
    profile: ShortText | None = None
    phase: Annotated[int, Field(ge=0)] = 0
    # Per-action options from the profile, e.g. `set_auto_reply: {"message": "..."}`.
    options: PerAction = {}

    def wants(self, action: str) -> bool:
        return (not self.actions or action in self.actions) and self.retries(action)


class ReversalRequested(Command):
    """Restore what offboarding `reverses` recorded (`restore`: each original step's
    `recorded`, per original action). A Temporary Access Pass is sealed to
    `tap_public_key` (sealed.py), never sent in clear."""

    type: Literal["reversal.requested"] = "reversal.requested"
    reverses: uuid.UUID
    reason: ShortText = "reversal"
    requested_by: ShortText = "unknown"
    restore: PerAction = {}
    issue_temporary_access_pass: bool = True
    tap_public_key: Annotated[str, Field(max_length=64)] | None = None  # base64url X25519
    deadline: AwareDatetime


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
    # The peer's Retry-After on the last attempt, if it gave one.
    retry_after_s: Annotated[float, Field(ge=0)] | None = None


Observed = str | int | float | bool | None


class Evidence(Frozen):
    """What was read back, from where, and when: the proof kept on a step."""

    # e.g. "graph GET /users/{id}?$select=accountEnabled" or "cas ssoSessions actuator"
    source: Annotated[str, Field(max_length=300)]
    observed: Annotated[dict[str, Observed], Field(max_length=20)] = {}
    read_at: AwareDatetime


class StepItem(Frozen):
    """One part of a step, tried and reported on its own (e.g. one service ticket of an
    application's single logout). `ref` never holds a credential."""

    ref: Annotated[str, Field(max_length=128)]
    outcome: Outcome
    error: StepError | None = None


class StepResult(Frozen):
    action: ActionName
    outcome: Outcome
    attempts: Annotated[int, Field(ge=0)] = 1
    started_at: AwareDatetime
    finished_at: AwareDatetime
    error: StepError | None = None
    # Free-form facts a person reading the report needs (e.g. which session ids).
    detail: Annotated[str, Field(max_length=2000)] | None = None
    verification: Verification | None = None
    evidence: Evidence | None = None
    skip_reason: SkipReason | None = None
    items: Annotated[tuple[StepItem, ...], Field(max_length=200)] = ()
    # The prior state the step changed (never a secret), so that a reversal can restore it.
    recorded: Record | None = None
    # A secret for the requester only (a Temporary Access Pass), sealed (sealed.py).
    sealed: str | None = Field(default=None, max_length=1000, repr=False)

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def done(self) -> bool:
        """Whether this step proves its part of the access is gone (the saga's rule):
        a success verified or acknowledged; `not_found` only after an authoritative lookup
        (verified, with its evidence); `skipped` only for a policy reason."""
        if self.outcome == Outcome.SUCCEEDED:
            return self.verification in (Verification.VERIFIED, Verification.ACKNOWLEDGED)
        if self.outcome == Outcome.NOT_FOUND:
            return self.verification == Verification.VERIFIED
        if self.outcome == Outcome.SKIPPED:
            return self.skip_reason in POLICY_SKIPS
        return False


class RevocationCompleted(Envelope):
    type: Literal["revocation.completed"] = "revocation.completed"
    service: ServiceName
    steps: Annotated[tuple[StepResult, ...], Field(max_length=500)]
    discovery: Discovery | None = None

    @classmethod
    def answering(
        cls,
        command: Envelope,
        service: str,
        steps: tuple[StepResult, ...] | list[StepResult],
        discovery: Discovery | None = None,
    ) -> RevocationCompleted:
        """What `service` reports about `command`: its request, its subject, these steps."""
        return cls(
            service=service,
            request_id=command.request_id,
            subject=command.subject,
            steps=tuple(steps),
            discovery=discovery,
        )


class SsoLogoutRequested(Command):
    type: Literal["sso.logout.requested"] = "sso.logout.requested"
    kind: Kind
    # Known only for a logout whose request carried the SSO session.
    tgt: str | None = Field(default=None, max_length=256, repr=False)
    # The TGT is kept out of the stream: read it from the request's credentials key.
    tgt_stored: bool = False
    # Offboarding ends every SSO session of the user, not only one.
    all_sessions: bool = False
    # ENT applications (`app_logout:<app>`) whose service tickets the ENT worker could not
    # learn (its CAS discovery failed, e.g. the CAS was down): destroying the session makes
    # the CAS forget them, so they are logged out first, from the tickets the CAS lists
    # just before, and reported in the completion's `app_steps`.
    app_logout_first: Annotated[tuple[ActionName, ...], Field(max_length=200)] = ()


class SsoLogoutCompleted(Envelope):
    type: Literal["sso.logout.completed"] = "sso.logout.completed"
    service: Literal["sso"] = "sso"
    steps: Annotated[tuple[StepResult, ...], Field(max_length=50)]
    discovery: Discovery | None = None
    # The `app_logout_first` applications' steps (service `ent`), and what they were found from.
    app_steps: Annotated[tuple[StepResult, ...], Field(max_length=200)] = ()
    app_discovery: Discovery | None = None


class PreviewRequested(Envelope):  # discovery only, no effect; answered by a report
    type: Literal["preview.requested"] = "preview.requested"
    targets: tuple[Target, ...] = (Target.M365, Target.ENT, Target.WORKSTATIONS)


class ServiceSummary(Frozen):
    state: str
    outcomes: dict[str, Outcome]
    # Per step: `verified`, `acknowledged`, or why it does not prove access is gone.
    proofs: dict[str, str] = {}


class RequestFinished(Envelope):
    type: Literal["request.finished"] = "request.finished"
    kind: Kind
    status: Literal["completed", "partial", "failed", "cancelled"]
    duration_seconds: float
    services: dict[str, ServiceSummary]
    coverage: Coverage | None = None


Event = Annotated[
    LogoutRequested
    | OffboardRequested
    | ReversalRequested
    | WorkstationCommandRequested
    | RevocationCompleted
    | SsoLogoutRequested
    | SsoLogoutCompleted
    | RequestFinished
    | PreviewRequested,
    Field(discriminator="type"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def decode_event(data: bytes | str) -> Event:
    """Decode any message of the contract; raises pydantic.ValidationError on bad input."""
    return _EVENT_ADAPTER.validate_json(data)
