"""Orchestrator settings (env prefix `SORTIE_ORCHESTRATOR_`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import ServiceSettings, redis_url_field

from .oauth import OAuthSettings
from .scim_policy import ScimConfig

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
    # SCIM mapping and lifecycle policy (scim_policy.ScimConfig), as JSON, or a YAML/JSON
    # file (`scim_file`, which wins).
    scim: ScimConfig = Field(default_factory=ScimConfig)
    # An OAuth 2.0 issuer whose JWT access tokens may call SCIM (oauth.OAuthSettings), e.g.
    # {"issuer": "…", "audience": "…", "jwks_url": "https://…/keys", "scope": "scim"}.
    oauth: OAuthSettings | None = None
    scim_file: Path | None = None

    @model_validator(mode="after")
    def _scim_file(self) -> OrchestratorSettings:
        if self.scim_file is not None:
            text = self.scim_file.read_text(encoding="utf-8")
            raw = json.loads(text) if self.scim_file.suffix == ".json" else yaml.safe_load(text)
            self.scim = ScimConfig.model_validate(raw or {})
        return self

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
