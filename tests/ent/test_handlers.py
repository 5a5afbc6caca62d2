"""Unit tests of the ENT handlers, with the in-memory applications and CAS."""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET

import pytest

from sortie_core.errors import NotFoundError, PermanentError, TransientError
from sortie_core.events import (
    DeadLettered,
    FollowUpScope,
    Kind,
    Outcome,
    RevocationCompleted,
    ServiceTicket,
    SkipReason,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    Subject,
    Target,
    Verification,
    decode_event,
)
from sortie_core.steps import RetryPolicy
from sortie_ent.adapters.fake import FakeAppLogout, FakeSsoSessions, FakeTicketVault
from sortie_ent.handlers import (
    handle_deadlettered,
    handle_logout,
    handle_offboard,
    handle_sso_logout,
)
from sortie_ent.registry import Registry, parse_registry
from tests.support.workers import ALICE, logout, offboard

POLICY = RetryPolicy(
    max_attempts=3, base_s=0.001, max_s=0.002, verify_attempts=2, verify_delay_s=0.001
)
# A CAS that knows no session: only the caller's tickets are logged out.
CAS = FakeSsoSessions()
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"

REGISTRY_YAML = r"""
applications:
  - name: esper
    protocol: cas_slo
    service_patterns: ['https://esper\.ent\.test/.*']
  - name: escada
    protocol: cas_slo
    service_patterns: ['https://escada\.ent\.test/(login|cas)/.*']
  - name: mer
    protocol: http
    logout_url: https://mer.ent.test/api/logout
    service_patterns: ['https://mer\.ent\.test/.*']
  - name: ism
    protocol: oidc_bcl
    client_id: ism-client
    backchannel_logout_uri: https://ism.ent.test/oidc/backchannel-logout
    service_patterns: ['https://ism\.ent\.test/.*']
"""
ESPER = ("https://esper.ent.test/", "ST-1-esper")
ESCADA = ("https://escada.ent.test/login/", "ST-2-escada")
EVIL = ("https://evil.example.net/steal?ticket=1", "ST-3-evil")


@pytest.fixture
def registry() -> Registry:
    return parse_registry(REGISTRY_YAML)


@pytest.fixture
def apps() -> FakeAppLogout:
    return FakeAppLogout()


def outcomes(result: object) -> dict[str, Outcome]:
    return {s.action: s.outcome for s in result.steps}  # type: ignore[attr-defined]


async def test_logout_reaches_every_application(registry: Registry, apps: FakeAppLogout) -> None:
    event = logout(tickets=[ESPER, ESCADA])
    result = await handle_logout(event, registry=registry, apps=apps, sso=CAS, policy=POLICY)
    assert result is not None
    assert (result.service, result.request_id) == ("ent", event.request_id)
    assert outcomes(result) == {
        "app_logout:esper": Outcome.SUCCEEDED,
        "app_logout:escada": Outcome.SUCCEEDED,
        "app_logout:mer": Outcome.SUCCEEDED,
        "app_logout:ism": Outcome.SKIPPED,
    }
    assert {(c.app, c.service_url) for c in apps.slo_calls} == {
        ("esper", ESPER[0]),
        ("escada", ESCADA[0]),
    }
    assert apps.identity_calls == [("mer", "alice")]
    ism = next(s for s in result.steps if s.action == "app_logout:ism")
    assert ism.detail is not None and "no OIDC signing key" in ism.detail
    assert apps.bcl_calls == []


async def test_logout_not_targeted_publishes_nothing(
    registry: Registry, apps: FakeAppLogout
) -> None:
    event = logout(targets=(Target.M365,), tickets=[ESPER])
    assert await handle_logout(event, registry=registry, apps=apps, sso=CAS, policy=POLICY) is None
    assert apps.slo_calls == [] and apps.identity_calls == []


async def test_unregistered_url_is_refused_and_never_called(
    registry: Registry, apps: FakeAppLogout
) -> None:
    event = logout(tickets=[ESPER, EVIL, ("https://esper.ent.test.evil.example.net/", "ST-4")])
    result = await handle_logout(event, registry=registry, apps=apps, sso=CAS, policy=POLICY)
    assert result is not None
    refused = next(s for s in result.steps if s.action == "app_logout:unregistered")
    assert refused.outcome is Outcome.FAILED
    assert refused.error is not None
    assert refused.error.code == "refused"
    assert "evil.example.net" in refused.error.message
    assert "esper.ent.test.evil.example.net" in refused.error.message
    # Only the host is named: never the path, the query or the ticket.
    assert "steal" not in refused.error.message and "ST-3" not in refused.error.message
    assert [c.service_url for c in apps.slo_calls] == [ESPER[0]]
    assert outcomes(result)["app_logout:esper"] is Outcome.SUCCEEDED


