"""The CAS simulator's browser login with /p3/serviceValidate, and the OpenID Connect
provider simulator (code flow with PKCE, RS256 id_token)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt

from sortie_simulators import cas, oidc_provider
from tests.simulators.asgi import asgi_client

SERVICE = "https://sortie.test/ui/login/cas"
REDIRECT = "https://sortie.test/ui/login/oidc"


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def _cas_ticket(client: httpx.AsyncClient, user: str) -> str:
    page = await client.get("/cas/login", params={"service": SERVICE})
    execution = re.search(r'name="execution" value="([^"]+)"', page.text)
    assert page.status_code == 200 and execution is not None
    done = await client.post(
        "/cas/login",
        data={"service": SERVICE, "execution": execution[1], "username": user, "password": "pw"},
    )
    assert done.status_code == 302
    return _query(done.headers["location"])["ticket"]


async def test_cas_login_validates_once_with_attributes() -> None:
    async with asgi_client(cas.create_app()) as client:
        await client.put("/_sim/users/hd1/attributes", json={"memberOf": ["helpdesk"]})
        ticket = await _cas_ticket(client, "hd1")
        first = await client.get(
            "/cas/p3/serviceValidate", params={"service": SERVICE, "ticket": ticket}
        )
        assert "<cas:user>hd1</cas:user>" in first.text
        assert "<cas:memberOf>helpdesk</cas:memberOf>" in first.text
        again = await client.get(
            "/cas/p3/serviceValidate", params={"service": SERVICE, "ticket": ticket}
        )
        assert 'code="INVALID_TICKET"' in again.text
        # The login is an SSO session like any other: the actuator lists it.
        listed = await client.get("/cas/actuator/ssoSessions/users/hd1")
        assert len(listed.json()["activeSsoSessions"]) == 1
        # Single sign-on: the TGC cookie gets a ticket without the form.
        sso = await client.get("/cas/login", params={"service": SERVICE})
        assert sso.status_code == 302 and "ticket=ST-" in sso.headers["location"]


async def test_cas_ticket_for_another_service_is_refused_and_spent() -> None:
    async with asgi_client(cas.create_app()) as client:
        ticket = await _cas_ticket(client, "hd2")
        other = await client.get(
            "/cas/p3/serviceValidate", params={"service": "https://evil.test/", "ticket": ticket}
        )
        assert 'code="INVALID_SERVICE"' in other.text
        right = await client.get(
            "/cas/p3/serviceValidate", params={"service": SERVICE, "ticket": ticket}
        )
        assert 'code="INVALID_TICKET"' in right.text
        missing = await client.get("/cas/p3/serviceValidate", params={"service": SERVICE})
        assert 'code="INVALID_REQUEST"' in missing.text


def _authorize_query(verifier: str, **over: str) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": "console",
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": oidc_provider.s256(verifier),
        "code_challenge_method": "S256",
    }
    return {**query, **over}


async def _code(client: httpx.AsyncClient, query: dict[str, str]) -> str:
    done = await client.post(
        f"/authorize?{urlencode(query)}", data={"username": "hd3", "password": "pw"}
    )
    assert done.status_code == 302
    found = _query(done.headers["location"])
    assert found["state"] == query["state"]
    return found["code"]


async def test_oidc_code_flow_with_pkce() -> None:
    app = oidc_provider.create_app(clients={"console": ("secret-1", [REDIRECT])})
    async with asgi_client(app) as client:
        await client.put("/_sim/users/hd3/claims", json={"roles": ["helpdesk"], "iss": "x"})
        meta = (await client.get("/.well-known/openid-configuration")).json()
        assert meta["issuer"] == "http://sim.test" and meta["code_challenge_methods_supported"] == [
            "S256"
        ]
        verifier = "v" * 64
        code = await _code(client, _authorize_query(verifier))
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        wrong = await client.post(
            "/token", data={**form, "code_verifier": "w" * 64}, auth=("console", "secret-1")
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        code = await _code(client, _authorize_query(verifier))
        form["code"] = code
        bad_client = await client.post(
            "/token", data={**form, "code_verifier": verifier}, auth=("console", "nope")
        )
        assert bad_client.status_code == 401
        ok = await client.post(
            "/token", data={**form, "code_verifier": verifier}, auth=("console", "secret-1")
        )
        assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
        keys = (await client.get("/jwks")).json()["keys"]
        claims = jwt.decode(
            ok.json()["id_token"], jwt.PyJWK(keys[0]).key, algorithms=["RS256"], audience="console"
        )
        assert claims["iss"] == "http://sim.test" and claims["sub"] == "hd3"
        assert claims["nonce"] == "n-1" and claims["roles"] == ["helpdesk"]
        replay = await client.post(
            "/token", data={**form, "code_verifier": verifier}, auth=("console", "secret-1")
        )
        assert replay.json()["error"] == "invalid_grant"


async def test_oidc_refuses_bad_requests_without_redirecting_to_strangers() -> None:
    app = oidc_provider.create_app(clients={"console": ("secret-1", [REDIRECT])})
    async with asgi_client(app) as client:
        stranger = await client.get(
            "/authorize", params=_authorize_query("v" * 64, redirect_uri="https://evil.test/")
        )
        assert stranger.status_code == 400
        no_pkce = _authorize_query("v" * 64)
        del no_pkce["code_challenge"]
        refused = await client.get("/authorize", params=no_pkce)
        assert refused.status_code == 302
        assert _query(refused.headers["location"])["error"] == "invalid_request"


async def test_sign_in_pages_speak_the_browsers_language_and_demo_people_have_roles() -> None:
    async with asgi_client(cas.create_app(seed_demo=True)) as client:
        fr = await client.get("/cas/login", params={"service": SERVICE})
        en = await client.get(
            "/cas/login", params={"service": SERVICE}, headers={"Accept-Language": "en-GB,en"}
        )
        assert '<html lang="fr">' in fr.text and "Mot de passe" in fr.text
        assert '<html lang="en">' in en.text and "Password" in en.text
        assert '<label>Username <input name="username"' in en.text
        ticket = await _cas_ticket(client, "claire")
        valid = await client.get(
            "/cas/p3/serviceValidate", params={"service": SERVICE, "ticket": ticket}
        )
        assert "<cas:memberOf>helpdesk-lycee-a</cas:memberOf>" in valid.text
    provider = oidc_provider.create_app(clients={"c": ("s", [REDIRECT])}, seed_demo=True)
    assert provider.state.provider.claims["sam"] == {"roles": ["sortie-admin"]}
    async with asgi_client(provider) as client:
        params = {
            "response_type": "code",
            "client_id": "c",
            "redirect_uri": REDIRECT,
            "scope": "openid",
            "state": "x",
            "code_challenge": oidc_provider.s256("v" * 43),
            "code_challenge_method": "S256",
        }
        page = await client.get("/authorize", params=params, headers={"Accept-Language": "en"})
        assert "<h1>Identity provider</h1>" in page.text
        wrong = await client.post(
            f"/authorize?{urlencode(params)}",
            data={"username": "sam"},
            headers={"Accept-Language": "en"},
        )
        assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
