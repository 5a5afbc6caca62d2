"""The console in a real headless Chromium over the whole stack of `sortie up` (tests/
stacks.py: Redis, the orchestrator, the Microsoft 365 and ENT workers, the workstation
agents and every simulator as processes), signed in through the CAS simulator (French) and
the OpenID provider simulator (English) with the demo role mapping `sortie up` configures
(sortie_cli/console_sso.py). The helpdesk of lycée A sees only its site's requests,
previews alice (her real Microsoft 365 identity, SSO session, applications and station,
as the workers find them; nothing changes in the simulators), schedules her offboarding
then cancels it after a confirmation, previews then offboards another user now, retries
the step of an ENT application that was down (and is back), and prints a request. Then
alice's demo logout (`sortie logout alice`) is followed on her logout page, in French with
server-sent events and in English without JavaScript, until the closing message.

Each page is checked at 1280 and 390 px (nothing wider than the screen) and with axe-core
(no serious or critical violation). Screenshots go to $SORTIE_SCREENSHOTS (default
/tmp/sortie-screenshots) as console-<lang>-<n>-<what>-<width>.png and
logout-page-<lang>-<during|after>-<width>.png:

    SORTIE_SCREENSHOTS=/tmp/shots .venv/bin/pytest tests/orchestrator/statuspage/test_console_browser.py
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from sortie_cli.stack import Stack
from sortie_simulators.demo import ALICE, BOB, DAVE, DEMO_CAS_APPS, demo_service_url
from tests.orchestrator.statuspage.cdp import Page, browser
from tests.orchestrator.statuspage.test_pages_browser import SHOTS, steps_in_order
from tests.support.stacks import StackVariant, use_stack, wait_status

SITE_A, SITE_B = "0750001A", "0750002B"
ENV = {
    # Only a person's retry sends a failed step again here: the automatic follow-up waits.
    "SORTIE_ORCHESTRATOR_FOLLOWUP_BASE_S": "600",
    "SORTIE_ORCHESTRATOR_FOLLOWUP_MAX_S": "600",
    "SORTIE_ORCHESTRATOR_PHASE1_TIMEOUT_S": "20",
    "SORTIE_ENT_STEP_MAX_ATTEMPTS": "2",
    "SORTIE_ENT_STEP_BACKOFF_MAX_S": "0.1",
}
pytestmark = [pytest.mark.e2e, use_stack(StackVariant("console", env=ENV))]


def api(stack: Stack) -> httpx.Client:
    auth = {"Authorization": f"Bearer {stack.token}"}
    return httpx.Client(base_url=stack.urls["api"], headers=auth, timeout=10)


def schedule(stack: Stack, user: str, site: str) -> str:
    at = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=4)).isoformat()
    with api(stack) as client:
        body = {"subject": {"user_id": user, "site": site}, "effective_at": at}
        resp = client.post("/v1/offboardings", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["request_id"])


def simulators_state(stack: Stack) -> dict[str, Any]:
    """What an offboarding of alice would change in the simulators."""
    u = stack.urls
    get = lambda url: httpx.get(url, timeout=10).json()  # noqa: E731
    return {
        "graph_writes": get(f"{u['sim_graph']}/_sim/stats")["writes"],
        "graph_user": get(f"{u['sim_graph']}/_sim/users/{ALICE.upn}"),
        "cas_sso": get(f"{u['sim_cas']}/_sim/users/{ALICE.cas_username}/sso"),
        "apps_received": get(f"{u['sim_entapps']}/_sim/received"),
        "stations": get(f"{u['sim_workstations']}/_sim/sessions"),
    }


async def shots(page: Page, name: str, *, checks: bool = True, axe: bool = True) -> None:
    """`name`-1280.png and `name`-390.png: at 390 px nothing is wider than the screen;
    axe-core finds no serious or critical violation. `checks=False`: the screenshots only
    (a page that reloads itself, without JavaScript, cannot be inspected meanwhile);
    `axe=False`: without JavaScript axe-core cannot run."""
    await page.width(1280)
    await page.screenshot(SHOTS / f"{name}-1280.png")
    await page.width(390, 844)
    if checks:
        wide = await page.eval("document.documentElement.scrollWidth")
        assert wide <= 390, f"{name} is {wide} px wide at 390 px"
    await page.screenshot(SHOTS / f"{name}-390.png")
    await page.width(1280)
    if checks and axe:
        serious = await page.axe()
        assert serious == [], (name, serious)


async def loaded(page: Page, js: str) -> None:
    """Runs `js` (a click, a submit) and waits for the next page's load."""
    page.events.clear()
    await page.eval(js)
    await page.wait(lambda: any(e.get("method") == "Page.loadEventFired" for e in page.events))


