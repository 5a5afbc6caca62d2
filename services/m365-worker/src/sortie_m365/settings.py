"""Settings of the Microsoft 365 worker, read from `SORTIE_M365_*` variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import ServiceSettings, redis_url_field


class M365Settings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="SORTIE_M365_", extra="ignore", populate_by_name=True
    )

    redis_url: SecretStr = redis_url_field("SORTIE_M365_")
    # Graph's root, without `/v1.0`; the default is the project's Graph simulator.
    graph_url: str = "http://127.0.0.1:8081"
    # Bearer token for Graph. Empty: requests go without one (Graph answers 401).
    graph_token: SecretStr = SecretStr("")
    graph_timeout_s: float = Field(default=10.0, gt=0)
    # Length of the generated replacement password (Entra accepts up to 256).
    password_length: int = Field(default=40, ge=32, le=256)
