"""Low-severity findings of a security audit, over real
HTTP to a real orchestrator on its own redis-server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.live import READER, SCIM_TOKEN, TOKEN, live_orchestrator

PROBLEM = "application/problem+json"
DEEP = "[" * 30_000 + "]" * 30_000


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with live_orchestrator(auth_failure_limit=5, auth_failure_window_s=60) as url:
        yield url


def test_cross_site_posts_to_the_status_page_are_refused(base: str) -> None:
    """Item 8: login CSRF and forced logout from another site."""
    for path in ("/ui/login", "/ui/logout"):
        for headers in (
            {"Origin": "https://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site", "Origin": base},
        ):
            resp = httpx.post(f"{base}{path}", data={"token": READER}, headers=headers)
            assert resp.status_code == 403, (path, headers)
            assert resp.headers["content-type"] == PROBLEM
            assert "set-cookie" not in resp.headers
    # From its own pages (the browser says so, or sends its own origin) it works.
    own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
    resp = httpx.post(f"{base}/ui/login", data={"token": READER, "next": "/ui/"}, headers=own)
    assert resp.status_code == 303 and "set-cookie" in resp.headers
    assert httpx.post(f"{base}/ui/logout", headers={"Origin": base}).status_code == 303


@pytest.mark.parametrize(
    ("path", "ctype", "auth"),
    [
        ("/ui/login", "application/json", None),
        ("/scim/v2/Users", "application/scim+json", "scim"),
        ("/v1/logouts", "application/json", "all"),
    ],
)
def test_deeply_nested_json_is_a_400_problem(
    base: str, path: str, ctype: str, auth: str | None
) -> None:
    """Item 9: a RecursionError in any JSON parser is a 400, never a 500."""
    headers = {"Content-Type": ctype}
    if auth:
        headers["Authorization"] = f"Bearer {SCIM_TOKEN if auth == 'scim' else TOKEN}"
    body = '{"a": ' + DEEP + "}"
    resp = httpx.post(f"{base}{path}", content=body, headers=headers, timeout=30)
    assert resp.status_code == 400, resp.text[:300]
    assert resp.headers["content-type"] == PROBLEM


def test_personal_data_is_never_cached(base: str) -> None:
    """Item 13."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path, headers in (
        ("/v1/requests", auth),
        ("/scim/v2/Users", {"Authorization": f"Bearer {SCIM_TOKEN}"}),
        ("/v1/requests", {}),
    ):
        resp = httpx.get(f"{base}{path}", headers=headers)
        assert resp.headers["cache-control"] == "no-store", path