async def test_slo_message_is_well_formed_and_escaped(
    registry: Registry, apps: FakeAppLogout
) -> None:
    subject = Subject(user_id="u1", cas_username='o"brien<&>')
    ticket = "ST-9-<x>&'\""
    await handle_logout(
        logout(subject, tickets=[(ESPER[0], ticket)]),
        registry=registry,
        apps=apps,
        sso=CAS,
        policy=POLICY,
    )
    [call] = apps.slo_calls
    root = ET.fromstring(call.message)
    assert root.tag == f"{SAMLP}LogoutRequest"
    assert root.attrib["Version"] == "2.0"
    assert root.attrib["ID"].startswith("LR-")
    assert root.attrib["IssueInstant"].endswith("Z")
    assert time.strptime(root.attrib["IssueInstant"], "%Y-%m-%dT%H:%M:%SZ")
    name_id = root.find(f"{SAML}NameID")
    session_index = root.find(f"{SAMLP}SessionIndex")
    assert name_id is not None and name_id.text == 'o"brien<&>'
    assert session_index is not None and session_index.text == ticket
    assert "<x>" not in call.message


async def test_two_tickets_of_one_app_are_one_step(registry: Registry, apps: FakeAppLogout) -> None:
    event = logout(tickets=[ESPER, ("https://esper.ent.test/other", "ST-5-esper")])
    result = await handle_logout(event, registry=registry, apps=apps, sso=CAS, policy=POLICY)
    assert result is not None
    esper = [s for s in result.steps if s.action == "app_logout:esper"]
    assert len(esper) == 1
    assert esper[0].detail is not None and "2 service tickets" in esper[0].detail
    sent = [ET.fromstring(c.message).find(f"{SAMLP}SessionIndex") for c in apps.slo_calls]
    assert [e.text for e in sent if e is not None] == ["ST-1-esper", "ST-5-esper"]


async def test_ticket_of_an_identity_app_is_not_sent_as_slo(
    registry: Registry, apps: FakeAppLogout
) -> None:
    event = logout(tickets=[("https://mer.ent.test/home", "ST-6-mer")])
    result = await handle_logout(event, registry=registry, apps=apps, sso=CAS, policy=POLICY)
    assert result is not None
    assert apps.slo_calls == []
    assert [a.action for a in result.steps].count("app_logout:mer") == 1


async def test_transient_then_success_counts_attempts(
    registry: Registry, apps: FakeAppLogout
) -> None:
    apps.fail("esper", TransientError("503", code="app_unavailable"))
    apps.fail("mer", TransientError("reset", code="app_unreachable"), TransientError("x"))
    result = await handle_logout(
        logout(tickets=[ESPER]), registry=registry, apps=apps, sso=CAS, policy=POLICY
    )
    assert result is not None
    by = {s.action: s for s in result.steps}
    assert (by["app_logout:esper"].outcome, by["app_logout:esper"].attempts) == (
        Outcome.SUCCEEDED,
        2,
    )
    assert (by["app_logout:mer"].outcome, by["app_logout:mer"].attempts) == (Outcome.SUCCEEDED, 3)


async def test_retry_resends_only_undelivered_tickets(
    registry: Registry, apps: FakeAppLogout
) -> None:
    second = "https://esper.ent.test/b"
    # The first message goes through, the second fails once: the retry sends only it.
    apps.fail("esper", None, TransientError("blip", code="app_unreachable"))
    event = logout(tickets=[ESPER, (second, "ST-7")])
    result = await handle_logout(event, registry=registry, apps=apps, sso=CAS, policy=POLICY)
    assert result is not None
    esper = next(s for s in result.steps if s.action == "app_logout:esper")
    assert (esper.outcome, esper.attempts) == (Outcome.SUCCEEDED, 2)
    assert [c.service_url for c in apps.slo_calls] == [ESPER[0], second, second]


