"""The one builder of orchestrator settings for tests and benches: a real redis-server's
URL, known bearer tokens, and timeouts and polling short enough for a test. In-process
tests take it as is; a live orchestrator (uvicorn on a port) overrides its tokens and a
few timings (`LIVE`)."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from sortie_orchestrator.settings import OrchestratorSettings, TokenSpec
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast

__all__ = [
    "LIVE",
    "LIVE_ALL",
    "LIVE_READER",
    "LIVE_SCIM_TOKEN",
    "LIVE_TOKEN",
    "READ_ONLY",
    "TOKEN",
    "settings_for",
]

TOKEN = "test-token-all-scopes-0123456789"
READ_ONLY = "test-token-read-only-0123456789a"

LIVE_TOKEN = "live-token-all-scopes-0123456789"
LIVE_SCIM_TOKEN = "live-token-scim-only-0123456789a"
LIVE_READER = "live-token-read-only-0123456789a"
LIVE_ALL = frozenset(
    {"logout:write", "offboard:write", "requests:read", "workstations:admin", "scim"}
)

# What a live orchestrator changes: its own tokens (SCIM included), shorter saga timeouts,
# the default claiming of the service settings.
LIVE: dict[str, Any] = dict(
    tokens=[
        TokenSpec(name="all", token=SecretStr(LIVE_TOKEN), scopes=LIVE_ALL),
        TokenSpec(name="hr", token=SecretStr(LIVE_SCIM_TOKEN), scopes=frozenset({"scim"})),
        TokenSpec(
            name="helpdesk", token=SecretStr(LIVE_READER), scopes=frozenset({"requests:read"})
        ),
    ],
    phase1_timeout_s=1.0,
    sso_timeout_s=1.0,
    claim_idle_ms=OrchestratorSettings.model_fields["claim_idle_ms"].default,
    claim_interval_ms=OrchestratorSettings.model_fields["claim_interval_ms"].default,
    consumer_name="orch-live",
)


def settings_for(redis: RedisServer | str, **overrides: Any) -> OrchestratorSettings:
    """Orchestrator settings over `redis` (a started server or its URL), built by
    `sortie_testkit.settings.fast` with the test tokens and short saga timeouts;
    `overrides` win."""
    scopes = frozenset({"logout:write", "offboard:write", "requests:read", "workstations:admin"})
    values: dict[str, Any] = dict(
        tokens=[
            TokenSpec(name="all", token=SecretStr(TOKEN), scopes=scopes),
            TokenSpec(
                name="reader", token=SecretStr(READ_ONLY), scopes=frozenset({"requests:read"})
            ),
        ],
        phase1_timeout_s=2.0,
        sso_timeout_s=2.0,
        deadline_poll_ms=50,
        consumer_name="orch-test",
    )
    return fast(OrchestratorSettings, redis, **(values | overrides))
