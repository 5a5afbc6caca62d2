"""Offboarding profiles and their later phases, against a live orchestrator over a real
redis-server; the test plays the workers on the streams (tests/orchestrator/workers.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
import redis as redis_sync

from sortie_core import streams
from sortie_core.events import Outcome, SkipReason, StepError
from sortie_orchestrator.profiles import Profiles
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.workers import answer_offboarding, commands, report, step, until
from tests.support.live import TOKEN, live_orchestrator

PROFILES = Profiles.model_validate(
    {
        "profiles": {
            "quick": {
                "phases": [
                    {"actions": ["block_sign_in", "revoke_sessions", "app_logout"]},
                    {"after": 1, "actions": ["remove_licenses"]},
                ]
            },
            "later": {
                "phases": [
                    {"actions": ["block_sign_in"]},
                    {"after": 3600, "actions": ["hide_from_address_lists"]},
                ]
            },
        }
    }
)


@pytest.fixture(scope="module")
def base(server: RedisServer) -> Iterator[str]:
    with live_orchestrator(server, profiles=PROFILES) as url:
        yield url


def offboard(api: httpx.Client, user: str, **body: object) -> httpx.Response:
    return api.post("/v1/offboardings", json={"subject": {"user_id": user}, **body})


def test_the_profile_chosen_runs_its_actions_in_order(api: httpx.Client, server: RedisServer):
    resp = offboard(api, "staff.one", profile="staff-leaves")
    assert resp.status_code == 202, resp.text
    assert resp.json()["profile"] == "staff-leaves"
    rid = resp.json()["request_id"]
    (_, command), *_ = until(lambda: commands(server.url, streams.OFFBOARD_REQUESTED, rid))
    _, staff = PROFILES.get("staff-leaves")
    assert command["actions"] == staff.phases[0].actions
    assert command["actions"][:2] == ["block_sign_in", "reset_password"]
    assert command["profile"] == "staff-leaves" and command["phase"] == 0
    assert "message" in command["options"]["set_auto_reply"]
    view = api.get(f"/v1/requests/{rid}").json()
    assert view["profile"] == "staff-leaves"
    assert [(p["index"], p["status"]) for p in view["phases"]] == [
        (0, "running"),
        (1, "scheduled"),
        (2, "scheduled"),
    ]
    started = datetime.fromisoformat(view["started_at"])
    assert datetime.fromisoformat(view["phases"][1]["at"]) == started + timedelta(days=30)
    # No profile named: the site's default, DESIGN.md's offboarding (every default action).
    plain = offboard(api, "staff.two").json()
    (_, default_command), *_ = until(
        lambda: commands(server.url, streams.OFFBOARD_REQUESTED, plain["request_id"])
    )
    assert plain["profile"] == "full" and default_command["actions"] == []


def test_an_unknown_profile_is_a_422_and_changes_nothing(api: httpx.Client, server: RedisServer):
    before = redis_sync.Redis.from_url(server.url).xlen(streams.OFFBOARD_REQUESTED)
    resp = offboard(api, "nobody", profile="no-such-profile")
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "no-such-profile" in resp.json()["detail"] and "staff-leaves" in resp.json()["detail"]
    both = offboard(api, "nobody", profile="suspend", actions=["block_sign_in"])
    assert both.status_code == 422 and "either" in both.json()["detail"]
    assert redis_sync.Redis.from_url(server.url).xlen(streams.OFFBOARD_REQUESTED) == before


def test_a_later_phase_fires_at_its_date_in_the_same_request(
    api: httpx.Client, server: RedisServer
):
    rid = offboard(api, "quick.one", profile="quick").json()["request_id"]
    answer_offboarding(server.url, rid, [step("block_sign_in"), step("revoke_sessions")])
    done = until(
        lambda: (v := api.get(f"/v1/requests/{rid}").json())["status"] == "completed" and v
    )
    # The request is completed (phase 0: access ended, proven); phase 1 is still to come.
    assert done["phases"][1]["status"] == "scheduled"
    at = datetime.fromisoformat(done["phases"][1]["at"]).timestamp()
    fired = until(lambda: commands(server.url, streams.OFFBOARD_REQUESTED, rid)[1:], timeout=5)
    published_at, command = fired[0]
    assert command["phase"] == 1 and command["actions"] == ["remove_licenses"]
    assert command["profile"] == "quick"
    assert 0 <= published_at - at < 1.0, (published_at, at)
    running = api.get(f"/v1/requests/{rid}").json()
    assert running["phases"][1]["status"] == "running" and running["status"] == "completed"
    # As the m365-worker does: the phase's action, and the default ones as not selected.
    not_selected = step("block_sign_in").model_copy(
        update={
            "outcome": Outcome.SKIPPED,
            "skip_reason": SkipReason.ACTION_NOT_SELECTED,
            "verification": None,
        }
    )
    report(server.url, rid, "m365", [not_selected, step("remove_licenses", {"sku_ids": ["sku-a"]})])
    view = until(
        lambda: (
            (v := api.get(f"/v1/requests/{rid}").json())["phases"][1]["status"] == "completed" and v
        )
    )
    steps = view["phases"][1]["services"]["m365"]["steps"]
    assert [s["action"] for s in steps] == ["remove_licenses"] and steps[0]["done"]
    assert view["status"] == "completed"
    assert any(t["event"] == "phase_finished" for t in view["timeline"])


def test_later_phases_are_cancelled_by_delete(api: httpx.Client, server: RedisServer):
    rid = offboard(api, "later.one", profile="later").json()["request_id"]
    answer_offboarding(server.url, rid, [step("block_sign_in")])
    until(lambda: api.get(f"/v1/requests/{rid}").json()["status"] == "completed")
    client = redis_sync.Redis.from_url(server.url)
    assert client.zscore("sortie:deadlines", rid) is not None  # phase 1's date
    cancelled = api.delete(f"/v1/requests/{rid}")
    assert cancelled.status_code == 200, cancelled.text
    view = cancelled.json()
    assert view["status"] == "completed"  # what phase 0 did stays done
    assert view["phases"][1]["status"] == "cancelled"
    assert client.zscore("sortie:deadlines", rid) is None
    again = api.delete(f"/v1/requests/{rid}")
    assert again.status_code == 409


def test_a_later_phase_survives_a_restart_of_the_orchestrator_and_redis() -> None:
    srv = RedisServer(appendonly=True).start()
    try:
        with (
            live_orchestrator(srv, profiles=PROFILES) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as api,
        ):
            rid = offboard(api, "restart.one", profile="quick").json()["request_id"]
            answer_offboarding(srv.url, rid, [step("block_sign_in"), step("revoke_sessions")])
            view = until(
                lambda: (v := api.get(f"/v1/requests/{rid}").json())["status"] == "completed" and v
            )
        at = datetime.fromisoformat(view["phases"][1]["at"]).timestamp()
        # Everything down past the phase's date (Redis too, its AOF kept); the next
        # orchestrator fires it as soon as it is up.
        srv.stop()
        while time.time() < at + 0.3:
            time.sleep(0.05)
        srv.start()
        assert len(commands(srv.url, streams.OFFBOARD_REQUESTED, rid)) == 1
        with live_orchestrator(srv, profiles=PROFILES, consumer_name="orch-live-2") as url:
            up = time.time()
            fired = until(lambda: commands(srv.url, streams.OFFBOARD_REQUESTED, rid)[1:], 5)
            assert fired[0][1]["phase"] == 1 and fired[0][0] - up < 1.0
    finally:
        srv.cleanup()


def test_a_later_phase_that_failed_for_a_transient_reason_is_followed_up() -> None:
    srv = RedisServer().start()
    try:
        with (
            live_orchestrator(srv, profiles=PROFILES, followup_base_s=0.2) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as api,
        ):
            rid = offboard(api, "retry.one", profile="quick").json()["request_id"]
            answer_offboarding(srv.url, rid, [step("block_sign_in"), step("revoke_sessions")])
            until(lambda: commands(srv.url, streams.OFFBOARD_REQUESTED, rid)[1:], timeout=5)
            throttled = step("remove_licenses", {"sku_ids": ["sku-a"]}).model_copy(
                update={
                    "outcome": Outcome.FAILED,
                    "verification": None,
                    "error": StepError(code="graph_throttled", message="429", retryable=True),
                }
            )
            report(srv.url, rid, "m365", [throttled])
            # Sent again, for the phase's failed action only, as a follow-up of phase 1.
            again = until(lambda: commands(srv.url, streams.OFFBOARD_REQUESTED, rid)[2:], 5)
            command = again[0][1]
            assert command["phase"] == 1 and command["followup"]["actions"] == ["remove_licenses"]
            view = api.get(f"/v1/requests/{rid}").json()
            assert view["phases"][1]["status"] == "failed"
            assert view["phases"][1]["followups"]["m365"]["attempt"] == 1
            report(srv.url, rid, "m365", [step("remove_licenses", {"sku_ids": []})])
            healed = until(
                lambda: (
                    (v := api.get(f"/v1/requests/{rid}").json())["phases"][1]["status"]
                    == "completed"
                    and v
                )
            )
            phase = healed["phases"][1]
            assert phase["healed_at"] and phase["followups"] == {}
            [done] = phase["services"]["m365"]["steps"]
            assert done["done"]
    finally:
        srv.cleanup()