async def test_permanent_failure_and_not_found(registry: Registry, apps: FakeAppLogout) -> None:
    apps.fail("esper", PermanentError("HTTP 400", code="app_rejected"))
    apps.fail("mer", NotFoundError("no session"))
    result = await handle_logout(
        logout(tickets=[ESPER, ESCADA]), registry=registry, apps=apps, sso=CAS, policy=POLICY
    )
    assert result is not None
    by = {s.action: s for s in result.steps}
    assert by["app_logout:esper"].outcome is Outcome.FAILED
    assert by["app_logout:esper"].attempts == 1
    assert by["app_logout:esper"].error is not None
    assert by["app_logout:esper"].error.code == "app_rejected"
    assert by["app_logout:mer"].outcome is Outcome.NOT_FOUND
    assert by["app_logout:escada"].outcome is Outcome.SUCCEEDED


async def test_slow_app_is_cut_at_its_timeout_and_others_are_not_delayed(
    apps: FakeAppLogout,
) -> None:
    registry = parse_registry(
        REGISTRY_YAML.replace(
            "logout_url: https://mer.ent.test/api/logout",
            "logout_url: https://mer.ent.test/api/logout\n    timeout_s: 0.3",
        )
    )
    apps.delays["mer"] = 30
    started = time.monotonic()
    result = await handle_logout(
        logout(tickets=[ESPER, ESCADA]),
        registry=registry,
        apps=apps,
        sso=CAS,
        policy=POLICY,
        concurrency=4,
    )
    elapsed = time.monotonic() - started
    assert result is not None
    assert elapsed < 2
    by = {s.action: s for s in result.steps}
    mer = by["app_logout:mer"]
    assert mer.outcome is Outcome.FAILED
    assert mer.error is not None and mer.error.code == "timeout" and mer.error.retryable
    assert 0.25 <= mer.duration_seconds < 1.5
    for fast_app in ("app_logout:esper", "app_logout:escada"):
        assert by[fast_app].outcome is Outcome.SUCCEEDED
        assert by[fast_app].finished_at < mer.finished_at
        assert by[fast_app].duration_seconds < 0.2


async def test_timeout_covers_retries_too(apps: FakeAppLogout) -> None:
    registry = parse_registry(REGISTRY_YAML)
    apps.fail("mer", *[TransientError("down", retry_after=10)] * 3)
    started = time.monotonic()
    result = await handle_logout(
        logout(), registry=registry, apps=apps, sso=CAS, policy=POLICY, default_timeout_s=0.3
    )
    assert result is not None
    assert time.monotonic() - started < 2
    mer = next(s for s in result.steps if s.action == "app_logout:mer")
    assert mer.outcome is Outcome.FAILED
    assert mer.error is not None and mer.error.code == "timeout"
    assert mer.attempts == 1  # the Retry-After sleep was cut by the timeout


async def test_apps_run_in_parallel_bounded_by_concurrency(apps: FakeAppLogout) -> None:
    registry = parse_registry(
        "applications:\n"
        + "".join(
            f"  - {{name: app{i}, protocol: http, logout_url: 'https://a{i}.test/'}}\n"
            for i in range(6)
        )
    )
    for i in range(6):
        apps.delays[f"app{i}"] = 0.1
    started = time.monotonic()
    result = await handle_logout(
        logout(), registry=registry, apps=apps, sso=CAS, policy=POLICY, concurrency=2
    )
    elapsed = time.monotonic() - started
    assert result is not None
    assert all(s.outcome is Outcome.SUCCEEDED for s in result.steps)
    assert apps.max_in_flight == 2
    assert 0.28 <= elapsed < 1.0

    apps.max_in_flight = 0
    await handle_logout(
        logout(), registry=registry, apps=apps, sso=CAS, policy=POLICY, concurrency=8
    )
    assert apps.max_in_flight == 6


