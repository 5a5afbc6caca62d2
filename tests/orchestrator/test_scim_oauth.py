"""OAuth 2.0 client-credentials access tokens on SCIM: a live orchestrator verifies JWTs
against an issuer's JWKS served over real HTTP (as an authorization server publishes it,
RFC 7517), beside the static bearer tokens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sortie_orchestrator.http.oauth import OAuthSettings
from tests.support.live import SCIM_TOKEN, live_orchestrator

ISSUER = "https://login.example/tenant/v2.0"
AUDIENCE = "api://sortie-scim"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keys"
    server.shutdown()


@pytest.fixture(scope="module")
def base(jwks_url: str) -> Iterator[str]:
    oauth = OAuthSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks_url)  # type: ignore[arg-type]
    with live_orchestrator(oauth=oauth) as url:
        yield url


def token(key: Any = KEY, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "azp": "entra-provisioning",
        "roles": ["scim"],
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def call(base: str, bearer: str, path: str = "/scim/v2/Users") -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {bearer}"})


def test_a_valid_access_token_may_provision(base: str) -> None:
    assert call(base, token()).status_code == 200
    # Okta-style scopes in `scp`, space-separated `scope` too.
    assert call(base, token(roles=None, scp=["scim"])).status_code == 200
    assert call(base, token(roles=None, scope="openid scim")).status_code == 200
    created = httpx.post(
        f"{base}/scim/v2/Users",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "oauth.user"},
        headers={"Authorization": f"Bearer {token()}"},
    )
    assert created.status_code == 201, created.text
    # The static token still works beside it.
    assert call(base, SCIM_TOKEN).status_code == 200


@pytest.mark.parametrize(
    "bad",
    [
        token(aud="api://someone-else"),
        token(iss="https://evil.example"),
        token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        token(key=OTHER),
        token(kid="unknown"),
        token()[:-4] + "abcd",
        jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "roles": ["scim"]},
            KEY,
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
    ],
    ids=["audience", "issuer", "expired", "signature", "kid", "tampered", "no-exp"],
)
def test_invalid_tokens_are_refused(base: str, bad: str) -> None:
    resp = call(base, bad)
    assert resp.status_code == 401, resp.text
    assert "invalid_token" in resp.headers["www-authenticate"]


def test_the_token_grants_scim_only(base: str) -> None:
    assert call(base, token(roles=["other"])).status_code == 403
    # Never another scope, whatever it claims.
    assert call(base, token(roles=["scim", "requests:read"]), "/v1/requests").status_code == 403
