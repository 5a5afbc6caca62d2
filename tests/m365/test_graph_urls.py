"""The URLs built by hand (graph_urls.py) are the ones msgraph-sdk's builders and
middleware make; the client without kiota's middleware (graph_http.py)."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from aiohttp import web
from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware import ParametersNameDecodingHandler
from kiota_http.middleware.options import ParametersNameDecodingHandlerOption
from pydantic import SecretStr

from sortie_core.errors import PermanentError
from sortie_m365.adapters.apps import SpreadAuthentication, as_app
from sortie_m365.adapters.credentials import StaticTokenCredential
from sortie_m365.adapters.graph_http import graph_client
from sortie_m365.adapters.graph_urls import prepared, user_url, wire
from tests.m365.conftest import make_directory

BASE = "https://graph.example/v1.0"
USERS = [
    "alice@school.example",
    "8f2b6a1e-0c1d-4e5f-9a8b-7c6d5e4f3a2b",
    "o'brien#1?x=y&z%41 é+/~._-!$()*,;:@[]",
    "ü日本",
]
FIELDS = [(), ("id",), ("id", "userPrincipalName", "userType", "mail"), ("a b", "c,d")]


def _client():  # type: ignore[no-untyped-def]
    credential = StaticTokenCredential(SecretStr("t"))
    return graph_client(BASE, credential, scope="s/.default", timeout_s=1)


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("fields", FIELDS)
def test_a_user_url_is_the_sdks(user: str, fields: tuple[str, ...]) -> None:
    client = _client()
    item = client.users.by_user_id(user)
    query = item.UserItemRequestBuilderGetQueryParameters(select=list(fields) or None)
    info = item.to_get_request_information(RequestConfiguration(query_parameters=query))
    info.path_parameters["baseurl"] = BASE
    assert BASE + user_url(user, select=fields) == info.url
    revoke = item.revoke_sign_in_sessions.to_post_request_information()
    revoke.path_parameters["baseurl"] = BASE
    assert BASE + user_url(user, "/revokeSignInSessions") == revoke.url


@pytest.mark.parametrize(
    "url",
    [
        BASE + "/users?%24filter=mail%20eq%20%27a%27&%24select=id,mail&%24top=2",
        BASE + "/users?%24count=true&%24filter=x%20eq%20%27%24a%27",
        BASE + "/users/a%40b?%24select=id&%2Eodd=%2E&%7Et=%7e&%2dx",
        BASE + "/users/a%40b",
        BASE + "/users?plain=1",
    ],
)
def test_wire_decodes_names_as_the_sdks_middleware(url: str) -> None:
    query = url.partition("?")[2]
    handler = ParametersNameDecodingHandler()
    option = ParametersNameDecodingHandlerOption()
    decoded = handler.decode_uri_encoded_string(query, option.characters_to_decode)
    expected = url.partition("?")[0] + ("?" + decoded if query else "")
    assert wire(url) == expected
    assert httpx.URL(wire(url)) == httpx.URL(expected)


def test_a_request_is_expanded_once_and_sent_decoded() -> None:
    client = _client()
    query = client.users.UsersRequestBuilderGetQueryParameters(filter="mail eq 'a'", top=2)
    info = client.users.to_get_request_information(RequestConfiguration(query_parameters=query))
    prepared(info, BASE)
    assert info.url == BASE + "/users?$filter=mail%20eq%20%27a%27&$top=2"
    assert prepared(info, BASE).url == info.url


async def test_a_redirect_is_a_failure_not_a_success() -> None:
    # kiota returns an unfollowed 3xx as a success; without its redirect handler, the
    # client refuses it (no call of Sortie's is answered with a redirect).
    async def moved(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    directory = make_directory(f"http://127.0.0.1:{port}", batch_linger_s=0)
    try:
        for call in (directory.get_user("a@b.example"), directory.revoke_sessions("a@b.example")):
            with pytest.raises(PermanentError) as caught:
                await call
            assert caught.value.code == "graph_http_302"
    finally:
        await directory.aclose()
        await runner.cleanup()


class _Counting(StaticTokenCredential):
    def __init__(self, token: str, expires_in_s: int = 3600) -> None:
        super().__init__(SecretStr(token))
        self.calls: list[dict[str, object]] = []
        self.expires_in_s = expires_in_s

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(kwargs)
        token = await super().get_token(*scopes, **kwargs)
        return AccessToken(token.token, int(time.time()) + self.expires_in_s)


async def test_a_token_is_asked_for_once_per_registration_until_it_nears_expiry() -> None:
    first, second, short = _Counting("t1"), _Counting("t2"), _Counting("t3", expires_in_s=60)
    auth = SpreadAuthentication([first, second, short], "s/.default")

    async def header(app: int, claims: str | None = None) -> str:
        info = RequestInformation(Method.GET)
        info.url = "http://127.0.0.1:1/v1.0/users/a"
        with as_app(app):
            await auth.authenticate_request(info, {"claims": claims} if claims else None)
        return (info.request_headers or {})["authorization"]

    assert [await header(0) for _ in range(3)] == ["Bearer t1"] * 3
    assert await header(1) == "Bearer t2"
    assert (len(first.calls), len(second.calls)) == (1, 1)
    # A token within 5 minutes of its expiry is asked for again, as azure-identity refreshes.
    assert [await header(2) for _ in range(2)] == ["Bearer t3"] * 2
    assert len(short.calls) == 2
    # A CAE challenge always goes to the credential, with its claims.
    claims = base64.b64encode(b'{"access_token":{}}').decode()
    assert await header(0, claims) == "Bearer t1"
    assert len(first.calls) == 2 and first.calls[-1].get("claims") == '{"access_token":{}}'
