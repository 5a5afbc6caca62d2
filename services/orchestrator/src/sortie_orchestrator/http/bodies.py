"""What the API accepts: the bodies of its orders, validated strictly (no unknown field,
no control or invisible character), and what an Idempotency-Key is bound to."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import datetime
from typing import Annotated

from fastapi import Header
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from sortie_core.events import Target
from sortie_core.services import OFFBOARD_ACTIONS

NO_CTRL = r"^[^\x00-\x1f\x7f]+$"
# Control, format (bidi overrides, zero-width), separator and private-use characters:
# they would be shown verbatim, or invisibly, on the status page and in reports.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})


def _visible(value: str) -> str:
    bad = next((c for c in value if unicodedata.category(c) in _INVISIBLE), None)
    if bad is not None:
        raise ValueError(f"contains the control or invisible character U+{ord(bad):04X}")
    return value


Visible = AfterValidator(_visible)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SubjectIn(Strict):
    user_id: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CTRL), Visible]
    upn: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"), Visible] | None = None
    cas_username: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S+$"), Visible] | None
    ) = None
    windows_account: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CTRL), Visible] | None
    ) = None
    # The user's site (school: UAI code or name), as SCIM's Sortie extension `site`.
    site: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CTRL), Visible] | None = (
        None
    )


class ServiceTicketIn(Strict):
    # Printable ASCII only (a CAS service URL is percent-encoded): no control character
    # (\x01, \x7f) can reach the registry match or a log line.
    service: Annotated[str, Field(max_length=2048, pattern=r"^https?://[\x21-\x7e]+$")]
    ticket: Annotated[str, Field(pattern=r"^ST-[A-Za-z0-9._\-]{1,250}$")]


class SsoSessionIn(Strict):
    tgt: Annotated[str, Field(pattern=r"^TGT-[A-Za-z0-9._\-]{1,250}$")] | None = None
    service_tickets: Annotated[list[ServiceTicketIn], Field(max_length=100)] = []


class LogoutIn(Strict):
    subject: SubjectIn
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CTRL), Visible] = (
        "user_logout"
    )
    targets: Annotated[list[Target], Field(min_length=1, max_length=3)] = [
        Target.M365,
        Target.ENT,
        Target.WORKSTATIONS,
    ]
    sso_session: SsoSessionIn | None = None

    @field_validator("targets")
    @classmethod
    def _unique(cls, value: list[Target]) -> list[Target]:
        if len(set(value)) != len(value):
            raise ValueError("targets must not repeat")
        return value


class OffboardIn(Strict):
    subject: SubjectIn
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CTRL), Visible] = (
        "offboarding"
    )
    effective_at: AwareDatetime | None = None
    actions: Annotated[list[str], Field(max_length=20)] | None = None
    profile: Annotated[
        str | None,
        Field(
            max_length=64,
            description="An offboarding profile (its actions, order, options and later "
            "phases); default: the site's. Not with `actions`.",
        ),
    ] = None

    @field_validator("effective_at", mode="before")
    @classmethod
    def _text_date(cls, value: object) -> object:
        # A bare number would be read as seconds since 1970, i.e. "now": refuse it.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("effective_at must be an ISO 8601 date-time with a time zone")
        return value

    @field_validator("actions")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - OFFBOARD_ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {sorted(OFFBOARD_ACTIONS)}")
        return value


IdemKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$")
]


# Not part of what a request does: a re-run of the same order may word its reason anew or
# re-resolve a relative date ("+1d", as `sortie offboard --csv` does), and stays a replay.
_NOT_FINGERPRINTED = frozenset({"reason", "effective_at"})


def fingerprint(what: str, body: BaseModel) -> str:
    """What an Idempotency-Key is bound to: the kind of order, who and what it is for (the
    validated body but its reason and date); another subject or target is a 422."""
    data = body.model_dump_json(exclude=set(_NOT_FINGERPRINTED))
    return hashlib.sha256(f"{what}\x00{data}".encode()).hexdigest()
