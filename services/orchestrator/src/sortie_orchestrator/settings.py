"""Orchestrator settings (env prefix `SORTIE_ORCHESTRATOR_`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import ServiceSettings, redis_password_field, redis_url_field
from sortie_orchestrator.http.oauth import OAuthSettings
from sortie_orchestrator.http.scim.policy import ScimConfig
from sortie_orchestrator.http.ui.sso import ConsoleSso
from sortie_orchestrator.profiles import Profiles
from sortie_orchestrator.profiles import load as load_profiles

ALL_SCOPES = frozenset(
    {
        "logout:write",
        "offboard:write",
        "requests:read",
        "workstations:admin",
        "scim",
        # The console's sessions page: list and revoke sessions, read who did what.
        "sessions:admin",
    }
)


# A token shorter than this is refused at start-up (`secrets.token_urlsafe(32)`, what
# `sortie up` generates, is 43 characters). A `token_sha256` cannot be checked: make it
# from a token at least this long.
MIN_TOKEN_CHARS = 32


def _strong(token: SecretStr | None, what: str) -> SecretStr | None:
    if token is not None and len(token.get_secret_value()) < MIN_TOKEN_CHARS:
        raise ValueError(f"{what} is shorter than {MIN_TOKEN_CHARS} characters: too weak")
    return token


class TokenSpec(BaseModel):
    """One API client: a name for audit logs, its token (or the token's SHA-256), scopes."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    token: SecretStr | None = None
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    scopes: frozenset[str]
    # Delegated administration: only requests (and actions) of these sites (UAI codes or
    # names, the subject's `site`); None: every site.
    sites: frozenset[str] | None = None

    @field_validator("token")
    @classmethod
    def _token_strong(cls, token: SecretStr | None) -> SecretStr | None:
        return _strong(token, "the token")

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, scopes: frozenset[str]) -> frozenset[str]:
        unknown = sorted(scopes - ALL_SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {sorted(ALL_SCOPES)}")
        return scopes

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
    # The intake's share of the Redis pool (for hundreds of clients at once).
    redis_intake_connections: int = Field(default=128, ge=0)

    # The API tokens may come from a file (SORTIE_ORCHESTRATOR_TOKENS_FILE), like secrets.
    file_settings: ClassVar[tuple[str, ...]] = ("tokens",)

    redis_url: SecretStr = redis_url_field("SORTIE_ORCHESTRATOR_")
    redis_password: SecretStr | None = redis_password_field("SORTIE_ORCHESTRATOR_")
    http_port: int = 8080
    # Peers whose X-Forwarded-Proto / X-Forwarded-For are believed (the TLS reverse proxy):
    # a JSON list of addresses or networks, as uvicorn's `forwarded_allow_ips`; from
    # anyone else those headers are ignored.
    trusted_proxies: list[str] = ["127.0.0.1"]
    # Behind a TLS proxy whose headers cannot be trusted: HSTS and `Secure` cookies always.
    force_secure: bool = False
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
    # When the CAS could not tell an application's tickets, the SSO logout waits for it to
    # list them (so they are logged out first) at most this long after it was first asked.
    sso_apps_first_s: float = Field(default=600.0, ge=0, le=86400)
    retention_days: float = Field(default=90.0, gt=0)
    # Stream entries no group needs any more are trimmed once older than this.
    stream_retention_days: float = Field(default=7.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # `/docs` (Swagger UI, assets from the package) and `/openapi.json`.
    docs_enabled: bool = True
    # A request body must arrive whole within this (408 otherwise).
    body_read_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # An idle keep-alive connection is closed after this. Above the clients' and proxies'
    # own idle limits (httpx 5 s, nginx 60 s, cloud load balancers 60 s), so the client side
    # closes first: at uvicorn's default of 5 s a client could send on a connection the
    # server was closing at that moment, and read an error (18 of 2,000 POSTs at 400
    # clients, bench/e2e.py).
    http_keep_alive_s: int = Field(default=75, ge=1, le=3600)
    deadline_poll_ms: int = Field(default=200, ge=10)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    # Every agent's presence record is re-read this often (keep it at most one agent
    # heartbeat, default 10 s): a lost wake-up hides a session no longer than this.
    presence_sweep_s: float = Field(default=5.0, gt=0, le=3600)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    # Durability before a 202: WAIT for this many replicas (0: none; a single Redis is
    # then as durable as its `appendfsync`: `always` loses nothing acknowledged,
    # `everysec` up to a second on an OS crash).
    durable_replicas: int = Field(default=0, ge=0)
    # At most 5 s: a WAIT is a Redis reply, bounded by the client's read timeout.
    durable_timeout_ms: int = Field(default=1000, ge=1, le=5000)
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
    # How long a preview waits for the workers' discovery (`POST /v1/offboardings:preview`).
    preview_wait_s: float = Field(default=3.0, gt=0, le=30)
    # The console's sign-in with the school's SSO (http/ui/sso.py), e.g.
    # {"cas": {"server_url": "https://cas…/cas"}, "oidc": {"issuer": …, "client_id": …,
    #  "client_secret": …}, "roles": [{"claim": "memberOf", "value": "helpdesk",
    #  "scopes": ["requests:read"], "sites": ["0750001A"]}]}
    console_sso: ConsoleSso | None = None
    # Delegated administration of stations: the site of a host or of a group (classroom),
    # e.g. {"salle-b12": "0750001A", "pc-cdi-01": "0750001A"}; a station of no known site
    # is seen only by people and tokens limited to no site.
    station_sites: dict[str, str] = {}
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

    # SCIM mapping and lifecycle policy (http/scim/policy.py: ScimConfig), as JSON, or a YAML/JSON
    # file (`scim_file`, which wins).
    scim: ScimConfig = Field(default_factory=ScimConfig)
    # An OAuth 2.0 issuer whose JWT access tokens may call SCIM (oauth.OAuthSettings), e.g.
    # {"issuer": "…", "audience": "…", "jwks_url": "https://…/keys", "scope": "scim"}.
    oauth: OAuthSettings | None = None
    scim_file: Path | None = None
    # Offboarding profiles (profiles.Profiles: built-ins plus the site's, and the default),
    # as JSON, or a YAML/JSON file (`profiles_file`, which wins).
    profiles: Profiles = Field(default_factory=Profiles)
    profiles_file: Path | None = None
    # A reversal's sealed Temporary Access Pass is kept at most this long (keep it at most
    # the pass's lifetime, the m365-worker's setting; Entra's default is 60 minutes).
    tap_ttl_s: int = Field(default=3600, ge=60, le=8 * 3600)
    # The M365 worker's tenant (its SORTIE_M365_TENANT_KEY): whose write queue's expected
    # wait a request with M365 steps pending shows.
    m365_tenant_key: str = Field(default="default", min_length=1, max_length=64)

    # Failed authentications (API and /ui/login) per client address and replica: past
    # this many within the window, the client is answered 429 until the window moves on.
    auth_failure_limit: int = Field(default=10, ge=1)
    auth_failure_window_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _scim_file(self) -> OrchestratorSettings:
        if self.scim_file is not None:
            text = self.scim_file.read_text(encoding="utf-8")
            raw = json.loads(text) if self.scim_file.suffix == ".json" else yaml.safe_load(text)
            self.scim = ScimConfig.model_validate(raw or {})
        if self.profiles_file is not None:
            self.profiles = load_profiles(self.profiles_file)
        # SCIM's own action lists are single-phase profiles beside these.
        self.profiles = self.profiles.add_action_lists(self.scim.profiles)
        missing = sorted(set(self.scim.profile_names()) - set(self.profiles.profiles))
        if missing:
            raise ValueError(f"scim: no profile named {missing}")
        return self

    @field_validator("dev_token")
    @classmethod
    def _dev_token_strong(cls, token: SecretStr | None) -> SecretStr | None:
        return _strong(token, "SORTIE_DEV_TOKEN")

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if not self.tokens:
            problems.append("SORTIE_ORCHESTRATOR_TOKENS: no API client; every call is refused")
        if self.dev_token is not None:
            problems.append("SORTIE_DEV_TOKEN: a development token with every scope; remove it")
        return problems

    def token_sites(self) -> dict[str, frozenset[str] | None]:
        return {t.name: t.sites for t in self.tokens}

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
