"""Sortie's CAS single logout against real CAS software, as separate processes:
django-cas-server issues a real service ticket through its login form, an application
protected by django-cas-ng validates it and opens a session, and Sortie's SLO step (the
ENT worker's handler and HTTP adapter) ends that session. Checked through the
application's own view of the session."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from sortie_core.events import Outcome
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.http import CasRestSessions, HttpAppLogout
from sortie_ent.handlers import handle_logout
from sortie_ent.registry import parse_registry
from sortie_testkit.redis_server import free_port
from sortie_testkit.waiting import TimedOut, wait_until
from tests.support.workers import ALICE, logout

SERVE = Path(__file__).parent / "casapps" / "serve.py"
POLICY = RetryPolicy(max_attempts=2, base_s=0.01, max_s=0.02)
_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class CasSites:
    cas_url: str
    app_url: str
    user: str
    password: str


def _start(site: str, port: int, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    data = workdir / site
    data.mkdir()
    log = (workdir / f"{site}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, str(SERVE), site, str(port)],
        env={**os.environ, **env, "CASAPP_DIR": str(data)},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_until(answers, max(0.0, deadline - time.monotonic()), 0.1)
    except TimedOut:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{url} not up in time:\n{tail}") from None


@pytest.fixture(scope="module")
def cas_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CasSites]:
    workdir = tmp_path_factory.mktemp("casapps")
    cas_port, app_port = free_port(), free_port()
    cas_url = f"http://127.0.0.1:{cas_port}/cas/"
    common = {"CASAPP_SECRET_KEY": secrets.token_urlsafe(32), "PYTHONUNBUFFERED": "1"}
    password = secrets.token_urlsafe(12)
    procs = {
        "server": _start(
            "server",
            cas_port,
            {**common, "CASAPP_USER": ALICE.sso_username, "CASAPP_PASSWORD": password},
            workdir,
        ),
        "client": _start("client", app_port, {**common, "CASAPP_CAS_URL": cas_url}, workdir),
    }
    try:
        deadline = time.monotonic() + 60
        _wait(cas_url + "login", procs["server"], workdir / "server.log", deadline)
        _wait(
            f"http://127.0.0.1:{app_port}/whoami/",
            procs["client"],
            workdir / "client.log",
            deadline,
        )
        yield CasSites(cas_url, f"http://127.0.0.1:{app_port}", ALICE.sso_username, password)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _form_fields(html: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for tag in _INPUT.findall(html):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("name") and attrs.get("type", "text") == "hidden":
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


async def browser_login(sites: CasSites, browser: httpx.AsyncClient) -> tuple[str, str]:
    """The real login flow; returns (service URL, service ticket)."""
    start = await browser.get(f"{sites.app_url}/accounts/login/?next=/whoami/")
    assert start.status_code == 302
    login_url = start.headers["location"]
    assert login_url.startswith(sites.cas_url + "login")
    service = parse_qs(urlsplit(login_url).query)["service"][0]
    page = await browser.get(login_url)
    assert page.status_code == 200
    fields = _form_fields(page.text)
    assert "lt" in fields  # the CAS login ticket of the form
    posted = await browser.post(
        sites.cas_url + "login",
        data={**fields, "username": sites.user, "password": sites.password},
        headers={"Referer": login_url},
    )
    assert posted.status_code == 302, posted.text[:500]
    back = posted.headers["location"]
    ticket = parse_qs(urlsplit(back).query)["ticket"][0]
    assert ticket.startswith("ST-")
    # The application validates the ticket with the CAS server and opens its session.
    validated = await browser.get(back)
    assert validated.status_code == 302, validated.text[:500]
    assert urljoin(back, validated.headers["location"]).endswith("/whoami/")
    return service, ticket


async def whoami(sites: CasSites, browser: httpx.AsyncClient) -> str | None:
    response = await browser.get(f"{sites.app_url}/whoami/")
    assert response.status_code in (200, 401)
    user: str | None = response.json()["user"]
    return user


async def sortie_single_logout(sites: CasSites, tickets: list[tuple[str, str]]) -> Outcome:
    escaped = re.escape(sites.app_url)
    registry = parse_registry(
        "applications:\n"
        "  - name: school-app\n"
        "    protocol: cas_slo\n"
        f"    service_patterns: ['{escaped}/accounts/login/.*']\n"
    )
    apps = HttpAppLogout()
    # django-cas-server has no ssoSessions actuator: discovery says so and the caller's
    # tickets are logged out (discovery itself is shown against the CAS simulator).
    cas = CasRestSessions(sites.cas_url, actuator=False)
    try:
        result = await handle_logout(
            logout(tickets=tickets), registry=registry, apps=apps, sso=cas, policy=POLICY
        )
    finally:
        await apps.aclose()
        await cas.aclose()
    assert result is not None
    assert result.discovery is not None and result.discovery.error is not None
    assert result.discovery.tickets_from_caller == len(tickets)
    [step] = result.steps
    assert len(step.items) == len(tickets)
    assert step.action == "app_logout:school-app"
    assert step.attempts == 1
    return step.outcome


async def test_sortie_slo_ends_the_django_cas_ng_session(cas_sites: CasSites) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as alice_here,
        httpx.AsyncClient(timeout=10) as alice_elsewhere,
    ):
        service, ticket = await browser_login(cas_sites, alice_here)
        other_service, other_ticket = await browser_login(cas_sites, alice_elsewhere)
        assert other_ticket != ticket
        assert await whoami(cas_sites, alice_here) == cas_sites.user
        assert await whoami(cas_sites, alice_elsewhere) == cas_sites.user

        # A ticket the CAS never issued ends nothing.
        assert await sortie_single_logout(cas_sites, [(service, "ST-1-unknown")]) is (
            Outcome.SUCCEEDED
        )
        assert await whoami(cas_sites, alice_here) == cas_sites.user

        # The real ticket ends exactly the session it opened.
        assert await sortie_single_logout(cas_sites, [(service, ticket)]) is Outcome.SUCCEEDED
        assert await whoami(cas_sites, alice_here) is None
        assert await whoami(cas_sites, alice_elsewhere) == cas_sites.user

        assert (
            await sortie_single_logout(cas_sites, [(other_service, other_ticket)])
            is Outcome.SUCCEEDED
        )
        assert await whoami(cas_sites, alice_elsewhere) is None
