"""Settings of the workstation agent, read from `SORTIE_AGENT_*` variables."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import ServiceSettings, redis_url_field
from sortie_core.streams import valid_host


def default_host() -> str:
    # Stream names are `workstation.<host>`: a plain label, so the first one of an FQDN.
    return socket.gethostname().split(".")[0].lower()


class AgentSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="SORTIE_AGENT_", extra="ignore", populate_by_name=True
    )

    redis_url: SecretStr = redis_url_field("SORTIE_AGENT_")
    host: str = Field(default_factory=default_host)
    # Where sessions are listed and ended. Only the workstations simulator for now.
    backend: Literal["simulated"] = "simulated"
    sim_url: str = "http://127.0.0.1:8084"
    sim_timeout_s: float = Field(default=5.0, gt=0)
    # Presence record refresh; the orchestrator treats 3 missed heartbeats as unreachable.
    heartbeat_s: float = Field(default=10.0, gt=0, le=3600)
    # What a logout does to the user's sessions here (an offboarding always logs off).
    policy: Literal["logoff", "disconnect", "lock"] = "logoff"
    # A machine several people use in turn: a logout always logs off, because a
    # disconnected or locked session keeps a browser holding the user's SSO cookie.
    shared_station: bool = False

    @field_validator("host")
    @classmethod
    def _plain_host(cls, host: str) -> str:
        host = host.strip().lower()
        if not valid_host(host):
            raise ValueError("host must be a plain label: letters, digits, '-' and '_'")
        return host
