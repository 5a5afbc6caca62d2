"""One contract for `AppLogout`, run against the in-memory `FakeAppLogout` and against
`HttpAppLogout` talking to the ENT applications simulator: what is refused before any
call, what is delivered, and how a down application answers."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import pytest
from pydantic import SecretStr

from sortie_core.errors import PermanentError, RefusedError, TransientError
from sortie_core.events import Subject
from sortie_ent.adapters import AppLogout
from sortie_ent.adapters.fake import FakeAppLogout
from sortie_ent.adapters.http import HttpAppLogout
from sortie_ent.registry import Application, Registry, parse_registry
from sortie_ent.slo import logout_request
from sortie_simulators import entapps
from tests.support.stub_http import ServedApp

BASE = "http://apps.ent.test"
SUBJECT = Subject(user_id="u-42", cas_username="alice")
TOKENS = {"mer": SecretStr("mer-token")}


def registry(base: str) -> Registry:
    return parse_registry(
        json.dumps(
            {
                "applications": [
                    {"name": "esper", "protocol": "cas_slo", "service_urls": [f"{base}/esper/"]},
                    {
                        "name": "mer",
                        "protocol": "http",
                        "logout_url": f"{base}/mer/api/logout",
                        "body_template": '{"user": "{cas_username}"}',
                        "token_env": "MER_TOKEN",
                    },
                    {
                        "name": "ism",
                        "protocol": "oidc_bcl",
                        "backchannel_logout_uri": f"{base}/ism/oidc/backchannel-logout",
                    },
                ]
            }
        )
    )


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


@dataclass
class Pair:
    """The adapter under test, its peer, and the applications as registered for it."""

    apps: AppLogout
    peer: Peer
    base: str
    esper: Application
    mer: Application
    ism: Application

    def app(self, name: str) -> Application:
        return {"esper": self.esper, "mer": self.mer, "ism": self.ism}[name]


@pytest.fixture(params=["fake", "http"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "fake":
        fake = FakeAppLogout(tokens=dict(TOKENS))
        yield Pair(fake, FakePeer(fake), BASE, *registry(BASE).applications)
        return
    names = [("esper", "cas_slo"), ("mer", "http"), ("ism", "oidc_bcl")]
    app = entapps.create_app(apps=names)
    sim: entapps.EntAppsSimulator = app.state.sim
    for name in ("esper", "mer", "ism"):
        sim.add_session(sim.apps[name], "alice", ticket="ST-1-a" if name == "esper" else None)
    served = ServedApp(app).start()  # a real socket: the adapter speaks HTTP (aiohttp)
    try:
        adapter = HttpAppLogout(TOKENS)
        base = served.url.rstrip("/")
        yield Pair(adapter, SimulatedPeer(sim), base, *registry(base).applications)
        await adapter.aclose()
    finally:
        served.stop()


async def test_each_protocol_is_delivered(pair: Pair) -> None:
    apps, peer = pair.apps, pair.peer
    slo = logout_request("alice", "ST-1-a")
    await apps.single_logout(pair.esper, f"{pair.base}/esper/", slo, timeout_s=2)
    await apps.identity_logout(pair.mer, SUBJECT, timeout_s=2)
    await apps.backchannel_logout(pair.ism, logout_token("alice"), timeout_s=2)
    assert [peer.delivered(a) for a in ("esper", "mer", "ism")] == [1, 1, 1]


async def test_a_service_url_outside_the_application_is_refused_unsent(
    pair: Pair,
) -> None:
    apps, peer = pair.apps, pair.peer
    with pytest.raises(RefusedError):
        await apps.single_logout(
            pair.esper, "http://evil.test/esper/", logout_request("alice", "ST-1-a"), timeout_s=2
        )
    assert peer.delivered("esper") == 0


async def test_a_token_not_set_is_permanent_and_unsent(pair: Pair) -> None:
    apps, peer = pair.apps, pair.peer
    lost = pair.mer.model_copy(update={"name": "mer2"})  # same variable, no token read for it
    with pytest.raises(PermanentError) as info:
        await apps.identity_logout(lost, SUBJECT, timeout_s=2)
    assert info.value.code == "app_token_missing"
    assert "mer-token" not in str(info.value)
    assert peer.delivered("mer") == peer.delivered("mer2") == 0


async def test_an_application_without_its_endpoint_is_misconfigured(
    pair: Pair,
) -> None:
    apps, peer = pair.apps, pair.peer
    for call in (
        apps.identity_logout(pair.ism, SUBJECT, timeout_s=2),
        apps.backchannel_logout(pair.mer, logout_token("alice"), timeout_s=2),
    ):
        with pytest.raises(PermanentError) as info:
            await call
        assert info.value.code == "app_misconfigured"
    assert peer.delivered("mer") == peer.delivered("ism") == 0


@pytest.mark.parametrize("name", ["esper", "mer", "ism"])
async def test_a_down_application_is_transient(pair: Pair, name: str) -> None:
    apps, peer, app = pair.apps, pair.peer, pair.app(name)
    peer.down(app.name)
    with pytest.raises(TransientError) as info:
        if name == "esper":
            await apps.single_logout(
                app, f"{pair.base}/esper/", logout_request("a", "ST"), timeout_s=2
            )
        elif name == "mer":
            await apps.identity_logout(app, SUBJECT, timeout_s=2)
        else:
            await apps.backchannel_logout(app, logout_token("alice"), timeout_s=2)
    assert info.value.code == "app_unavailable"
    assert peer.delivered(app.name) == 0
