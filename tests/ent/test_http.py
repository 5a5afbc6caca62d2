"""The ENT HTTP adapters against a small in-test peer: what goes on the wire, and how each
status is translated."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from sortie_core.errors import (
    NotFoundError,
    PermanentError,
    RefusedError,
    SortieError,
    ThrottledError,
    TransientError,
)
from sortie_core.events import Subject
from sortie_ent.adapters.http import CasRestSessions, HttpAppLogout
from sortie_ent.registry import Application, parse_registry
from sortie_ent.slo import logout_request
from sortie_testkit.redis_server import free_port
from tests.support.stub_http import Reply, StubHttp

SUBJECT = Subject(user_id="u-42", cas_username='jo "the" <dev>')


@pytest.fixture
def peer(serve: Callable[[Any], str]) -> tuple[StubHttp, str]:
    stub = StubHttp(lambda _: Reply(200, {"ok": True}))
    return stub, serve(stub)


def cas_app(base: str) -> Application:
    pattern = base.replace(".", r"\.") + "/esper/.*"
    return parse_registry(
        f"applications: [{{name: esper, protocol: cas_slo, service_patterns: ['{pattern}']}}]"
    ).applications[0]


def http_app(base: str, **extra: Any) -> Application:
    spec = {
        "name": "mer",
        "protocol": "http",
        "logout_url": base + "/mer/users/{user_id}/logout",
        "headers": {"Content-Type": "application/json", "X-Client": "sortie"},
        "body_template": '{"user": "{cas_username}", "id": "{user_id}"}',
    } | extra
    return parse_registry(json.dumps({"applications": [spec]})).applications[0]


@pytest.fixture
async def apps() -> AsyncIterator[HttpAppLogout]:
    client = HttpAppLogout({"mer": SecretStr("mer-token")})
    yield client
    await client.aclose()


# -- CAS single logout -------------------------------------------------------------------
async def test_single_logout_posts_the_form(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    message = logout_request("alice", "ST-1-abc")
    await apps.single_logout(cas_app(base), f"{base}/esper/", message, timeout_s=2)
    [seen] = stub.seen
    assert (seen.method, seen.path) == ("POST", "/esper/")
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.form() == {"logoutRequest": message}


async def test_single_logout_refuses_a_url_outside_the_app(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    with pytest.raises(RefusedError) as info:
        await apps.single_logout(cas_app(base), f"{base}/other/?t=ST-1", "<x/>", timeout_s=2)
    assert stub.seen == []
    assert "ST-1" not in str(info.value) and "127.0.0.1" in str(info.value)


@pytest.mark.parametrize(
    ("status", "headers", "cls", "code"),
    [
        (429, {"Retry-After": "4"}, ThrottledError, "app_throttled"),
        (503, {"Retry-After": "4"}, ThrottledError, "app_throttled"),
        (503, {}, TransientError, "app_unavailable"),
        (500, {}, TransientError, "app_unavailable"),
        (408, {}, TransientError, "app_unavailable"),
        (404, {}, PermanentError, "app_rejected"),  # SLO: a 404 is a wrong URL, not "gone"
        (403, {}, PermanentError, "app_unauthorized"),
        (400, {}, PermanentError, "app_rejected"),
    ],
)
async def test_single_logout_status_mapping(
    peer: tuple[StubHttp, str],
    apps: HttpAppLogout,
    status: int,
    headers: dict[str, str],
    cls: type[SortieError],
    code: str,
) -> None:
    stub, base = peer
    stub.script("POST", "/esper/", Reply(status, {"e": 1}, headers))
    with pytest.raises(SortieError) as info:
        await apps.single_logout(cas_app(base), f"{base}/esper/", "<x/>", timeout_s=2)
    assert type(info.value) is cls
    assert info.value.code == code
    if "Retry-After" in headers:
        assert isinstance(info.value, TransientError) and info.value.retry_after == 4.0


async def test_redirect_is_not_followed(peer: tuple[StubHttp, str], apps: HttpAppLogout) -> None:
    stub, base = peer
    # A CAS client may answer a logout request with a redirect (django-cas-ng does): the
    # message was delivered; the redirect is not followed.
    stub.script("POST", "/esper/", Reply(302, None, {"Location": base + "/elsewhere"}))
    await apps.single_logout(cas_app(base), f"{base}/esper/", "<x/>", timeout_s=2)
    assert [s.path for s in stub.seen] == ["/esper/"]
    # Anywhere else a redirect is an error, never followed either.
    stub.script("POST", "/mer/users/u-42/logout", Reply(302, None, {"Location": base + "/x"}))
    with pytest.raises(PermanentError) as info:
        await apps.identity_logout(http_app(base), SUBJECT, timeout_s=2)
    assert info.value.code == "app_redirected"
    assert [s.path for s in stub.seen] == ["/esper/", "/mer/users/u-42/logout"]


def bcl_app(base: str) -> Application:
    spec = {
        "name": "ism",
        "protocol": "oidc_bcl",
        "client_id": "ism-client",
        "backchannel_logout_uri": base + "/ism/oidc/backchannel-logout",
    }
    return parse_registry(json.dumps({"applications": [spec]})).applications[0]


async def test_backchannel_logout_posts_the_token(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    await apps.backchannel_logout(bcl_app(base), "h.p.s", timeout_s=2)
    [seen] = stub.seen
    assert (seen.method, seen.path) == ("POST", "/ism/oidc/backchannel-logout")
    assert seen.form() == {"logout_token": "h.p.s"}
    stub.script("POST", "/ism/oidc/backchannel-logout", Reply(400, {"error": "invalid_request"}))
    # A refused token is worth sending again later (the RP's JWKS may not be current).
    with pytest.raises(TransientError) as info:
        await apps.backchannel_logout(bcl_app(base), "h.p.s", timeout_s=2)
    assert info.value.code == "logout_token_rejected"
    # Credentials refused are not a token problem: final at once.
    stub.script("POST", "/ism/oidc/backchannel-logout", Reply(403, {"error": "forbidden"}))
    with pytest.raises(PermanentError) as refused:
        await apps.backchannel_logout(bcl_app(base), "h.p.s", timeout_s=2)
    assert refused.value.code == "app_unauthorized"


async def test_slow_app_times_out_as_transient(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    stub.script("POST", "/esper/", Reply(200, delay_s=2))
    with pytest.raises(TransientError) as info:
        await apps.single_logout(cas_app(base), f"{base}/esper/", "<x/>", timeout_s=0.2)
    assert info.value.code == "app_timeout"


async def test_unreachable_app_is_transient(apps: HttpAppLogout) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TransientError) as info:
        await apps.single_logout(cas_app(base), f"{base}/esper/", "<x/>", timeout_s=2)
    assert info.value.code == "app_unreachable"


# -- identity logout ---------------------------------------------------------------------
async def test_identity_logout_renders_url_body_and_token(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    await apps.identity_logout(
        http_app(base, token_env="MER_TOKEN"),
        Subject(user_id="a/b?c", cas_username='x"y'),
        timeout_s=2,
    )
    [seen] = stub.seen
    assert seen.method == "POST"
    assert seen.raw_path == "/mer/users/a%2Fb%3Fc/logout"
    assert seen.json() == {"user": 'x"y', "id": "a/b?c"}  # JSON-escaped, still valid JSON
    assert seen.headers["authorization"] == "Bearer mer-token"
    assert seen.headers["x-client"] == "sortie"


async def test_identity_logout_form_body_is_url_encoded(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    app = http_app(
        base,
        method="DELETE",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body_template="user={cas_username}&scope=all",
    )
    await apps.identity_logout(app, SUBJECT, timeout_s=2)
    [seen] = stub.seen
    assert seen.method == "DELETE"
    assert seen.form() == {"user": SUBJECT.cas_username, "scope": "all"}


async def test_identity_logout_without_its_token_is_not_sent(
    peer: tuple[StubHttp, str],
) -> None:
    stub, base = peer
    client = HttpAppLogout({})
    try:
        with pytest.raises(PermanentError) as info:
            await client.identity_logout(
                http_app(base, token_env="MER_TOKEN"), SUBJECT, timeout_s=2
            )
    finally:
        await client.aclose()
    assert info.value.code == "app_token_missing"
    assert "MER_TOKEN" in info.value.message
    assert stub.seen == []


async def test_identity_logout_404_is_not_found(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    stub, base = peer
    stub.script("POST", "/mer/users/u-42/logout", Reply(404))
    with pytest.raises(NotFoundError):
        await apps.identity_logout(http_app(base), SUBJECT, timeout_s=2)


# -- CAS server --------------------------------------------------------------------------
@pytest.fixture
def cas_peer(serve: Callable[[Any], str]) -> tuple[StubHttp, str]:
    stub = StubHttp(lambda _: Reply(200, {"status": 200}))
    return stub, serve(stub) + "/cas"


async def test_destroy_ticket_deletes_the_tgt(cas_peer: tuple[StubHttp, str]) -> None:
    stub, cas_url = cas_peer
    cas = CasRestSessions(cas_url)
    try:
        await cas.destroy_ticket("TGT-1-abc")
        # Apereo answers 200 for any TGT: a 404 means the REST module is missing.
        stub.script("DELETE", "/cas/v1/tickets/TGT-2", Reply(404))
        with pytest.raises(PermanentError) as info:
            await cas.destroy_ticket("TGT-2")
        assert not isinstance(info.value, NotFoundError)
        assert info.value.code == "cas_rest_missing"
        stub.script("DELETE", "/cas/v1/tickets/TGT-3", Reply(502))
        with pytest.raises(TransientError):
            await cas.destroy_ticket("TGT-3")
    finally:
        await cas.aclose()
    assert [(s.method, s.path) for s in stub.seen] == [
        ("DELETE", "/cas/v1/tickets/TGT-1-abc"),
        ("DELETE", "/cas/v1/tickets/TGT-2"),
        ("DELETE", "/cas/v1/tickets/TGT-3"),
    ]
    assert "TGT-2" not in str(info.value)
    assert "authorization" not in stub.seen[0].headers


async def test_destroy_user_sessions_uses_the_actuator_with_basic_auth(
    cas_peer: tuple[StubHttp, str],
) -> None:
    stub, cas_url = cas_peer
    cas = CasRestSessions(
        cas_url, actuator_user=SecretStr("ops"), actuator_password=SecretStr("pa:ss")
    )
    try:
        await cas.destroy_user_sessions("alice.b")
        stub.script("DELETE", "/cas/actuator/ssoSessions/users/bob", Reply(404))
        with pytest.raises(PermanentError) as info:
            await cas.destroy_user_sessions("bob")
        stub.script("DELETE", "/cas/actuator/ssoSessions/users/carol", Reply(401))
        with pytest.raises(PermanentError) as unauthorized:
            await cas.destroy_user_sessions("carol")
        # Apereo reports each TGT on its own; one it failed to destroy is not a success.
        failed = {"TGT-1": {"status": 500, "ticketGrantingTicket": "TGT-1", "message": "x"}}
        stub.script("DELETE", "/cas/actuator/ssoSessions/users/dan", Reply(200, failed))
        with pytest.raises(TransientError) as partly:
            await cas.destroy_user_sessions("dan")
    finally:
        await cas.aclose()
    seen = stub.seen[0]
    assert (seen.method, seen.path) == ("DELETE", "/cas/actuator/ssoSessions/users/alice.b")
    expected = base64.b64encode(b"ops:pa:ss").decode()
    assert seen.headers["authorization"] == f"Basic {expected}"
    # A missing actuator must not pass for "no session": the sessions would live on.
    assert not isinstance(info.value, NotFoundError)
    assert info.value.code == "cas_actuator_missing"
    assert unauthorized.value.code == "cas_unauthorized"
    assert partly.value.code == "cas_destroy_failed" and "TGT-1" not in str(partly.value)
    assert "pa:ss" not in str(unauthorized.value)


async def test_cas_transport_errors_are_transient(cas_peer: tuple[StubHttp, str]) -> None:
    stub, cas_url = cas_peer
    stub.script("DELETE", "/cas/v1/tickets/TGT-1", Reply(200, delay_s=1.0))
    cas = CasRestSessions(cas_url, timeout_s=0.1)
    with pytest.raises(TransientError) as info:
        await cas.destroy_ticket("TGT-1")
    await cas.aclose()
    closed = CasRestSessions(f"http://127.0.0.1:{free_port()}/cas")
    with pytest.raises(TransientError) as refused:
        await closed.destroy_ticket("TGT-2")
    await closed.aclose()
    assert info.value.code == "cas_timeout"
    assert refused.value.code == "cas_unreachable"
    assert "TGT-1" not in str(info.value) and "TGT-2" not in str(refused.value)


def apereo_session(tgt: str, user: str, services: dict[str, str]) -> dict[str, Any]:
    """An `activeSsoSessions` entry as apereo/cas's SingleSignOnSessionsEndpoint writes it."""
    return {
        "authenticated_principal": user,
        "ticket_granting_ticket": tgt,
        "number_of_uses": len(services),
        "expiration_policy": {"timeToLive": 28800, "name": "TicketGrantingTicketExpirationPolicy"},
        "authenticated_services": {
            st: {"@class": "SimpleWebApplicationServiceImpl", "id": url, "originalUrl": url}
            for st, url in services.items()
        },
    }