async def submit(page: Page, selector: str) -> None:
    await loaded(page, f"document.querySelector({selector!r}).submit()")


async def fill(page: Page, values: dict[str, str]) -> None:
    for name, value in values.items():
        await page.eval(f"document.querySelector('[name={name}]').value = {value!r}")


async def text_of(page: Page, element_id: str) -> str:
    return str(await page.eval(f"document.getElementById({element_id!r}).textContent"))


@dataclass(frozen=True)
class Run:
    """One helpdesk person's run: language, sign-in and the texts they see."""

    lang: str
    accept: str
    sign_in: str  # the link's path
    provider_heading: str
    person: str  # who the console names
    username: str
    now_user: str  # previewed then offboarded now
    texts: dict[str, str]


FR = Run(
    lang="fr",
    accept="fr-FR,fr",
    sign_in="/ui/login/cas/start",
    provider_heading="Connexion CAS",
    person="cas:claire",
    username="claire",
    now_user=DAVE.username,
    texts={
        "choice": "Se connecter avec ENT (CAS)",
        "nothing": "Rien n'a été modifié",
        "cancel": "Annuler cette désactivation",
        "cancel_question": "La désactivation programmée n'aura pas lieu",
        "cancelled": "Annulée",
        "retry": "Relancer les étapes en échec",
        "retry_question": "Relancer maintenant les étapes qui ont échoué ?",
        "completed": "Terminée",
        "scheduled": "Planifiée",
    },
)
EN = Run(
    lang="en",
    accept="en-GB,en",
    sign_in="/ui/login/oidc/start",
    provider_heading="Identity provider",
    person="oidc:dana",
    username="dana",
    now_user=BOB.username,
    texts={
        "choice": "Sign in with OpenID Connect",
        "nothing": "Nothing has been changed",
        "cancel": "Cancel this offboarding",
        "cancel_question": "The scheduled offboarding will not run",
        "cancelled": "Cancelled",
        "retry": "Retry the failed steps",
        "retry_question": "Send the steps that failed again now?",
        "completed": "Completed",
        "scheduled": "Scheduled",
    },
)


def failed_ent_logout(stack: Stack, user: str) -> str:
    """An ENT logout of `user` (an SSO session in both CAS applications) while the `mer`
    application answers 503: `partial`, its step failed; then `mer` is back up."""
    cas, apps = stack.urls["sim_cas"], stack.urls["sim_entapps"]
    services = [demo_service_url(apps, app) for app in DEMO_CAS_APPS]
    httpx.post(f"{cas}/_sim/sessions", json={"username": user, "services": services})
    httpx.post(f"{apps}/_sim/config", json={"fail_apps": ["mer"]}).raise_for_status()
    try:
        with api(stack) as client:
            subject = {"user_id": user, "cas_username": user, "site": SITE_A}
            resp = client.post("/v1/logouts", json={"subject": subject, "targets": ["ent"]})
            assert resp.status_code == 202, resp.text
            rid = str(resp.json()["request_id"])
            view = wait_status(client, rid, {"partial", "failed", "completed"})
    finally:
        httpx.post(f"{apps}/_sim/config", json={"fail_apps": []}).raise_for_status()
    steps = {s["action"]: s for s in view["services"]["ent"]["steps"]}
    assert view["status"] == "partial" and steps["app_logout:mer"]["outcome"] == "failed", view
    return rid


