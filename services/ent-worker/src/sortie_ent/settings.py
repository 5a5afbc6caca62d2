"""Settings of the ENT worker, read from `SORTIE_ENT_*` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import WorkerSettings, redis_password_field, redis_url_field


class EntSettings(WorkerSettings):
    # extra="ignore" and populate_by_name come from ServiceSettings.
    model_config = SettingsConfigDict(env_prefix="SORTIE_ENT_")

    redis_url: SecretStr = redis_url_field("SORTIE_ENT_")
    redis_password: SecretStr | None = redis_password_field("SORTIE_ENT_")
    # The CAS server's root, `/cas` included; the default is the project's CAS simulator.
    cas_url: str = "http://127.0.0.1:8082/cas"
    # Whether the CAS exposes the `ssoSessions` actuator (`<cas_url>/actuator/ssoSessions`).
    # Sortie asks it which sessions and services the user has, and reads every SSO logout
    # back through it; without it the SSO step is `unverified` and the request fails.
    cas_actuator_enabled: bool = True
    # HTTP Basic credentials of the CAS `ssoSessions` actuator, when it asks for them.
    cas_actuator_user: SecretStr | None = None
    cas_actuator_password: SecretStr | None = None
    cas_timeout_s: float = Field(default=10.0, gt=0)
    # The application registry (YAML); without one every service ticket is refused.
    registry_path: Path | None = None
    # Applications logged out at the same time for one request.
    app_concurrency: int = Field(default=8, ge=1, le=256)
    # Time limit of one application's step, retries included, unless the registry sets one.
    app_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # How long the tickets of applications to log out again are kept for the follow-ups
    # (the CAS forgets them with the SSO session): past the orchestrator's follow-up
    # horizon (24 h by default).
    kept_tickets_ttl_s: int = Field(default=26 * 3600, ge=60, le=31 * 86400)
    # OpenID Connect back-channel logout: the PEM private key (EC P-256 or RSA) that signs
    # logout tokens; its public key is published for the orchestrator's JWKS. Without it,
    # `oidc_bcl` applications are reported skipped. To rotate: make a new key (for example
    # `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out new.pem`), point
    # this at it and restart the ENT workers (each replica publishes its own key, all are
    # served; a stopped replica's key stays published for `oidc_key_grace_s`).
    oidc_signing_key_path: Path | None = None
    # The tokens' `iss`: the orchestrator's public base URL (JWKS at /.well-known/jwks.json).
    oidc_issuer: str = "http://127.0.0.1:8080"
    # Lifetime of a logout token (`exp - iat`).
    oidc_token_ttl_s: float = Field(default=120.0, gt=0, le=3600)
    # How long a key stays published once its replica stopped re-publishing it (or it was
    # retired): >= the token lifetime plus clock skew.
    oidc_key_grace_s: float = Field(default=300.0, gt=0)
    # Each replica re-publishes its key every third of this; unrefreshed this long, the key
    # is in its grace.
    oidc_key_ttl_s: float = Field(default=30.0, ge=1, le=3600)

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.registry_path is None:
            problems.append("SORTIE_ENT_REGISTRY_PATH: missing; every service ticket is refused")
        if not self.cas_url.startswith("https://"):
            problems.append("SORTIE_ENT_CAS_URL: not https; the CAS server's real URL")
        return problems