async def test_offboard_reaches_identity_apps_only(registry: Registry, apps: FakeAppLogout) -> None:
    event = offboard()
    result = await handle_offboard(event, registry=registry, apps=apps, sso=CAS, policy=POLICY)
    assert result is not None
    assert result.request_id == event.request_id
    assert outcomes(result) == {
        "app_logout:mer": Outcome.SUCCEEDED,
        "app_logout:ism": Outcome.SKIPPED,
    }
    assert apps.slo_calls == []
    assert apps.identity_calls == [("mer", "alice")]


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (("block_sign_in",), []),
        (("app_logout:mer",), ["app_logout:mer"]),
        (("app_logout",), ["app_logout:mer", "app_logout:ism"]),
    ],
)
async def test_offboard_honours_requested_actions(
    registry: Registry, apps: FakeAppLogout, actions: tuple[str, ...], expected: list[str]
) -> None:
    result = await handle_offboard(
        offboard(actions=actions), registry=registry, apps=apps, sso=CAS, policy=POLICY
    )
    assert result is not None
    assert [s.action for s in result.steps] == expected


def sso_request(tgt: str | None, *, all_sessions: bool = False) -> SsoLogoutRequested:
    event = logout()
    return SsoLogoutRequested(
        request_id=event.request_id,
        subject=ALICE,
        kind=Kind.OFFBOARD if all_sessions else Kind.LOGOUT,
        tgt=tgt,
        all_sessions=all_sessions,
    )


async def test_sso_logout_by_tgt_is_verified_by_reading_the_cas_back() -> None:
    cas = FakeSsoSessions(sessions={"TGT-1-alice": "alice", "TGT-2-alice": "alice"})
    event = sso_request("TGT-1-alice")
    result = await handle_sso_logout(event, sso=cas, policy=POLICY)
    assert isinstance(result, SsoLogoutCompleted)
    assert (result.service, result.request_id) == ("sso", event.request_id)
    [step] = result.steps
    assert (step.action, step.outcome, step.verification) == (
        "destroy_sso_session",
        Outcome.SUCCEEDED,
        Verification.VERIFIED,
    )
    assert step.done
    assert step.evidence is not None
    assert step.evidence.observed["tgt_known"] is False
    assert step.evidence.observed["sso_sessions_of_user"] == 1
    assert "TGT-1-alice" not in step.model_dump_json()
    assert cas.sessions == {"TGT-2-alice": "alice"}
    assert result.discovery is not None
    assert (result.discovery.sso_sessions_found, result.discovery.sso_sessions_ended) == (1, 1)
    assert cas.calls == [
        ("user_sessions", "alice"),
        ("destroy_ticket", "TGT-1-alice"),
        ("user_sessions", "alice"),
    ]


async def test_sso_logout_of_an_ended_session_is_verified_gone() -> None:
    # Apereo answers 200 for an unknown TGT; the read-back says it is gone.
    cas = FakeSsoSessions()
    result = await handle_sso_logout(sso_request("TGT-gone"), sso=cas, policy=POLICY)
    [step] = result.steps
    assert (step.outcome, step.verification) == (Outcome.SUCCEEDED, Verification.VERIFIED)
    assert result.discovery is not None and result.discovery.sso_sessions_found == 0


async def test_a_404_on_the_tgt_delete_is_a_failure_not_a_not_found() -> None:
    cas = FakeSsoSessions(sessions={"TGT-1-alice": "alice"}, rest_missing=True)
    [step] = (await handle_sso_logout(sso_request("TGT-1-alice"), sso=cas, policy=POLICY)).steps
    assert step.outcome is Outcome.FAILED
    assert step.error is not None and step.error.code == "cas_rest_missing"
    assert not step.done
    assert cas.sessions == {"TGT-1-alice": "alice"}


@pytest.mark.parametrize("tgt", ["TGT-1-alice", None])
async def test_a_cas_that_keeps_the_session_is_contradicted(tgt: str | None) -> None:
    cas = FakeSsoSessions(sessions={"TGT-1-alice": "alice"}, keep_sessions_on_delete=True)
    result = await handle_sso_logout(
        sso_request(tgt, all_sessions=tgt is None), sso=cas, policy=POLICY
    )
    [step] = result.steps
    assert (step.outcome, step.verification) == (Outcome.FAILED, Verification.CONTRADICTED)
    assert step.error is not None and step.error.code == "not_verified"
    assert "still" in step.error.message
    assert step.evidence is not None and step.evidence.observed["sso_sessions_of_user"] == 1
    assert result.discovery is not None and result.discovery.sso_sessions_ended == 0


