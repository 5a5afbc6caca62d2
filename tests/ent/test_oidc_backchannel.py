"""OIDC back-channel logout end to end over real HTTP: the ENT worker's handler signs a
logout token and POSTs it to the ENT applications simulator, which verifies it (joserfc)
against the JWKS served by a real orchestrator on 127.0.0.1; and the simulator rejects
what a relying party must reject."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from sortie_core.events import Outcome
from sortie_core.jwks import JWKS_KEY, generate_key_pem, publish_signing_key
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.fake import FakeSsoSessions
from sortie_ent.adapters.http import HttpAppLogout
from sortie_ent.handlers import handle_logout, handle_offboard
from sortie_ent.oidc import LogoutTokenSigner
from sortie_ent.registry import Registry, parse_registry
from sortie_orchestrator.app import create_app
from sortie_simulators import entapps
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.conftest import settings_for
from tests.support.stub_http import ServedApp
from tests.support.workers import logout, offboard

POLICY = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.02)


@dataclass
class Setup:
    issuer: str
    sim_url: str
    sim: httpx.AsyncClient


@pytest.fixture
def served(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    orchestrator = ServedApp(create_app(settings_for(redis_server))).start()
    issuer = orchestrator.url
    sim_app = entapps.create_app(
        apps=[("ism", "oidc_bcl"), ("per", "oidc_bcl")],
        jwks_url=f"{issuer}/.well-known/jwks.json",
        client_ids={"per": "per-client"},
    )
    sim = ServedApp(sim_app).start()
    try:
        yield issuer, sim.url
    finally:
        sim.stop()
        orchestrator.stop()


@pytest.fixture
async def setup(served: tuple[str, str], redis: Redis) -> AsyncIterator[Setup]:
    await redis.delete(JWKS_KEY)
    issuer, sim_url = served
    async with httpx.AsyncClient(base_url=sim_url) as sim:
        for app in ("ism", "per"):
            created = await sim.post(f"/_sim/apps/{app}/sessions", json={"user": "alice"})
            assert created.status_code == 201
        yield Setup(issuer, sim_url, sim)


def registry_for(sim_url: str, *, per_client: str = "per-client") -> Registry:
    escaped = re.escape(sim_url)
    return parse_registry(
        "applications:\n"
        "  - name: ism\n"
        "    protocol: oidc_bcl\n"
        f"    backchannel_logout_uri: {sim_url}/ism/oidc/backchannel-logout\n"
        f"    service_patterns: ['{escaped}/ism/.*']\n"
        "  - name: per\n"
        "    protocol: oidc_bcl\n"
        f"    client_id: {per_client}\n"
        f"    backchannel_logout_uri: {sim_url}/per/oidc/backchannel-logout\n"
    )


async def sessions(sim: httpx.AsyncClient, app: str) -> list[str]:
    return [s["user"] for s in (await sim.get(f"/_sim/apps/{app}/sessions")).json()]


async def last_reason(sim: httpx.AsyncClient, app: str) -> tuple[bool, str]:
    received = [r for r in (await sim.get("/_sim/received")).json() if r["app"] == app]
    return received[-1]["accepted"], received[-1]["reason"]


async def run_logout(
    setup: Setup, signer: LogoutTokenSigner, registry: Registry
) -> dict[str, object]:
    apps = HttpAppLogout()
    try:
        result = await handle_logout(
            logout(),
            registry=registry,
            apps=apps,
            sso=FakeSsoSessions(),
            policy=POLICY,
            signer=signer,
        )
    finally:
        await apps.aclose()
    assert result is not None
    return {s.action: s for s in result.steps}


async def test_signed_logout_token_ends_the_sessions_across_a_rotation(
    setup: Setup, redis: Redis
) -> None:
    first = LogoutTokenSigner(generate_key_pem(), issuer=setup.issuer)
    await publish_signing_key(redis, first.public_jwk, grace_s=300)
    steps = await run_logout(setup, first, registry_for(setup.sim_url))
    for action in ("app_logout:ism", "app_logout:per"):
        step = steps[action]
        assert step.outcome is Outcome.SUCCEEDED, step  # type: ignore[attr-defined]
        assert step.attempts == 1  # type: ignore[attr-defined]
    assert await sessions(setup.sim, "ism") == []
    assert await sessions(setup.sim, "per") == []
    assert await last_reason(setup.sim, "per") == (True, "session ended")

    # A new signing key: the simulator meets an unknown kid and fetches the JWKS again.
    await setup.sim.post("/_sim/apps/ism/sessions", json={"user": "alice"})
    second = LogoutTokenSigner(generate_key_pem(), issuer=setup.issuer)
    await publish_signing_key(redis, second.public_jwk, grace_s=300)
    apps = HttpAppLogout()
    try:
        offboarded = await handle_offboard(
            offboard(actions=("app_logout:ism",)),
            registry=registry_for(setup.sim_url),
            apps=apps,
            sso=FakeSsoSessions(),
            policy=POLICY,
            signer=second,
        )
        assert offboarded is not None
    finally:
        await apps.aclose()
    assert [(s.action, s.outcome) for s in offboarded.steps] == [
        ("app_logout:ism", Outcome.SUCCEEDED)
    ]
    assert await sessions(setup.sim, "ism") == []


async def test_the_simulated_app_rejects_what_a_relying_party_must(
    setup: Setup, redis: Redis
) -> None:
    signer = LogoutTokenSigner(generate_key_pem(), issuer=setup.issuer)
    await publish_signing_key(redis, signer.public_jwk, grace_s=300)

    # Wrong audience: Sortie's step fails, retryable (a refused token is most often a
    # JWKS not current at the RP: the follow-up delivery sends it again); the session stays.
    steps = await run_logout(setup, signer, registry_for(setup.sim_url, per_client="ism"))
    per = steps["app_logout:per"]
    assert per.outcome is Outcome.FAILED  # type: ignore[attr-defined]
    assert per.error.code == "logout_token_rejected"  # type: ignore[attr-defined]
    assert per.error.retryable  # type: ignore[attr-defined]
    assert await sessions(setup.sim, "per") == ["alice"]
    accepted, reason = await last_reason(setup.sim, "per")
    assert not accepted and "aud" in reason

    async def post(token: str) -> tuple[int, bool, str]:
        response = await setup.sim.post(
            "/per/oidc/backchannel-logout", data={"logout_token": token}
        )
        accepted, reason = await last_reason(setup.sim, "per")
        return response.status_code, accepted, reason

    # A key that is not in the JWKS.
    stranger = LogoutTokenSigner(generate_key_pem(), issuer=setup.issuer)
    status, accepted, reason = await post(stranger.sign("per-client", sub="alice"))
    assert (status, accepted) == (400, False)
    # A tampered payload under a real signature.
    header, _, signature = signer.sign("per-client", sub="alice").split(".")
    _, payload, _ = signer.sign("per-client", sub="bob").split(".")
    status, accepted, reason = await post(f"{header}.{payload}.{signature}")
    assert (status, accepted) == (400, False) and "signature" in reason
    # Another issuer, and an expired token.
    other_iss = LogoutTokenSigner(generate_key_pem(), issuer="https://evil.test")
    await publish_signing_key(redis, other_iss.public_jwk, grace_s=300)
    status, accepted, reason = await post(other_iss.sign("per-client", sub="alice"))
    assert (status, accepted) == (400, False) and "iss" in reason
    expired = signer.sign("per-client", sub="alice", now=time.time() - 3600)
    status, accepted, reason = await post(expired)
    assert (status, accepted) == (400, False)
    assert await sessions(setup.sim, "per") == ["alice"]
    # The same claims, properly signed, are accepted.
    status, accepted, reason = await post(signer.sign("per-client", sub="alice"))
    assert (status, accepted, reason) == (200, True, "session ended")
