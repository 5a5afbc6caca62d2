"""Orchestrator settings (env prefix `SORTIE_ORCHESTRATOR_`)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import ServiceSettings, redis_url_field

ALL_SCOPES = frozenset(
    {
        "logout:write",
        "offboard:write",
        "requests:read",
        "workstations:admin",
        "scim",
    }
)


class TokenSpec(BaseModel):
    """One API client: a name for audit logs, its token (or the token's SHA-256), scopes."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    token: SecretStr | None = None
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    scopes: frozenset[str]

    def digest(self) -> bytes:
        if self.token_sha256:
            return bytes.fromhex(self.token_sha256)
        if self.token is None:
            raise ValueError(f"token {self.name!r} has neither token nor token_sha256")
        return hashlib.sha256(self.token.get_secret_value().encode()).digest()


class OrchestratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="SORTIE_ORCHESTRATOR_", extra="ignore", populate_by_name=True
    )

    redis_url: SecretStr = redis_url_field("SORTIE_ORCHESTRATOR_")
    http_port: int = 8080
    # JSON list of TokenSpec, e.g. [{"name":"ent","token":"…","scopes":["logout:write"]}]
    tokens: list[TokenSpec] = []
    # `sortie up` passes SORTIE_DEV_TOKEN here: a token with every scope.
    dev_token: SecretStr | None = Field(default=None, validation_alias="SORTIE_DEV_TOKEN")
    phase1_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    sso_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # Follow-up delivery after the deadline: first retry after ~base, doubling up to max,
    # until the horizon (then the request stays `partial`/`failed` and says so).
    followup_base_s: float = Field(default=5.0, gt=0, le=3600)
    followup_max_s: float = Field(default=600.0, gt=0, le=86400)
    followup_horizon_s: float = Field(default=24 * 3600.0, ge=0, le=30 * 86400)
    retention_days: float = Field(default=90.0, gt=0)
    # Stream entries no group needs any more are trimmed once older than this.
    stream_retention_days: float = Field(default=7.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    deadline_poll_ms: int = Field(default=200, ge=10)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    max_schedule_days: int = Field(default=400, ge=1)
    # The pages (status page, the user's logout page): the language when the browser asks
    # for none we speak, and the time zone their dates are shown in (with the offset).
    default_language: Literal["fr", "en"] = "fr"
    time_zone: str = "Europe/Paris"
    # Display names of the ENT's applications: the ENT worker's registry file (its
    # `display_name` fields) and/or a JSON mapping {"escada": "Escada"} or
    # {"escada": {"fr": "…", "en": "…"}} (appnames.py).
    ent_registry_path: Path | None = None
    app_display_names: dict[str, str | dict[str, str]] = {}
    # The user's logout page (`progress_url` of POST /v1/logouts): how long its link
    # lives, the public base URL it is built on (default: the URL the caller used), and
    # the ENT's public page it links back to (configured here only, never from a request),
    # optionally followed by itself that many seconds after the end.
    progress_ttl_s: int = Field(default=900, ge=60, le=86400)
    public_url: AnyHttpUrl | None = None
    ent_public_url: AnyHttpUrl | None = None
    logout_return_after_s: int | None = Field(default=None, ge=1, le=3600)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def token_table(self) -> list[tuple[bytes, str, frozenset[str]]]:
        table = [(t.digest(), t.name, t.scopes) for t in self.tokens]
        if self.dev_token is not None:
            digest = hashlib.sha256(self.dev_token.get_secret_value().encode()).digest()
            table.append((digest, "dev", ALL_SCOPES))
        return table


def match_token(
    table: list[tuple[bytes, str, frozenset[str]]], presented: str
) -> tuple[str, frozenset[str]] | None:
    """Compare against every token in constant time, whichever matches."""
    digest = hashlib.sha256(presented.encode()).digest()
    found: tuple[str, frozenset[str]] | None = None
    for known, name, scopes in table:
        if hmac.compare_digest(known, digest):
            found = (name, scopes)
    return found
