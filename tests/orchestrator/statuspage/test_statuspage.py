"""The helpdesk status page over real HTTP: sign-in, sessions, security headers, the
request list and its user filter, and live updates by server-sent events."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from sortie_orchestrator.settings import TokenSpec
from sortie_testkit.redis_server import RedisServer
from tests.support.live import ALL, READER, SCIM_TOKEN, TOKEN, live_orchestrator


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with live_orchestrator() as url:
        yield url


@contextmanager
def signed_in(base: str, token: str = READER) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        resp = client.post("/ui/login", data={"token": token, "next": "/ui/"})
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
        yield client


def offboard(base: str, user: str) -> str:
    resp = httpx.post(
        f"{base}/v1/offboardings",
        json={"subject": {"user_id": user, "upn": f"{user}@lycee.example"}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["request_id"])


def test_pages_need_a_session(base: str) -> None:
    resp = httpx.get(f"{base}/ui/?user=alice")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/ui/login?next=/ui/%3Fuser%3Dalice"
    rid = offboard(base, "nobody")
    assert httpx.get(f"{base}/ui/requests/{rid}").status_code == 303
    assert httpx.get(f"{base}/ui/requests/{rid}/events").status_code == 401
    # A forged cookie is no session.
    forged = httpx.get(f"{base}/ui/", cookies={"sortie_session": "x" * 43})
    assert forged.status_code == 303


@pytest.mark.parametrize("token", ["not-a-token", SCIM_TOKEN, ""])
def test_wrong_tokens_are_refused(base: str, token: str) -> None:
    resp = httpx.post(f"{base}/ui/login", data={"token": token, "next": "/ui/"})
    assert resp.status_code == 401
    assert "set-cookie" not in resp.headers
    assert "refused" in resp.text or "lacks" in resp.text or resp.text == ""


def test_session_cookie_and_security_headers(base: str) -> None:
    resp = httpx.post(f"{base}/ui/login", data={"token": READER, "next": "//evil.example/x"})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert READER not in cookie
    page = httpx.get(f"{base}/ui/", cookies=resp.cookies)
    assert page.status_code == 200
    h = page.headers
    assert "default-src 'none'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-store"
    # The API's answers carry them too.
    assert httpx.get(f"{base}/v1/requests").headers["x-content-type-options"] == "nosniff"


def test_login_page_never_echoes_a_foreign_next(base: str) -> None:
    page = httpx.get(f"{base}/ui/login", params={"next": '/ui/"><script>alert(1)</script>'})
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert 'value="/ui/"' in page.text


def test_list_filters_by_user(base: str) -> None:
    offboard(base, "alice.martin")
    offboard(base, "bob.durand")
    with signed_in(base) as client:
        everyone = client.get("/ui/").text
        assert "alice.martin" in everyone and "bob.durand" in everyone
        only = client.get("/ui/", params={"user": "alice.martin"}).text
        assert "alice.martin" in only and "bob.durand" not in only
        assert client.get("/ui/", params={"status": "bogus"}).status_code == 422


def test_logout_ends_the_session(base: str) -> None:
    with signed_in(base) as client:
        cookies = dict(client.cookies)
        assert client.post("/ui/logout").status_code == 303
    assert httpx.get(f"{base}/ui/", cookies=cookies).status_code == 303


def test_events_follow_the_request_until_it_ends(base: str) -> None:
    rid = offboard(base, "carol")
    updates: list[str] = []
    ended = None
    started = time.monotonic()
    with signed_in(base) as client, client.stream("GET", f"/ui/requests/{rid}/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        event, data = None, []
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and event:
                if event == "update":
                    updates.append("\n".join(data))
                else:
                    ended = "\n".join(data)
                    break
                event, data = None, []
    # No worker runs here: phase 1 and the SSO phase time out (1 s each) and it fails.
    assert ended == "failed"
    assert time.monotonic() - started < 10
    assert len(updates) >= 2
    assert "s-in_progress" in updates[0]
    assert "s-failed" in updates[-1]
    bars = re.findall(r'<rect class="bar o-timed_out"', updates[-1])
    assert len(bars) >= 2


def test_pages_speak_the_browsers_language(base: str) -> None:
    french = httpx.get(f"{base}/ui/login")
    assert '<html lang="fr">' in french.text and "<h1>Connexion</h1>" in french.text
    english = httpx.get(f"{base}/ui/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in english.text and "<h1>Sign in</h1>" in english.text
    refused = httpx.post(f"{base}/ui/login", data={"token": "nope", "next": "/ui/"})
    assert refused.status_code == 401 and "Ce jeton a été refusé." in refused.text


def test_a_logout_answers_its_progress_page(base: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "click-1"}
    body = {"subject": {"user_id": "zoe", "upn": "zoe@lycee.example"}}
    first = httpx.post(f"{base}/v1/logouts", json=body, headers=headers).json()
    again = httpx.post(f"{base}/v1/logouts", json=body, headers=headers).json()
    assert first["request_id"] == again["request_id"]
    assert first["progress_url"] != again["progress_url"]
    for link in (first["progress_url"], again["progress_url"]):
        assert link.startswith(f"{base}/logout/")
        page = httpx.get(link)
        assert page.status_code == 200
        h = page.headers
        assert "default-src 'none'" in h["content-security-policy"]
        assert "script-src 'self'" in h["content-security-policy"]
        assert h["cache-control"] == "no-store" and h["referrer-policy"] == "no-referrer"
        assert "zoe" not in page.text and first["request_id"] not in page.text
    offboarding = httpx.post(
        f"{base}/v1/offboardings", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert offboarding.json()["progress_url"] is None
    with httpx.stream("GET", first["progress_url"] + "/events") as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        kinds = []
        for text in events.iter_lines():
            if text.startswith("event: "):
                kinds.append(text[7:])
            if text == "event: end":
                break
    # No worker runs here: it times out and ends; each update was a fragment of the page.
    assert kinds[0] == "update" and kinds[-1] == "end"


def test_a_session_ends_with_its_token() -> None:
    """The session is bound to the token's digest, checked on every request: a token
    removed from the configuration (or replaced under the same name) ends its sessions."""
    redis = RedisServer().start()
    try:
        with live_orchestrator(redis) as url:
            client = httpx.Client(base_url=url, timeout=10)
            resp = client.post("/ui/login", data={"token": READER, "next": "/ui/"})
            assert resp.status_code == 303
            assert client.get("/ui/").status_code == 200
        replaced = [
            TokenSpec(name="all", token=TOKEN, scopes=ALL),
            # Same name, another token: the old one must not keep its sessions.
            TokenSpec(name="helpdesk", token="x" * 40, scopes=frozenset({"requests:read"})),
        ]
        with live_orchestrator(redis, tokens=replaced) as url:
            client.base_url = httpx.URL(url)
            assert client.get("/ui/").status_code == 303
            rid = offboard(url, "bob")
            assert client.get(f"/ui/requests/{rid}/events").status_code == 401
        client.close()
    finally:
        redis.cleanup()