async def test_without_the_actuator_the_tgt_delete_is_unverified() -> None:
    cas = FakeSsoSessions(sessions={"TGT-1-alice": "alice"}, actuator=False)
    result = await handle_sso_logout(sso_request("TGT-1-alice"), sso=cas, policy=POLICY)
    [step] = result.steps
    assert (step.outcome, step.verification) == (Outcome.SUCCEEDED, Verification.UNVERIFIED)
    assert not step.done
    assert step.error is not None and "not configured" in step.error.message
    assert result.discovery is not None and result.discovery.error is not None
    assert result.discovery.sso_sessions_found is None
    # An offboarding needs the actuator to delete at all.
    [all_step] = (await handle_sso_logout(sso_request(None), sso=cas, policy=POLICY)).steps
    assert all_step.outcome is Outcome.FAILED
    assert all_step.error is not None and all_step.error.code == "cas_actuator_not_configured"


@pytest.mark.parametrize(("tgt", "all_sessions"), [(None, False), ("TGT-1-alice", True)])
async def test_sso_logout_of_every_session(tgt: str | None, all_sessions: bool) -> None:
    cas = FakeSsoSessions(
        sessions={"TGT-1-alice": "alice", "TGT-2-alice": "alice", "TGT-9-bob": "bob"}
    )
    result = await handle_sso_logout(
        sso_request(tgt, all_sessions=all_sessions), sso=cas, policy=POLICY
    )
    [step] = result.steps
    assert (step.action, step.outcome, step.verification) == (
        "destroy_all_sso_sessions",
        Outcome.SUCCEEDED,
        Verification.VERIFIED,
    )
    assert step.evidence is not None and step.evidence.observed == {"sso_sessions_of_user": 0}
    assert ("destroy_user_sessions", "alice") in cas.calls
    assert cas.sessions == {"TGT-9-bob": "bob"}
    assert result.discovery is not None
    assert (result.discovery.sso_sessions_found, result.discovery.sso_sessions_ended) == (2, 2)


async def test_sso_logout_retries_transient_errors() -> None:
    cas = FakeSsoSessions(
        sessions={"TGT-1-alice": "alice"},
        failures=[TransientError("down", code="cas_unavailable")],
    )
    result = await handle_sso_logout(sso_request("TGT-1-alice"), sso=cas, policy=POLICY)
    assert (result.steps[0].outcome, result.steps[0].attempts) == (Outcome.SUCCEEDED, 2)


async def test_sso_logout_permanent_failure() -> None:
    cas = FakeSsoSessions(failures=[PermanentError("401", code="cas_unauthorized")])
    result = await handle_sso_logout(sso_request(None), sso=cas, policy=POLICY)
    step = result.steps[0]
    assert step.outcome is Outcome.FAILED
    assert step.error is not None and step.error.code == "cas_unauthorized"


def sent_tickets(apps: FakeAppLogout) -> list[str]:
    found = (re.search(r"SessionIndex>([^<]+)<", c.message) for c in apps.slo_calls)
    return sorted(m.group(1) for m in found if m)


def st(app: str, n: int) -> ServiceTicket:
    return ServiceTicket(service=f"https://{app}.ent.test/login/", ticket=f"ST-{n}-{app}")