async def sign_in(page: Page, stack: Stack, run: Run) -> None:
    await page.goto(f"{stack.urls['api']}/ui/")
    await page.wait_text(run.texts["choice"])
    await shots(page, f"console-{run.lang}-1-sign-in-choice")
    await loaded(page, f"document.querySelector('a[href^=\"{run.sign_in}\"]').click()")
    await page.wait_text(run.provider_heading)
    await fill(page, {"username": run.username, "password": "any password"})
    await submit(page, "form")
    await page.wait_text(run.person)


async def preview_schedule_and_cancel(page: Page, stack: Stack, run: Run) -> str:
    url = stack.urls["api"]
    before = simulators_state(stack)
    await page.goto(f"{url}/ui/offboard")
    later = datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=3)
    later = later.replace(second=0, microsecond=0)
    at = later.strftime("%Y-%m-%dT%H:%M")
    await fill(page, {"user_id": ALICE.username, "upn": ALICE.upn, "at": at})
    await submit(page, "form.action")
    await page.wait_text(run.texts["nothing"])
    # The workers' answers: what Graph, the CAS and the agents really hold of alice.
    assert ALICE.upn in await text_of(page, "pv-m365")
    assert (await text_of(page, "pv-sso")).strip() == "1"
    assert "Esper" in await text_of(page, "pv-apps")
    assert ALICE.host in await text_of(page, "pv-hosts")
    await shots(page, f"console-{run.lang}-3-preview")
    assert simulators_state(stack) == before
    await submit(page, "form.confirm")
    await page.wait_text(run.texts["cancel"])
    await page.wait_text(run.texts["scheduled"])
    await shots(page, f"console-{run.lang}-4-offboarding-scheduled")
    rid = str(await page.eval("location.pathname.split('/').pop()"))
    with api(stack) as client:
        view = client.get(f"/v1/requests/{rid}").json()
    assert (view["status"], view["requested_by"]) == ("scheduled", run.person)
    assert datetime.fromisoformat(view["effective_at"]) == later
    await submit(page, f'form[action="/ui/requests/{rid}/cancel"]')
    await page.wait_text(run.texts["cancel_question"])
    await shots(page, f"console-{run.lang}-5-cancel-confirmation")
    await submit(page, "form.confirm")
    await page.wait_text(run.texts["cancelled"])
    assert simulators_state(stack) == before
    return rid


async def preview_then_offboard_now(page: Page, stack: Stack, run: Run) -> str:
    await page.goto(f"{stack.urls['api']}/ui/offboard")
    upn = f"{run.now_user}@example.org"
    await fill(page, {"user_id": run.now_user, "upn": upn})
    await submit(page, "form.action")
    await page.wait_text(run.texts["nothing"])
    assert upn in await text_of(page, "pv-m365")
    await submit(page, "form.confirm")
    await page.wait_text(run.now_user)
    rid = str(await page.eval("location.pathname.split('/').pop()"))
    with api(stack) as client:
        view = wait_status(client, rid, {"completed", "partial", "failed"}, timeout=60)
        user = httpx.get(f"{stack.urls['sim_graph']}/_sim/users/{upn}", timeout=10).json()
    assert (view["kind"], view["requested_by"]) == ("offboard", run.person)
    assert view["subject"]["site"] == SITE_A
    assert user["accountEnabled"] is False  # it really ran
    return rid


