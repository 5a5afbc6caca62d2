"""What a step records of the state it changed (`StepResult.recorded`), and an action's
options: JSON only, and bounded, since a record is kept with its request and sent back
in a reversal."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import AfterValidator, Field, JsonValue

RECORD_MAX_CHARS = 32_000


def _bounded(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    if len(json.dumps(value, separators=(",", ":"))) > RECORD_MAX_CHARS:
        raise ValueError(f"more than {RECORD_MAX_CHARS} characters of JSON")
    return value


Record = Annotated[dict[str, JsonValue], AfterValidator(_bounded)]
# Keyed by action name (events.ActionName's pattern).
PerAction = Annotated[
    dict[Annotated[str, Field(pattern=r"^[a-z0-9_:.\-]{1,128}$")], Record], Field(max_length=64)
]
