"""All three workers in-process against a real redis-server and the project's own protocol
simulators (`python -m sortie_simulators …`), on the demo data: Alice's logout and Bob's
offboarding, each ended by the SSO logout."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import Kind, Outcome, SsoLogoutRequested, Subject, Target
from sortie_ent.bootstrap import make_build as ent_build
from sortie_ent.settings import EntSettings
from sortie_m365.bootstrap import make_build as m365_build
from sortie_m365.settings import M365Settings
from sortie_simulators import demo
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast
from sortie_workstation.bootstrap import make_build as agent_build
from sortie_workstation.settings import AgentSettings
from tests.support.workers import command, logout, offboard, running_worker, wait_for_events

LISTENING = re.compile(r"listening on (http://\S+)")
ALICE = Subject(user_id="alice", upn="alice@example.org", cas_username="alice")
BOB = Subject(user_id="bob", upn="bob@example.org", cas_username="bob")


def _start(kind: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sortie_simulators", kind, "--port", "0", "--seed-demo", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        found = LISTENING.search(line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise RuntimeError(f"the {kind} simulator did not start")


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, str]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        urls: dict[str, str] = {}
        for kind in ("graph", "entapps", "workstations"):
            proc, urls[kind] = _start(kind)
            procs.append(proc)
        proc, urls["cas"] = _start("cas", "--entapps-url", urls["entapps"])
        procs.append(proc)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
async def workers(
    sims: dict[str, str],
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[None]:
    entapps = sims["entapps"]
    escaped = re.escape(entapps)
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        "applications:\n"
        f"  - {{name: esper, protocol: cas_slo, service_patterns: ['{escaped}/esper/.*']}}\n"
        f"  - {{name: escada, protocol: cas_slo, service_patterns: ['{escaped}/escada/.*']}}\n"
        f"  - name: mer\n    protocol: http\n    logout_url: '{entapps}/mer/api/logout'\n"
        '    body_template: \'{"user": "{cas_username}"}\'\n    token_env: TEST_MER_TOKEN\n'
        f"  - {{name: ism, protocol: oidc_bcl, service_patterns: ['{escaped}/ism/.*']}}\n"
    )
    monkeypatch.setenv("TEST_MER_TOKEN", "mer-token")
    url = redis_server.url
    m365 = fast(M365Settings, url, graph_url=sims["graph"], graph_token="sim-token")
    ent = fast(EntSettings, url, cas_url=sims["cas"] + "/cas", registry_path=registry)
    agents = [
        fast(AgentSettings, url, host=host, sim_url=sims["workstations"], heartbeat_s=30)
        for host in ("pc-101", "pc-102")
    ]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running_worker("m365-worker", m365, m365_build(m365)))
        await stack.enter_async_context(running_worker("ent-worker", ent, ent_build(ent)))
        for settings in agents:
            await stack.enter_async_context(
                running_worker("workstation-agent", settings, agent_build(settings))
            )
        yield


async def _get(url: str) -> Any:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        return response.json() if response.status_code == 200 else response.status_code


def _by_service(events: list[Any]) -> dict[str, dict[str, Outcome]]:
    return {e.service: {s.action: s.outcome for s in e.steps} for e in events}


async def test_alice_logout_against_the_simulators(
    redis: Redis, sims: dict[str, str], workers: None
) -> None:
    assert await _get(f"{sims['cas']}/_sim/users/alice/sso") != 404  # a live SSO session
    event = logout(
        ALICE,
        targets=(Target.M365, Target.ENT, Target.WORKSTATIONS),
        tgt=demo.DEMO_TGT,
        tickets=[(t["service"], t["ticket"]) for t in demo.demo_service_tickets(sims["entapps"])],
    )
    await command(redis, streams.LOGOUT_REQUESTED, event)
    await command(redis, streams.workstation_stream("pc-101"), event)
    done = await wait_for_events(redis, streams.REVOCATION_COMPLETED, count=2)
    done += await wait_for_events(redis, streams.agent_results_stream("pc-101"))
    assert _by_service(done) == {
        "m365": {"revoke_sessions": Outcome.SUCCEEDED},
        "ent": {
            "app_logout:esper": Outcome.SUCCEEDED,
            "app_logout:escada": Outcome.SUCCEEDED,
            "app_logout:mer": Outcome.SUCCEEDED,
            "app_logout:ism": Outcome.SKIPPED,
        },
        "workstation:pc-101": {"logoff": Outcome.SUCCEEDED},
    }
    await command(
        redis,
        streams.SSO_LOGOUT_REQUESTED,
        SsoLogoutRequested(
            request_id=event.request_id, subject=ALICE, kind=Kind.LOGOUT, tgt=demo.DEMO_TGT
        ),
    )
    [sso] = await wait_for_events(redis, streams.SSO_LOGOUT_COMPLETED)
    assert [(s.action, s.outcome) for s in sso.steps] == [
        ("destroy_sso_session", Outcome.SUCCEEDED)
    ]
    # What the simulators now hold.
    user = await _get(f"{sims['graph']}/_sim/users/alice@example.org")
    assert user["revocation_count"] == 1
    for app in ("esper", "escada", "mer"):
        assert await _get(f"{sims['entapps']}/_sim/apps/{app}/sessions") == []
    assert await _get(f"{sims['workstations']}/_sim/sessions?user=alice") == []
    assert await _get(f"{sims['cas']}/_sim/users/alice/sso") == 404


async def test_bob_offboarding_against_the_simulators(
    redis: Redis, sims: dict[str, str], workers: None
) -> None:
    event = offboard(BOB)
    await command(redis, streams.OFFBOARD_REQUESTED, event)
    await command(redis, streams.workstation_stream("pc-102"), event)
    done = await wait_for_events(redis, streams.REVOCATION_COMPLETED, count=2)
    done += await wait_for_events(redis, streams.agent_results_stream("pc-102"))
    assert _by_service(done) == {
        "m365": {
            "block_sign_in": Outcome.SUCCEEDED,
            "reset_password": Outcome.SUCCEEDED,
            "revoke_sessions": Outcome.SUCCEEDED,
            "disable_mail_protocols": Outcome.SKIPPED,
        },
        "ent": {"app_logout:mer": Outcome.SUCCEEDED, "app_logout:ism": Outcome.SKIPPED},
        "workstation:pc-102": {"logoff": Outcome.SUCCEEDED},
    }
    await command(
        redis,
        streams.SSO_LOGOUT_REQUESTED,
        SsoLogoutRequested(
            request_id=event.request_id, subject=BOB, kind=Kind.OFFBOARD, all_sessions=True
        ),
    )
    [sso] = await wait_for_events(redis, streams.SSO_LOGOUT_COMPLETED)
    assert [(s.action, s.outcome) for s in sso.steps] == [
        ("destroy_all_sso_sessions", Outcome.SUCCEEDED)
    ]
    user = await _get(f"{sims['graph']}/_sim/users/bob@example.org")
    assert user["accountEnabled"] is False
    assert user["revocation_count"] == 1
    assert user["password_changed_at"] is not None
    assert user["force_change"] is True
    assert await _get(f"{sims['workstations']}/_sim/sessions?user=bob") == []