async def retry_failed_step(page: Page, stack: Stack, run: Run) -> str:
    user = f"erin-{run.lang}"
    rid = failed_ent_logout(stack, user)
    await page.goto(f"{stack.urls['api']}/ui/requests/{rid}")
    await page.wait_text(run.texts["retry"])
    await shots(page, f"console-{run.lang}-6-retry-a-failed-step")
    await submit(page, f'form[action="/ui/requests/{rid}/retry"]')
    await page.wait_text(run.texts["retry_question"])
    await shots(page, f"console-{run.lang}-7-retry-confirmation")
    await submit(page, "form.confirm")
    with api(stack) as client:
        healed = wait_status(client, rid, {"completed"})
    await page.goto(f"{stack.urls['api']}/ui/requests/{rid}")
    await page.wait_text(run.texts["completed"])
    await shots(page, f"console-{run.lang}-8-retried-and-completed")
    retried = [t for t in healed["timeline"] if t["event"] == "retry_requested"]
    assert [t["detail"] for t in retried] == [run.person]
    steps = {s["action"]: s for s in healed["services"]["ent"]["steps"]}
    assert steps["app_logout:mer"]["outcome"] == "succeeded"
    received = httpx.get(f"{stack.urls['sim_entapps']}/_sim/received", timeout=10).json()
    assert [r["accepted"] for r in received if r["app"] == "mer" and r["user"] == user][-1]
    return rid


@pytest.mark.parametrize("run", [FR, EN], ids=["fr-cas", "en-oidc"])
async def test_helpdesk_console_on_the_whole_stack(stack: Stack, run: Run, tmp_path: Path) -> None:
    url = stack.urls["api"]
    mine = schedule(stack, f"gina-{run.lang}", SITE_A)
    theirs = schedule(stack, f"hugo-{run.lang}", SITE_B)
    async with browser(tmp_path / run.lang, lang=run.accept) as page:
        await sign_in(page, stack, run)
        await page.goto(f"{url}/ui/?site={SITE_A}")
        listing = await page.wait_text(mine[:8])
        assert theirs[:8] not in listing
        await shots(page, f"console-{run.lang}-2-requests-of-the-site")
        await preview_schedule_and_cancel(page, stack, run)
        await preview_then_offboard_now(page, stack, run)
        retried = await retry_failed_step(page, stack, run)
        await page.goto(f"{url}/ui/requests/{retried}/print")
        await page.wait_text(f"erin-{run.lang}")
        await shots(page, f"console-{run.lang}-9-printable-request")
        # The other school's request is not there for this person, nor its actions.
        await page.goto(f"{url}/ui/requests/{theirs}")
        refused = await page.text()
        assert '"status":404' in refused and "hugo" not in refused
    with api(stack) as client:
        assert client.get(f"/v1/requests/{theirs}").json()["status"] == "scheduled"


@pytest.mark.parametrize(
    ("lang", "accept", "start", "username", "person", "heading"),
    [
        ("fr", "fr-FR,fr", "/ui/login/cas/start", "sacha", "cas:sacha", "Sessions de la console"),
        ("en", "en-GB,en", "/ui/login/oidc/start", "sam", "oidc:sam", "Console sessions"),
    ],
    ids=["fr-cas", "en-oidc"],
)
async def test_an_administrator_sees_every_site_the_sessions_and_the_stations(
    stack: Stack,
    tmp_path: Path,
    lang: str,
    accept: str,
    start: str,
    username: str,
    person: str,
    heading: str,
) -> None:
    """Runs after the helpdesk's runs: their sign-ins and actions are on the record."""
    url = stack.urls["api"]
    theirs = schedule(stack, f"ines-{lang}", SITE_B)
    async with browser(tmp_path / lang, lang=accept) as page:
        await page.goto(f"{url}/ui/")
        await loaded(page, f"document.querySelector('a[href^=\"{start}\"]').click()")
        await fill(page, {"username": username, "password": "any password"})
        await submit(page, "form")
        listing = await page.wait_text(person)
        assert theirs[:8] in listing  # no site limit for an administrator
        await page.goto(f"{url}/ui/sessions")
        record = await page.wait_text(heading)
        await shots(page, f"console-{lang}-10-sessions-and-who-did-what")
        for who, what in (("cas:claire", "sign_in"), ("oidc:dana", "retry"), (person, "sign_in")):
            assert f"{who} (" in record and f"<code>{what}</code>" in record
        await submit(page, "form[action$='/revoke']")
        await page.wait_text('name="confirm" value="yes"')
        await shots(page, f"console-{lang}-11-revoke-confirmation")
        await page.goto(f"{url}/ui/stations")
        stations = await page.wait_text(ALICE.host)
        await shots(page, f"console-{lang}-12-stations")
    assert BOB.host in stations