async def test_user_sessions_reads_the_actuator(cas_peer: tuple[StubHttp, str]) -> None:
    stub, cas_url = cas_peer
    body = {
        "activeSsoSessions": [
            apereo_session(
                "TGT-1", "Alice", {"ST-1": "https://a.test/", "ST-2": "https://b.test/"}
            ),
            # An older CAS may ignore the user filter: someone else's session is dropped.
            apereo_session("TGT-9", "bob", {"ST-9": "https://a.test/"}),
        ],
        "totalSsoSessions": 7,
    }
    stub.script("GET", "/cas/actuator/ssoSessions/users/alice", Reply(200, body))
    stub.script("GET", "/cas/actuator/ssoSessions/users/bad", Reply(200, {"unexpected": 1}))
    stub.script("GET", "/cas/actuator/ssoSessions/users/gone", Reply(404))
    cas = CasRestSessions(cas_url, actuator_user=SecretStr("ops"), actuator_password=SecretStr("p"))
    try:
        [session] = await cas.user_sessions("alice")
        with pytest.raises(PermanentError) as unexpected:
            await cas.user_sessions("bad")
        with pytest.raises(PermanentError) as missing:
            await cas.user_sessions("gone")
    finally:
        await cas.aclose()
    assert session.tgt == "TGT-1"
    assert [(s.service, s.ticket) for s in session.services] == [
        ("https://a.test/", "ST-1"),
        ("https://b.test/", "ST-2"),
    ]
    assert "TGT-1" not in repr(session) and "ST-1" not in repr(session)
    assert stub.seen[0].headers["authorization"].startswith("Basic ")
    assert unexpected.value.code == "cas_actuator_unexpected"
    assert missing.value.code == "cas_actuator_missing"


