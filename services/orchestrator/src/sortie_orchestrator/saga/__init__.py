"""The saga of one request: pure functions, state in, (new state, messages) out.

The rooms: `state` (what a request is), `accepting` (its first state), `transitions`
(phase 1, the SSO logout, deadlines, follow-ups, cancel), `commands` (what it sends),
`verdict` (proofs, final status, `request.finished`); `followup`, `phases`, `retry` and
`reversal` are the parts that outlive phase 0. The names below are the saga's public face.
"""

from sortie_core.services import expected_actions
from sortie_orchestrator.saga.accepting import new_admin, new_logout, new_offboard, new_reversal
from sortie_orchestrator.saga.commands import NOTHING_ON_RECORD, Command
from sortie_orchestrator.saga.state import (
    DEFAULT_TIMEOUTS,
    FINAL_STATUSES,
    AdminOrder,
    HostPresence,
    Outgoing,
    SagaState,
    ServiceState,
    Status,
    TimelineEntry,
    Timeouts,
    Transition,
    all_services,
    note,
)
from sortie_orchestrator.saga.transitions import (
    cancel,
    on_deadline,
    on_revocation,
    on_sso_completed,
    start,
)
from sortie_orchestrator.saga.verdict import coverage, final_status, finished_event, proof_of

__all__ = [
    "DEFAULT_TIMEOUTS",
    "FINAL_STATUSES",
    "NOTHING_ON_RECORD",
    "AdminOrder",
    "Command",
    "HostPresence",
    "Outgoing",
    "SagaState",
    "ServiceState",
    "Status",
    "TimelineEntry",
    "Timeouts",
    "Transition",
    "all_services",
    "cancel",
    "coverage",
    "expected_actions",
    "final_status",
    "finished_event",
    "new_admin",
    "new_logout",
    "new_offboard",
    "new_reversal",
    "note",
    "on_deadline",
    "on_revocation",
    "on_sso_completed",
    "proof_of",
    "start",
]
