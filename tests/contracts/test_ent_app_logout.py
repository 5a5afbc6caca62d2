"""One contract for `AppLogout`, run against the in-memory `FakeAppLogout` and against
`HttpAppLogout` talking to the ENT applications simulator: what is refused before any
call, what is delivered, and how a down application answers."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import httpx
import pytest
from pydantic import SecretStr

from sortie_core.errors import PermanentError, RefusedError, TransientError
from sortie_core.events import Subject
from sortie_ent.adapters import AppLogout
from sortie_ent.adapters.fake import FakeAppLogout
from sortie_ent.adapters.http import HttpAppLogout
from sortie_ent.registry import Application, parse_registry
from sortie_ent.slo import logout_request
from sortie_simulators import entapps

BASE = "http://apps.ent.test"
SUBJECT = Subject(user_id="u-42", cas_username="alice")
TOKENS = {"mer": SecretStr("mer-token")}
REGISTRY = parse_registry(
    json.dumps(
        {
            "applications": [
                {"name": "esper", "protocol": "cas_slo", "service_urls": [f"{BASE}/esper/"]},
                {
                    "name": "mer",
                    "protocol": "http",
                    "logout_url": f"{BASE}/mer/api/logout",
                    "body_template": '{"user": "{cas_username}"}',
                    "token_env": "MER_TOKEN",
                },
                {
                    "name": "ism",
                    "protocol": "oidc_bcl",
                    "backchannel_logout_uri": f"{BASE}/ism/oidc/backchannel-logout",
                },
            ]
        }
    )
)
ESPER, MER, ISM = REGISTRY.applications


def logout_token(sub: str) -> str:
    """An unsigned logout token of the shape OpenID Connect Back-Channel Logout 1.0 §2.4
    gives it (the simulator checks signatures only when given a JWKS)."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    events: dict[str, object] = {"http://schemas.openid.net/event/backchannel-logout": {}}
    return f"{part({'alg': 'none'})}.{part({'sub': sub, 'events': events})}.sig"


class Peer(Protocol):
    """What a contract test needs of the applications: what reached them, and faults."""

    def delivered(self, app: str) -> int: ...

    def down(self, app: str) -> None: ...


@dataclass
class FakePeer:
    fake: FakeAppLogout

    def delivered(self, app: str) -> int:
        return self.fake.delivered.count(app)

    def down(self, app: str) -> None:
        self.fake.fail(app, TransientError(f"{app} answered HTTP 503", code="app_unavailable"))


@dataclass
class SimulatedPeer:
    sim: entapps.EntAppsSimulator

    def delivered(self, app: str) -> int:
        return sum(1 for r in self.sim.received if r["app"] == app and r["accepted"])

    def down(self, app: str) -> None:
        self.sim.fail_apps.add(app)


@pytest.fixture(params=["fake", "http"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[AppLogout, Peer]]:
    if request.param == "fake":
        fake = FakeAppLogout(tokens=dict(TOKENS))
        yield fake, FakePeer(fake)
        return
    app = entapps.create_app(apps=[(a.name, a.protocol.value) for a in REGISTRY.applications])
    sim: entapps.EntAppsSimulator = app.state.sim
    for name in ("esper", "mer", "ism"):
        sim.add_session(sim.apps[name], "alice", ticket="ST-1-a" if name == "esper" else None)
    adapter = HttpAppLogout(TOKENS, transport=httpx.ASGITransport(app=app))
    yield adapter, SimulatedPeer(sim)
    await adapter.aclose()


async def test_each_protocol_is_delivered(pair: tuple[AppLogout, Peer]) -> None:
    apps, peer = pair
    slo = logout_request("alice", "ST-1-a")
    await apps.single_logout(ESPER, f"{BASE}/esper/", slo, timeout_s=2)
    await apps.identity_logout(MER, SUBJECT, timeout_s=2)
    await apps.backchannel_logout(ISM, logout_token("alice"), timeout_s=2)
    assert [peer.delivered(a) for a in ("esper", "mer", "ism")] == [1, 1, 1]


async def test_a_service_url_outside_the_application_is_refused_unsent(
    pair: tuple[AppLogout, Peer],
) -> None:
    apps, peer = pair
    with pytest.raises(RefusedError):
        await apps.single_logout(
            ESPER, "http://evil.test/esper/", logout_request("alice", "ST-1-a"), timeout_s=2
        )
    assert peer.delivered("esper") == 0


async def test_a_token_not_set_is_permanent_and_unsent(pair: tuple[AppLogout, Peer]) -> None:
    apps, peer = pair
    lost = MER.model_copy(update={"name": "mer2"})  # same variable, no token read for it
    with pytest.raises(PermanentError) as info:
        await apps.identity_logout(lost, SUBJECT, timeout_s=2)
    assert info.value.code == "app_token_missing"
    assert "mer-token" not in str(info.value)
    assert peer.delivered("mer") == peer.delivered("mer2") == 0


async def test_an_application_without_its_endpoint_is_misconfigured(
    pair: tuple[AppLogout, Peer],
) -> None:
    apps, peer = pair
    for call in (
        apps.identity_logout(ISM, SUBJECT, timeout_s=2),
        apps.backchannel_logout(MER, logout_token("alice"), timeout_s=2),
    ):
        with pytest.raises(PermanentError) as info:
            await call
        assert info.value.code == "app_misconfigured"
    assert peer.delivered("mer") == peer.delivered("ism") == 0


@pytest.mark.parametrize("app", [ESPER, MER, ISM], ids=lambda a: a.name)
async def test_a_down_application_is_transient(
    pair: tuple[AppLogout, Peer], app: Application
) -> None:
    apps, peer = pair
    peer.down(app.name)
    with pytest.raises(TransientError) as info:
        if app is ESPER:
            await apps.single_logout(app, f"{BASE}/esper/", logout_request("a", "ST"), timeout_s=2)
        elif app is MER:
            await apps.identity_logout(app, SUBJECT, timeout_s=2)
        else:
            await apps.backchannel_logout(app, logout_token("alice"), timeout_s=2)
    assert info.value.code == "app_unavailable"
    assert peer.delivered(app.name) == 0
