"""Settings of the Microsoft 365 worker, read from `SORTIE_M365_*` variables."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from sortie_core.settings import WorkerSettings, redis_password_field, redis_url_field

from .identity import Lookup


class M365Settings(WorkerSettings):
    model_config = SettingsConfigDict(
        env_prefix="SORTIE_M365_", extra="ignore", populate_by_name=True
    )

    redis_url: SecretStr = redis_url_field("SORTIE_M365_")
    redis_password: SecretStr | None = redis_password_field("SORTIE_M365_")
    # Graph's root, without `/v1.0`; the default is the project's Graph simulator.
    graph_url: str = "http://127.0.0.1:8081"
    # Token scope asked of Entra; the simulators ignore it.
    graph_scope: str = "https://graph.microsoft.com/.default"
    # App registration (real tenants): a client secret, or a certificate (PEM text or a path).
    tenant_id: str = ""
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    certificate_pem: SecretStr = SecretStr("")
    certificate_path: str = ""
    certificate_password: SecretStr = SecretStr("")
    # A fixed bearer token, for the simulators and tests only (no app registration set).
    graph_token: SecretStr = SecretStr("")
    graph_timeout_s: float = Field(default=10.0, gt=0)
    # Writes per second for the whole tenant, shared by every replica through Redis. Graph
    # allows about 3,000 identity writes per 150 s per app and tenant (20/s).
    tenant_writes_per_s: float = Field(default=15.0, gt=0)
    tenant_key: str = "default"
    # Graph calls in flight at once in this process.
    graph_concurrency: int = Field(default=32, ge=1, le=1024)
    # Writes of concurrent users wait this long to share one `$batch` (0: no batching).
    graph_batch_linger_ms: float = Field(default=20.0, ge=0, le=1000)
    # Mailbox protocols through Exchange Online's admin API (InvokeCommand, Set-CASMailbox):
    # off unless this URL is set (https://outlook.office365.com for a real tenant).
    exchange_url: str = ""
    exchange_scope: str = "https://outlook.office365.com/.default"
    # Length of the generated replacement password (Entra accepts up to 256).
    password_length: int = Field(default=40, ge=32, le=256)
    # How a subject is found when its `upn` is missing or unknown to Graph: ordered
    # `property=template` lookups, comma-separated (or a JSON list), e.g.
    # `onPremisesSamAccountName={user_id},userPrincipalName={user_id}@school.example`.
    # Properties: upn/userPrincipalName/id (GET /users/{value}), mail, employeeId,
    # onPremisesSamAccountName ($filter); placeholders: {user_id}, {upn}, {cas_username},
    # {windows_account}. Empty: only the subject's upn is tried.
    identity_lookups: Annotated[tuple[str, ...], NoDecode] = ()
    # A read-back timestamp (signInSessionsValidFromDateTime, lastPasswordChangeDateTime)
    # proves the step when it is at least the request's start minus this: Graph's clock
    # is not the orchestrator's, and Graph keeps whole seconds.
    verify_clock_skew_s: float = Field(default=5.0, ge=0, le=300)
    # The Temporary Access Pass a reversal issues (Entra allows 10 minutes to 30 days,
    # within the tenant's TAP policy).
    tap_lifetime_minutes: int = Field(default=60, ge=10, le=43200)
    tap_usable_once: bool = False

    @field_validator("identity_lookups", mode="before")
    @classmethod
    def _split_lookups(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(part for part in (p.strip() for p in text.split(",")) if part)
        return value

    @field_validator("identity_lookups")
    @classmethod
    def _check_lookups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            Lookup.parse(text)
        return value

    @property
    def lookups(self) -> tuple[Lookup, ...]:
        return tuple(Lookup.parse(text) for text in self.identity_lookups)

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.graph_token.get_secret_value():
            problems.append("SORTIE_M365_GRAPH_TOKEN: a static token is for the simulators only")
        if not self.graph_url.startswith("https://"):
            problems.append("SORTIE_M365_GRAPH_URL: not https (https://graph.microsoft.com)")
        for env, value in (("TENANT_ID", self.tenant_id), ("CLIENT_ID", self.client_id)):
            if not value:
                problems.append(f"SORTIE_M365_{env}: missing (the Entra app registration)")
        if not (
            self.client_secret.get_secret_value()
            or self.certificate_pem.get_secret_value()
            or self.certificate_path
        ):
            problems.append(
                "SORTIE_M365_CLIENT_SECRET_FILE or SORTIE_M365_CERTIFICATE_PATH: missing "
                "(the app registration's credential)"
            )
        return problems
