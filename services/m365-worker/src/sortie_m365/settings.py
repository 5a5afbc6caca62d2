"""Settings of the Microsoft 365 worker, read from `SORTIE_M365_*` variables."""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from sortie_core.settings import WorkerSettings, redis_password_field, redis_url_field

from .adapters.apps import AppRegistration
from .identity import Lookup
from .quota import concurrency_for


class M365Settings(WorkerSettings):
    # extra="ignore" and populate_by_name come from ServiceSettings.
    model_config = SettingsConfigDict(env_prefix="SORTIE_M365_")

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
    # More app registrations of the same tenant (a JSON list, or a file with
    # SORTIE_M365_APP_REGISTRATIONS_FILE): `{"client_id": …, "client_secret_file": …}` (or
    # `client_secret`, `certificate_path`; `graph_token` for the simulators). Each has its
    # own write budget; empty: the one registration above.
    app_registrations: tuple[AppRegistration, ...] = ()
    # Graph's identity write limits (https://learn.microsoft.com/graph/throttling-limits):
    # per app registration and tenant, and per tenant for all applications; every replica
    # counts in the same Redis buckets, each kept `quota_headroom` under its limit.
    app_writes_limit: float = Field(default=3000, gt=0)
    app_writes_window_s: float = Field(default=150, gt=0)
    tenant_writes_limit: float = Field(default=18000, gt=0)
    tenant_writes_window_s: float = Field(default=300, gt=0)
    quota_headroom: float = Field(default=0.02, ge=0, lt=1)
    # One writes/s figure for the tenant instead of the limits above, which each app
    # registration may use all of (a tenant whose limits Microsoft raised; a bench).
    tenant_writes_per_s: float | None = Field(default=None, gt=0)
    tenant_key: str = "default"
    # A Graph call's expected latency, to size the handlers in flight (SORTIE_M365_CONCURRENCY,
    # when not set) from the write rate by Little's law.
    graph_latency_s: float = Field(default=0.25, gt=0, le=30)
    # Graph calls in flight at once in this process (None: the handlers in flight).
    graph_concurrency: int | None = Field(default=None, ge=1, le=1024)
    # Requests of concurrent users already waiting share one `$batch`; a linger (ms) makes
    # them wait for more; `graph_batching` false sends every request alone.
    graph_batching: bool = True
    graph_batch_linger_ms: float = Field(default=0.0, ge=0, le=1000)
    # Resolved users kept per process (0: no cache), forgotten on any `not_found`.
    identity_cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
    identity_cache_ttl_s: float = Field(default=300.0, gt=0)
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

    file_settings: ClassVar[tuple[str, ...]] = ("app_registrations",)

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

    @field_validator("app_registrations", mode="before")
    @classmethod
    def _parse_registrations(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _size_concurrency(self) -> M365Settings:
        """Handlers in flight from the write rate and the latency, unless set."""
        if "concurrency" not in self.model_fields_set:
            self.concurrency = concurrency_for(self.writes_per_s, self.graph_latency_s)
            self.__pydantic_fields_set__.discard("concurrency")  # still not set by anyone
        return self

    @property
    def registrations(self) -> int:
        return max(1, len(self.app_registrations))

    @property
    def writes_per_s(self) -> float:
        """Writes/s the tenant's registrations may make together."""
        if self.tenant_writes_per_s:
            return self.tenant_writes_per_s * (1 - self.quota_headroom)
        apps = self.registrations * self.app_writes_limit / self.app_writes_window_s
        rate = min(apps, self.tenant_writes_limit / self.tenant_writes_window_s)
        return rate * (1 - self.quota_headroom)

    @property
    def lookups(self) -> tuple[Lookup, ...]:
        return tuple(Lookup.parse(text) for text in self.identity_lookups)

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.graph_token.get_secret_value():
            problems.append("SORTIE_M365_GRAPH_TOKEN: a static token is for the simulators only")
        if not self.graph_url.startswith("https://"):
            problems.append("SORTIE_M365_GRAPH_URL: not https (https://graph.microsoft.com)")
        if any(r.graph_token.get_secret_value() for r in self.app_registrations):
            problems.append("SORTIE_M365_APP_REGISTRATIONS: graph_token is for the simulators")
        if self.app_registrations:
            if not self.tenant_id:
                problems.append("SORTIE_M365_TENANT_ID: missing (the Entra tenant)")
            return problems
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
