"""A request's statuses, one list for the saga, the events, the API and the console
(DESIGN.md, "The saga": scheduled → in_progress → sso_logout → a final status)."""

from __future__ import annotations

from typing import Literal, get_args

RequestStatus = Literal[
    "scheduled", "in_progress", "sso_logout", "completed", "partial", "failed", "cancelled"
]
FinalStatus = Literal["completed", "partial", "failed", "cancelled"]

REQUEST_STATUSES: tuple[RequestStatus, ...] = get_args(RequestStatus)
FINAL_STATUSES: frozenset[str] = frozenset(get_args(FinalStatus))