async def test_logout_without_tickets_logs_out_every_service_the_cas_knows(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1), st("escada", 2))
    cas.login("TGT-2-alice", "alice", st("esper", 3), st("escada", 4))
    cas.login("TGT-3-bob", "bob", st("esper", 5))
    result = await handle_logout(logout(), registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    # No TGT in the request: every session of the user.
    assert sent_tickets(apps) == [
        "ST-1-esper",
        "ST-2-escada",
        "ST-3-esper",
        "ST-4-escada",
    ]
    esper = next(s for s in result.steps if s.action == "app_logout:esper")
    assert (esper.outcome, esper.verification) == (Outcome.SUCCEEDED, Verification.ACKNOWLEDGED)
    assert [i.outcome for i in esper.items] == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert all("ST-" not in i.ref and "esper.ent.test" in i.ref for i in esper.items)
    d = result.discovery
    assert d is not None
    assert (d.sso_sessions_found, d.tickets_found, d.tickets_from_caller) == (2, 4, 0)
    assert d.applications == ("esper", "escada")
    assert d.error is None


async def test_logout_with_a_tgt_logs_out_that_sessions_services_and_the_callers(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1))
    cas.login("TGT-2-alice", "alice", st("escada", 2))
    # The caller sends one ticket the CAS also knows, and one it does not.
    event = logout(tgt="TGT-1-alice", tickets=[(st("esper", 1).service, "ST-1-esper"), ESCADA])
    result = await handle_logout(event, registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None and result.discovery is not None
    sent = sent_tickets(apps)
    assert sent == ["ST-1-esper", ESCADA[1]]
    assert (result.discovery.sso_sessions_found, result.discovery.tickets_found) == (1, 1)
    assert result.discovery.tickets_from_caller == 2


async def test_one_failing_ticket_does_not_stop_the_others(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1), st("esper", 2), st("esper", 3))
    apps.fail("esper", PermanentError("rejected", code="app_rejected"))
    result = await handle_logout(logout(), registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    esper = next(s for s in result.steps if s.action == "app_logout:esper")
    assert len(apps.slo_calls) == 3
    assert esper.outcome is Outcome.FAILED
    assert esper.error is not None and esper.error.code == "app_rejected"
    assert "1 of 3" in esper.error.message
    assert [i.outcome for i in esper.items] == [
        Outcome.FAILED,
        Outcome.SUCCEEDED,
        Outcome.SUCCEEDED,
    ]
    assert esper.items[0].error is not None and esper.items[0].error.code == "app_rejected"
    assert not esper.done


async def test_transient_ticket_is_retried_alone_and_items_are_reported(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1), st("esper", 2))
    apps.fail("esper", TransientError("blip", code="app_unavailable"))
    result = await handle_logout(logout(), registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    esper = next(s for s in result.steps if s.action == "app_logout:esper")
    assert (esper.outcome, esper.attempts) == (Outcome.SUCCEEDED, 2)
    assert len(apps.slo_calls) == 3
    assert [i.outcome for i in esper.items] == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]