def test_wrong_content_type_is_answered_after_authentication(base: str) -> None:
    """Item 17: an anonymous caller gets 401, not 415."""
    resp = httpx.post(f"{base}/v1/logouts", content="x", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 401
    resp = httpx.post(
        f"{base}/v1/logouts",
        content="x",
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 415


def test_failed_authentications_are_logged_and_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 15: per client, API and /ui/login together; a good token is refused too while
    the client is limited."""
    with (
        live_orchestrator(auth_failure_limit=3, auth_failure_window_s=60) as url,
        caplog.at_level("WARNING", logger="sortie_orchestrator.http.guards"),
    ):
        bad = {"Authorization": "Bearer wrong-token-wrong-token-wrong"}
        assert httpx.get(f"{url}/v1/requests", headers=bad).status_code == 401
        assert httpx.post(f"{url}/ui/login", data={"token": "nope"}).status_code == 401
        assert httpx.get(f"{url}/v1/requests").status_code == 401
        limited = httpx.get(f"{url}/v1/requests", headers={"Authorization": f"Bearer {TOKEN}"})
        assert limited.status_code == 429
        assert limited.headers["content-type"] == PROBLEM
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert httpx.post(f"{url}/ui/login", data={"token": READER}).status_code == 429
    failures = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(failures) == 3
    assert all("127.0.0.1" in m for m in failures)
    assert not any("wrong-token" in m or "nope" in m for m in failures)  # never the token


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SORTIE_ORCHESTRATOR_TOKENS": '[{"name":"ent","token":"s3cret","scopes":["scim"]}]'},
            "SORTIE_ORCHESTRATOR_TOKENS (0.token): Value error, the token is shorter than 32",
        ),
        (
            {
                "SORTIE_ORCHESTRATOR_TOKENS": '[{"name":"ent","token":"'
                + "s" * 40
                + '","scopes":["logout:wrte"]}]'
            },
            "SORTIE_ORCHESTRATOR_TOKENS (0.scopes): Value error, unknown scope(s) ['logout:wrte']",
        ),
        ({"SORTIE_DEV_TOKEN": "dev"}, "SORTIE_DEV_TOKEN is shorter than 32 characters"),
    ],
)
def test_weak_configuration_is_refused_at_start_up(env: dict[str, str], expected: str) -> None:
    """Item 15: the process stops at once with one clear line, and no secret in it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SORTIE_")}
    done = subprocess.run(
        [sys.executable, "-m", "sortie_orchestrator"],
        env={**clean, "SORTIE_REDIS_URL": "redis://127.0.0.1:1/0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert "s3cret" not in done.stderr and "sss" not in done.stderr


@pytest.mark.parametrize(
    ("overrides", "secure"),
    [
        ({}, True),  # 127.0.0.1 is a trusted proxy by default: its X-Forwarded-Proto counts
        ({"trusted_proxies": ["10.9.9.9"]}, False),
        ({"trusted_proxies": ["10.9.9.9"], "force_secure": True}, True),
    ],
)
def test_secure_cookies_and_hsts_follow_trusted_proxies(
    overrides: dict[str, object], secure: bool
) -> None:
    """Item 16."""
    with live_orchestrator(**overrides) as url:
        resp = httpx.post(
            f"{url}/ui/login",
            data={"token": READER, "next": "/ui/"},
            headers={"X-Forwarded-Proto": "https"},
        )
    assert resp.status_code == 303
    assert ("strict-transport-security" in resp.headers) is secure
    assert (
        "; Secure" in resp.headers["set-cookie"] or "; secure" in resp.headers["set-cookie"]
    ) is secure


@pytest.mark.parametrize(
    "body",
    [
        # Item 10: control characters in a service URL.
        {"subject": {"user_id": "alice"}, "sso_session": {"service_tickets": [
            {"service": "https://ent.school.example/\x01x", "ticket": "ST-1"}]}},
        {"subject": {"user_id": "alice"}, "sso_session": {"service_tickets": [
            {"service": "https://ent.school.example/\x7f", "ticket": "ST-1"}]}},
        # Item 18: bidi override, zero-width and other Cc/Cf characters.
        {"subject": {"user_id": "alice\u202egnp.exe"}},
        {"subject": {"user_id": "al\u200bice"}},
        {"subject": {"user_id": "alice", "windows_account": "al\u2066ice"}},
        {"subject": {"user_id": "alice"}, "reason": "user\u200flogout"},
        {"subject": {"user_id": "alice"}, "reason": "x\u0085y"},
    ],
)  # fmt: skip
def test_invisible_and_control_characters_are_refused_at_intake(
    base: str, body: dict[str, object]
) -> None:
    resp = httpx.post(f"{base}/v1/logouts", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    admin = httpx.post(
        f"{base}/v1/workstations/sessions:end",
        json={"host": "pc-1", "user": "bob\u202e", "reason": "x"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert admin.status_code == 422


def test_a_trickled_body_is_cut_off() -> None:
    """Item 14: one byte a second never completes a request; the server answers 408 at
    its read deadline and closes the connection."""
    with live_orchestrator(body_read_timeout_s=1.0) as url:
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/logouts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
            )
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 8:
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                sock.settimeout(1.0)
                try:
                    answer += sock.recv(4096)
                except TimeoutError:
                    continue
            elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"application/problem+json" in answer
    assert elapsed < 5


def test_docs_assets_come_from_this_origin_and_docs_can_be_off(base: str) -> None:
    """Item 12."""
    page = httpx.get(f"{base}/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy and "http" not in policy
    for asset, ctype in (
        ("/docs/assets/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/assets/swagger-ui.css", "text/css"),
    ):
        assert asset in page.text
        resp = httpx.get(f"{base}{asset}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith(ctype)
        assert len(resp.content) > 1000
    assert httpx.get(f"{base}/docs/assets/../settings.py").status_code == 404
    assert httpx.get(f"{base}/redoc").status_code == 404
    assert httpx.get(f"{base}/openapi.json").status_code == 200
    with live_orchestrator(docs_enabled=False) as url:
        assert httpx.get(f"{url}/docs").status_code == 404
        assert httpx.get(f"{url}/openapi.json").status_code == 404
