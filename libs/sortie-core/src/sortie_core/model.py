"""The base of every contract model: frozen, and tolerant of fields it does not know (a
newer producer does not break an older consumer)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