async def test_discovery_failure_reports_every_cas_app_and_keeps_the_callers_tickets(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions(read_failures=[TransientError("down", code="cas_unavailable")])
    result = await handle_logout(
        logout(tickets=[ESPER]), registry=registry, apps=apps, sso=cas, policy=POLICY
    )
    assert result is not None and result.discovery is not None
    assert result.discovery.error == "down"
    assert result.discovery.sso_sessions_found is None
    assert result.discovery.tickets_from_caller == 1
    assert [c.service_url for c in apps.slo_calls] == [ESPER[0]]
    assert outcomes(result)["app_logout:esper"] is Outcome.SUCCEEDED
    escada = next(s for s in result.steps if s.action == "app_logout:escada")
    assert escada.outcome is Outcome.FAILED
    assert escada.error is not None and escada.error.code == "cas_slo_no_ticket"
    assert "down" in escada.error.message


async def test_an_app_the_cas_did_not_list_gets_no_step(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1))
    result = await handle_logout(logout(), registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    assert set(outcomes(result)) == {"app_logout:esper", "app_logout:mer", "app_logout:ism"}


async def test_offboard_logs_out_every_session_the_cas_knows(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1))
    cas.login("TGT-2-alice", "alice", st("escada", 2))
    result = await handle_offboard(offboard(), registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    assert outcomes(result) == {
        "app_logout:esper": Outcome.SUCCEEDED,
        "app_logout:escada": Outcome.SUCCEEDED,
        "app_logout:mer": Outcome.SUCCEEDED,
        "app_logout:ism": Outcome.SKIPPED,
    }
    ism = next(s for s in result.steps if s.action == "app_logout:ism")
    assert ism.skip_reason is SkipReason.NOT_CONFIGURED and not ism.done
    assert result.discovery is not None and result.discovery.sso_sessions_found == 2


async def test_tickets_and_tgt_are_never_logged(
    registry: Registry, apps: FakeAppLogout, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    apps.fail("esper", TransientError("blip", code="app_unreachable"))
    apps.fail("escada", PermanentError("nope", code="app_rejected"))
    tgt = "TGT-77-secret-session"
    await handle_logout(
        logout(tgt=tgt, tickets=[ESPER, ESCADA, EVIL]),
        registry=registry,
        apps=apps,
        sso=CAS,
        policy=POLICY,
    )
    cas = FakeSsoSessions(failures=[TransientError("x")], sessions={tgt: "alice"})
    await handle_sso_logout(sso_request(tgt), sso=cas, policy=POLICY)
    assert "app_logout:esper" in caplog.text  # the logs were captured
    for secret in (tgt, ESPER[1], ESCADA[1], EVIL[1], "steal"):
        assert secret not in caplog.text


def _record() -> DeadLettered:
    return DeadLettered(
        stream="logout.requested",
        group="ent-worker",
        entry_id="1-0",
        reason="max_deliveries",
        detail="",
        deliveries=6,
        data="{}",
    )


def test_deadlettered_commands_report_failed_steps(registry: Registry) -> None:
    result = handle_deadlettered(logout(tickets=[ESPER, EVIL]), _record(), registry)
    assert result is not None and not isinstance(result, SsoLogoutCompleted)
    assert [s.action for s in result.steps] == [
        "app_logout:esper",
        "app_logout:escada",
        "app_logout:mer",
        "app_logout:ism",
        "app_logout:unregistered",
    ]
    assert all(s.outcome is Outcome.FAILED for s in result.steps)
    assert all(s.error is not None and s.error.code == "deadlettered" for s in result.steps)

    sso = handle_deadlettered(sso_request("TGT-1"), _record(), registry)
    assert isinstance(sso, SsoLogoutCompleted)
    assert [(s.action, s.outcome) for s in sso.steps] == [("destroy_sso_session", Outcome.FAILED)]

    offboarded = handle_deadlettered(offboard(), _record(), registry)
    assert offboarded is not None
    assert [s.action for s in offboarded.steps] == [
        "app_logout:esper",
        "app_logout:escada",
        "app_logout:mer",
        "app_logout:ism",
    ]
    assert handle_deadlettered(logout(targets=(Target.M365,)), _record(), registry) is None
    assert handle_deadlettered(ALICE, _record(), registry) is None


async def test_a_follow_up_redoes_only_the_named_actions(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1), st("escada", 2))
    scope = FollowUpScope(services=("ent",), actions=("app_logout:escada",), attempt=2)
    again = logout().model_copy(update={"followup": scope})
    result = await handle_logout(again, registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    assert [s.action for s in result.steps] == ["app_logout:escada"]
    assert sent_tickets(apps) == ["ST-2-escada"]
    elsewhere = FollowUpScope(services=("m365",))
    not_ours = logout().model_copy(update={"followup": elsewhere})
    assert (
        await handle_logout(not_ours, registry=registry, apps=apps, sso=cas, policy=POLICY) is None
    )
    leaving = offboard().model_copy(update={"followup": elsewhere})
    assert (
        await handle_offboard(leaving, registry=registry, apps=apps, sso=cas, policy=POLICY) is None
    )


async def test_many_tickets_fit_the_contract_with_the_failures_first(
    registry: Registry, apps: FakeAppLogout
) -> None:
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", *(st("esper", n) for n in range(250)))
    apps.fail("esper", *([None] * 120), PermanentError("gone", code="app_rejected"))
    result = await handle_logout(logout(), registry=registry, apps=apps, sso=cas, policy=POLICY)
    assert result is not None
    decoded = decode_event(result.model_dump_json())
    assert isinstance(decoded, RevocationCompleted)
    esper = next(s for s in decoded.steps if s.action == "app_logout:esper")
    assert len(apps.slo_calls) == 250
    assert len(esper.items) == 200
    assert esper.items[0].outcome is Outcome.FAILED and esper.items[0].ref.startswith("121:")
    assert esper.error is not None and "1 of 250" in esper.error.message


async def test_apps_whose_tickets_were_unknown_are_logged_out_before_the_sso_session(
    registry: Registry, apps: FakeAppLogout
) -> None:
    """The CAS was down when the ENT worker asked for the tickets; by the SSO logout it is
    back: the applications go first, from the tickets it lists, then the TGT."""
    slo_before_destroy: list[int] = []

    class Cas(FakeSsoSessions):
        async def destroy_ticket(self, tgt: str) -> None:
            slo_before_destroy.append(len(apps.slo_calls))
            await super().destroy_ticket(tgt)

    cas = Cas()
    cas.login("TGT-1-alice", "alice", st("esper", 1))
    event = sso_request("TGT-1-alice").model_copy(
        update={"app_logout_first": ("app_logout:esper", "app_logout:escada")}
    )
    result = await handle_sso_logout(
        event, sso=cas, policy=POLICY, registry=registry, apps=apps, concurrency=2
    )
    assert slo_before_destroy == [1]
    assert [(c.app, c.service_url) for c in apps.slo_calls] == [
        ("esper", "https://esper.ent.test/login/")
    ]
    assert "ST-1-esper" in apps.slo_calls[0].message
    by_action = {s.action: s for s in result.app_steps}
    assert set(by_action) == {"app_logout:esper", "app_logout:escada"}
    assert by_action["app_logout:esper"].outcome is Outcome.SUCCEEDED
    # Escada: the CAS, asked, lists no ticket for it: nothing to end, proven by that lookup.
    escada = by_action["app_logout:escada"]
    assert (escada.outcome, escada.done) == (Outcome.NOT_FOUND, True)
    assert escada.evidence is not None and escada.evidence.observed == {"tickets": 0}
    assert result.app_discovery is not None and result.app_discovery.tickets_found == 1
    [sso] = result.steps
    assert (sso.outcome, sso.verification) == (Outcome.SUCCEEDED, Verification.VERIFIED)


@pytest.mark.parametrize("attempt", [None, 1, 7])
async def test_the_sso_logout_waits_for_the_cas_to_list_the_tickets(
    registry: Registry, apps: FakeAppLogout, attempt: int | None
) -> None:
    """The CAS cannot list the session (down) while applications wait for their tickets:
    the session is not destroyed yet (that would make the CAS forget them); how long this
    may last is the orchestrator's to say (it stops naming the applications)."""
    cas = FakeSsoSessions(
        read_failures=[TransientError("down", code="cas_unavailable")] * 10,
        sessions={"TGT-1-alice": "alice"},
    )
    event = sso_request("TGT-1-alice").model_copy(
        update={
            "app_logout_first": ("app_logout:esper",),
            "followup": None
            if attempt is None
            else FollowUpScope(services=("sso",), attempt=attempt),
        }
    )
    result = await handle_sso_logout(event, sso=cas, policy=POLICY, registry=registry, apps=apps)
    assert result.app_steps == () and apps.slo_calls == []
    [step] = result.steps
    assert step.outcome is Outcome.FAILED and not step.done
    assert step.error is not None and step.error.retryable
    assert step.error.code == "sso_deferred_for_app_logout"
    assert cas.sessions == {"TGT-1-alice": "alice"}
    assert ("destroy_ticket", "TGT-1-alice") not in cas.calls


async def test_tickets_of_an_application_down_are_kept_for_the_follow_up(
    registry: Registry, apps: FakeAppLogout
) -> None:
    """Esper answers 503 at the logout; by its follow-up the SSO session is gone and the
    CAS lists no ticket any more: the ticket kept from the first attempt is sent."""
    vault = FakeTicketVault()
    cas = FakeSsoSessions()
    cas.login("TGT-1-alice", "alice", st("esper", 1))
    apps.fail("esper", *[TransientError("503", code="app_unavailable")] * 10)
    first = logout()
    result = await handle_logout(
        first, registry=registry, apps=apps, sso=cas, policy=POLICY, vault=vault
    )
    assert result is not None and outcomes(result)["app_logout:esper"] is Outcome.FAILED
    assert [t.ticket for t in vault.by_request[str(first.request_id)]] == ["ST-1-esper"]

    cas.sessions.clear()  # the SSO logout destroyed the session
    apps.failures.pop("esper")  # back
    again = first.model_copy(
        update={"followup": FollowUpScope(services=("ent",), actions=("app_logout:esper",))}
    )
    healed = await handle_logout(
        again, registry=registry, apps=apps, sso=cas, policy=POLICY, vault=vault
    )
    assert healed is not None and outcomes(healed) == {"app_logout:esper": Outcome.SUCCEEDED}
    assert "ST-1-esper" in apps.slo_calls[-1].message
    assert str(first.request_id) not in vault.by_request  # nothing left to retry


async def test_apps_first_claims_nothing_once_the_session_is_gone(
    registry: Registry, apps: FakeAppLogout
) -> None:
    """A CAS that lists no session (an earlier attempt destroyed it) cannot tell which
    applications had one: nothing is claimed not_found."""
    event = sso_request("TGT-1-alice").model_copy(
        update={"app_logout_first": ("app_logout:esper",)}
    )
    result = await handle_sso_logout(
        event, sso=FakeSsoSessions(), policy=POLICY, registry=registry, apps=apps
    )
    assert result.app_steps == ()
    [sso] = result.steps
    assert sso.outcome is Outcome.SUCCEEDED
