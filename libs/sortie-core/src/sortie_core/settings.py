"""Typed settings shared by every service. Each service subclasses `ServiceSettings`
with its own env prefix; the Redis URL may also come from `SORTIE_REDIS_URL` or
`REDIS_URL`, which is what `sortie up` and docker-compose set once for all."""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def redis_url_field(prefix: str) -> SecretStr:
    # A Redis URL can carry a password: it is a secret.
    return Field(  # type: ignore[no-any-return]
        default=SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices(f"{prefix}REDIS_URL", "SORTIE_REDIS_URL", "REDIS_URL"),
    )


def default_consumer_name(service: str) -> str:
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config` with their env prefix."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    redis_url: SecretStr = Field(default=SecretStr("redis://127.0.0.1:6379/0"))
    # TLS to Redis (a `rediss://` URL): the CA that signed the server's certificate, and
    # this client's certificate and key when the server asks for one (`tls-auth-clients`).
    redis_ca_path: str | None = None
    redis_cert_path: str | None = None
    redis_key_path: str | None = None
    consumer_name: str | None = None
    log_level: str = "INFO"
    log_json: bool = False
    # Port of the /metrics, /healthz and /readyz endpoints of a worker.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # Delivery guarantees (see broker.py).
    max_deliveries: int = Field(default=5, ge=1)
    claim_idle_ms: int = Field(default=15_000, ge=100)
    claim_interval_ms: int = Field(default=1_000, ge=50)
    polling_interval_ms: int = Field(default=100, ge=1)
    concurrency: int = Field(default=32, ge=1, le=1024)
    graceful_timeout_s: float = Field(default=15.0, ge=0)
    # Dead consumer names (idle this long, nothing pending) are removed from their groups.
    consumer_expiry_s: float | None = Field(default=3600.0, gt=0)
    # Step retries inside a handler.
    step_max_attempts: int = Field(default=4, ge=1)
    step_backoff_base_s: float = Field(default=0.2, ge=0)
    step_backoff_max_s: float = Field(default=5.0, ge=0)