def demo_logout(stack: Stack) -> dict[str, Any]:
    """`sortie logout alice`, as the demo of `sortie up` runs it (its SSO session read
    from the CAS simulator, as the ENT passes it along)."""
    sso = httpx.get(f"{stack.urls['sim_cas']}/_sim/users/{ALICE.cas_username}/sso").json()
    subject = {"user_id": ALICE.username, "cas_username": ALICE.cas_username}
    subject |= {"windows_account": ALICE.windows_account, "upn": ALICE.upn}
    body = {
        "subject": subject,
        "reason": "user_logout",
        "sso_session": {"tgt": sso["tgt"], "service_tickets": sso["service_tickets"]},
    }
    with api(stack) as client:
        resp = client.post("/v1/logouts", json=body)
    assert resp.status_code == 202, resp.text
    accepted: dict[str, Any] = resp.json()
    return accepted


# The demo's applications in the registry's order, Microsoft 365, alice's station, then
# the SSO session last.
STEPS_FR = [
    "Déconnexion de l'application Esper",
    "Déconnexion de l'application Escada",
    "Déconnexion de l'application MER",
    "Déconnexion de l'application ISM",
    "Déconnexion de Microsoft 365",
    "Fermeture de la session sur pc-101",
    "Session ENT (CAS) fermée en dernier",
]


async def test_the_demo_logout_on_its_page_in_french_then_english(
    stack: Stack, tmp_path: Path
) -> None:
    """Runs after the console's tests (alice's preview needs her sessions)."""
    apps = stack.urls["sim_entapps"]
    # The ENT applications answer slowly, so that the page is seen while it works.
    httpx.post(f"{apps}/_sim/config", json={"latency_ms": 1500}).raise_for_status()
    try:
        async with (
            browser(tmp_path / "fr", lang="fr-FR,fr") as fr,
            browser(tmp_path / "en", lang="en-GB,en", javascript=False) as en,
        ):
            accepted = demo_logout(stack)
            progress = accepted["progress_url"]
            await fr.goto(progress)
            await en.goto(progress)
            during_fr = await fr.wait_text("En cours…")
            during_en = await en.wait_text("In progress…")
            started = time.monotonic()
            await shots(fr, "logout-page-fr-during")
            await shots(en, "logout-page-en-during", checks=False)
            done_fr = await fr.wait_text("Vous êtes déconnecté de tous les services.", 60)
            done_en = await en.wait_text("You are signed out of every service.", 60)
            await shots(fr, "logout-page-fr-after")
            await shots(en, "logout-page-en-after", axe=False)
            fr_loads = [e for e in fr.events if e.get("method") == "Page.loadEventFired"]
        async with browser(tmp_path / "en-js", lang="en-GB,en") as en_js:
            await en_js.goto(progress)
            await en_js.wait_text("You are signed out of every service.")
            assert await en_js.axe() == []
    finally:
        httpx.post(f"{apps}/_sim/config", json={"latency_ms": 0}).raise_for_status()
    assert time.monotonic() - started < 60
    assert "Déconnexion terminée" not in during_fr and "signed out of every" not in during_en
    # Every step, the SSO session last, each done; by server-sent events (one load only)
    # in French, by the page's own refresh without JavaScript in English.
    assert steps_in_order(done_fr) == STEPS_FR
    assert done_fr.count('<li class="l-done">') == len(STEPS_FR)
    assert len(fr_loads) == 1  # page.goto's own
    assert len(steps_in_order(done_en)) == len(STEPS_FR)
    assert steps_in_order(done_en)[-1] == "ENT session (CAS) closed last"
    assert 'http-equiv="refresh"' not in done_en
    with api(stack) as client:
        view = wait_status(client, accepted["request_id"], {"completed"}, timeout=30)
    assert view["sso"]["state"] == "reported"
    cas_sso = httpx.get(f"{stack.urls['sim_cas']}/_sim/users/{ALICE.cas_username}/sso")
    assert cas_sso.status_code == 404