async def test_without_the_actuator_nothing_is_asked(cas_peer: tuple[StubHttp, str]) -> None:
    stub, cas_url = cas_peer
    cas = CasRestSessions(cas_url, actuator=False)
    try:
        with pytest.raises(PermanentError) as listing:
            await cas.user_sessions("alice")
        with pytest.raises(PermanentError) as deleting:
            await cas.destroy_user_sessions("alice")
    finally:
        await cas.aclose()
    assert listing.value.code == deleting.value.code == "cas_actuator_not_configured"
    assert stub.seen == []


async def test_a_cookie_one_logout_got_is_not_sent_on_the_next(
    peer: tuple[StubHttp, str], apps: HttpAppLogout
) -> None:
    """One session serves every user's logouts: what an application sets while one user is
    logged out (a session cookie, say) never rides along on another user's."""
    stub, base = peer
    # By name: aiohttp's default jar keeps no cookie of an IP address, as a real host's.
    base = base.replace("127.0.0.1", "localhost")
    stub.script("POST", "/esper/", Reply(200, {"ok": True}, {"Set-Cookie": "JSESSIONID=alice"}))
    for user in ("alice", "bob"):
        message = logout_request(user, "ST-1")
        await apps.single_logout(cas_app(base), f"{base}/esper/", message, timeout_s=2)
    first, second = stub.calls("POST", "/esper/")
    assert "cookie" not in first.headers and "cookie" not in second.headers
