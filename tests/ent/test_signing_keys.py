"""The published signing keys, on a real redis-server behind the
orchestrator's JWKS endpoint.

Item 4: the JWKS is accepted by independent relying-party libraries (cryptojwt, which
idpyoidc uses, and joserfc) for RS256 and ES256: `use: "sig"` only, no `key_ops`.
Item 5: several ENT worker replicas each keep their own key alive, in any start order;
a retired key is reported loudly, never signs again and is not revived."""

from __future__ import annotations

import logging

import httpx
import pytest
from cryptojwt.jws.jws import JWS
from cryptojwt.key_bundle import KeyBundle
from redis.asyncio import Redis

from sortie_core.events import Outcome
from sortie_core.jwks import JWKS_KEY, generate_key_pem, publish_signing_key, retire_key
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.fake import FakeAppLogout, FakeSsoSessions
from sortie_ent.bootstrap import keep_key_alive
from sortie_ent.handlers import handle_logout
from sortie_ent.oidc import LogoutTokenSigner
from sortie_ent.registry import parse_registry
from sortie_ent.settings import EntSettings
from tests.ent.test_oidc_logout_tokens import ISSUER, fetch_jwks, rsa_pem, verify
from tests.support.workers import logout

POLICY = RetryPolicy(max_attempts=2, base_s=0.001, max_s=0.002)
REGISTRY = parse_registry(
    "applications:\n"
    "  - name: ism\n"
    "    protocol: oidc_bcl\n"
    "    backchannel_logout_uri: https://ism.ent.test/oidc/backchannel-logout\n"
)


def cryptojwt_verify(token: str, jwks: dict[str, object]) -> dict[str, object]:
    """What idpyoidc's relying party does with a fetched JWKS: a cryptojwt KeyBundle
    (it refuses a key with both `use` and `key_ops`), then JWS verification."""
    bundle = KeyBundle(keys=jwks["keys"])  # type: ignore[arg-type]
    keys = bundle.get("EC") + bundle.get("RSA")
    assert keys, "cryptojwt imported no key"
    payload: dict[str, object] = JWS(alg=None).verify_compact(token, keys)
    return payload


@pytest.mark.parametrize("kind", ["ES256", "RS256"])
async def test_jwks_verifies_with_cryptojwt_and_joserfc(
    client: httpx.AsyncClient, redis: Redis, kind: str
) -> None:
    await redis.delete(JWKS_KEY)
    pem = generate_key_pem() if kind == "ES256" else rsa_pem()
    signer = LogoutTokenSigner(pem, issuer=ISSUER)
    assert signer.algorithm == kind
    assert await publish_signing_key(redis, signer.public_jwk, grace_s=60)
    jwks = await fetch_jwks(client)
    [key] = jwks["keys"]  # type: ignore[misc]
    assert key["use"] == "sig" and "key_ops" not in key  # type: ignore[index,operator]
    token = signer.sign("ism", sub="alice")
    assert cryptojwt_verify(token, jwks)["sub"] == "alice"
    assert verify(token, jwks)["sub"] == "alice"


async def test_a_record_with_key_ops_is_served_without_it(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await redis.delete(JWKS_KEY)
    signer = LogoutTokenSigner(rsa_pem(), issuer=ISSUER)
    await publish_signing_key(redis, {**signer.public_jwk, "key_ops": ["verify"]}, grace_s=60)
    jwks = await fetch_jwks(client)
    assert cryptojwt_verify(signer.sign("ism", sub="bob"), jwks)["sub"] == "bob"


async def test_every_replica_keeps_its_own_key_published_in_any_order(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await redis.delete(JWKS_KEY)
    a = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER)
    b = LogoutTokenSigner(rsa_pem(), issuer=ISSUER)
    # Replica A starts, then B, then A restarts (with its same, older key).
    for signer in (a, b, a):
        assert await publish_signing_key(redis, signer.public_jwk, grace_s=60)
    jwks = await fetch_jwks(client)
    assert {k["kid"] for k in jwks["keys"]} == {a.kid, b.kid}  # type: ignore[index,union-attr]
    for signer in (a, b):
        assert verify(signer.sign("ism", sub="alice"), jwks)["sub"] == "alice"


async def test_a_retired_key_is_reported_and_no_longer_signs(
    client: httpx.AsyncClient, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await redis.delete(JWKS_KEY)
    settings = EntSettings(oidc_key_grace_s=60, oidc_key_ttl_s=30)
    signer = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER)
    other = LogoutTokenSigner(generate_key_pem(), issuer=ISSUER)
    assert await keep_key_alive(redis, signer, settings)
    assert await keep_key_alive(redis, other, settings)
    assert await retire_key(redis, signer.kid)
    assert not await retire_key(redis, "no-such-kid")

    with caplog.at_level(logging.ERROR, logger="sortie_ent.bootstrap"):
        assert not await keep_key_alive(redis, signer, settings)
    assert signer.retired
    assert any("RETIRED" in r.getMessage() and signer.kid in r.getMessage() for r in caplog.records)
    # Its heartbeat did not revive it; the other replica's key is untouched.
    assert not await keep_key_alive(redis, signer, settings)
    assert await keep_key_alive(redis, other, settings)

    apps = FakeAppLogout()
    result = await handle_logout(
        logout(), registry=REGISTRY, apps=apps, sso=FakeSsoSessions(), policy=POLICY, signer=signer
    )
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.FAILED
    assert step.error is not None and step.error.code == "signing_key_retired"
    assert apps.bcl_calls == []
    # Tokens it signed before stay verifiable during the grace; the other key too.
    jwks = await fetch_jwks(client)
    assert {k["kid"] for k in jwks["keys"]} == {signer.kid, other.kid}  # type: ignore[index,union-attr]
    assert jwks["keys"][0]["kid"] == other.kid  # type: ignore[index]
