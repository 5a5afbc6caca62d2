"""What `deadletter` (and an agent's `agent.deadletter.<host>`) holds: the original entry
and why it was given up. Not one of the contract's events (events.py re-exports it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class DeadLettered(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["deadletter"] = "deadletter"
    stream: str
    group: str
    entry_id: str
    reason: str
    detail: str
    deliveries: int
    data: str
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
