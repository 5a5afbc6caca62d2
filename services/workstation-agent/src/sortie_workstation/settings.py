"""Settings of the workstation agent, read from `SORTIE_AGENT_*` variables."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from sortie_core.settings import WorkerSettings, redis_password_field, redis_url_field
from sortie_core.streams import valid_host


def default_host() -> str:
    # Stream names are `workstation.<host>`: a plain label, so the first one of an FQDN.
    return socket.gethostname().split(".")[0].lower()


class AgentSettings(WorkerSettings):
    # extra="ignore" and populate_by_name come from ServiceSettings.
    model_config = SettingsConfigDict(env_prefix="SORTIE_AGENT_")

    redis_url: SecretStr = redis_url_field("SORTIE_AGENT_")
    redis_password: SecretStr | None = redis_password_field("SORTIE_AGENT_")
    # An agent's Redis account may not list or delete consumers; the orchestrator's
    # group janitor does not cover agents' groups, which hold one consumer each.
    consumer_expiry_s: float | None = None
    host: str = Field(default_factory=default_host)
    # Where sessions are listed and ended: the workstations simulator, the machine's own
    # commands, or `auto` (`windows` on Windows, `linux` elsewhere).
    backend: Literal["simulated", "windows", "multipoint", "linux", "auto"] = "simulated"
    powershell: str = "powershell"
    command_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Clean close of the browsers on a shared station, then forced after this long.
    browser_grace_s: float = Field(default=5.0, ge=0, le=120)
    # A named group of hosts (a classroom) the administrator can act on at once.
    group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    sim_url: str = "http://127.0.0.1:8084"
    sim_timeout_s: float = Field(default=5.0, gt=0)
    # An idle agent sleeps: XREADGROUP blocks this long (a command still wakes it at once)
    # and entries left pending are looked for this often.
    polling_interval_ms: int = Field(default=5_000, ge=1, le=60_000)
    claim_interval_ms: int = Field(default=15_000, ge=50)
    # Presence record refresh; the orchestrator treats 3 missed heartbeats as unreachable.
    heartbeat_s: float = Field(default=10.0, gt=0, le=3600)
    # What a logout does to the user's sessions here (an offboarding always logs off).
    policy: Literal["logoff", "disconnect", "lock"] = "logoff"
    # A machine several people use in turn: a logout closes the user's browsers (step
    # `close_browsers`) and always logs off, because a disconnected or locked session
    # keeps a browser holding the user's SSO cookie.
    shared_station: bool = False

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.backend == "simulated":
            problems.append("SORTIE_AGENT_BACKEND: `simulated` is the demo's; use auto")
        return problems

    @field_validator("host")
    @classmethod
    def _plain_host(cls, host: str) -> str:
        host = host.strip().lower()
        if not valid_host(host):
            raise ValueError("host must be a plain label: letters, digits, '-' and '_'")
        return host
