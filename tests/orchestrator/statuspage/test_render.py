"""What the status page shows of a request's follow-ups and healing, in French."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sortie_core.events import Outcome, StepError, StepResult, Subject
from sortie_orchestrator.http.ui.i18n import L10n
from sortie_orchestrator.http.ui.render import live_fragment, timeline_svg
from sortie_orchestrator.saga import DEFAULT_TIMEOUTS, ServiceState, new_logout
from sortie_orchestrator.saga.followup import FollowUp

FR = L10n("fr", ZoneInfo("Europe/Paris"))
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_follow_ups_and_healing_are_shown() -> None:
    state = new_logout(uuid.uuid4(), Subject(user_id="alice"), "user_logout", [], None, AT)
    failed = StepResult(
        action="revoke_sessions",
        outcome=Outcome.FAILED,
        attempts=3,
        started_at=AT,
        finished_at=AT + timedelta(seconds=2),
        error=StepError(code="http_503", message="Service Unavailable", retryable=True),
    )
    state.status = "partial"
    state.finished_at = AT + timedelta(seconds=3)
    state.services = {"m365": ServiceState(state="reported", steps=[failed], late=True)}
    state.followups = {
        "m365": FollowUp(
            attempt=2,
            next_at=AT + timedelta(minutes=1),
            actions=["revoke_sessions"],
            last_error="http_503",
        )
    }
    state.followup_until = AT + timedelta(hours=24)
    html = live_fragment(FR, state, AT + timedelta(seconds=5))
    assert "<h2>Nouvelles tentatives</h2>" in html
    assert "jusqu'au 2 déc. 2026, 10:00:00 (UTC+01:00)" in html
    assert "1 déc. 2026, 10:01:00 (UTC+01:00)" in html  # the next attempt
    assert "Échec (http_503)" in html and "3 tentatives" in html and "réponse tardive" in html
    assert "Partielle" in html
    state.status = "completed"
    state.followups = {}
    state.healed_at = AT + timedelta(minutes=1)
    healed = live_fragment(FR, state, AT + timedelta(minutes=2))
    assert "Nouvelles tentatives" not in healed
    assert "Rétablie" in healed and "une nouvelle tentative a prouvé les étapes restantes" in healed


def test_the_profile_its_later_phases_and_the_reversal_are_shown() -> None:
    from sortie_orchestrator.profiles import Profiles
    from sortie_orchestrator.saga import new_offboard, start

    profile = Profiles().get("staff-leaves")
    state = new_offboard(
        uuid.uuid4(), Subject(user_id="prof.x"), "offboarding", "hr", [], None, AT, profile
    )
    state = start(state, [], AT, DEFAULT_TIMEOUTS).state
    state.status = "completed"
    state.finished_at = AT + timedelta(seconds=3)
    state.phases[1].status = "cancelled"
    state.reversed_by = uuid.uuid4()
    html = live_fragment(FR, state, AT + timedelta(seconds=5))
    assert '<dd id="profile">staff-leaves</dd>' in html
    assert f'href="/ui/requests/{state.reversed_by}"' in html
    assert "<h2>Phases suivantes du profil</h2>" in html
    assert "31 déc. 2026, 10:00:00 (UTC+01:00)" in html  # phase 2: 30 days after the start
    assert "Annulée" in html and "Planifiée" in html


def test_the_timeline_draws_one_bar_per_step_on_one_time_axis() -> None:
    state = new_logout(uuid.uuid4(), Subject(user_id="alice"), "user_logout", [], None, AT)
    state.started_at = AT
    steps = [
        StepResult(
            action=f"app_logout:app{i}",
            outcome=Outcome.SUCCEEDED if i else Outcome.FAILED,
            attempts=i + 1,
            started_at=AT + timedelta(milliseconds=200 * i),
            finished_at=AT + timedelta(milliseconds=200 * i + 100),
        )
        for i in range(3)
    ]
    state.services = {"ent": ServiceState(state="reported", steps=steps)}
    state.services["m365"] = ServiceState(state="pending")
    state.sso_requested_at = AT + timedelta(milliseconds=700)
    svg = str(timeline_svg(FR, state, AT + timedelta(seconds=1)))
    bars = re.findall(r'<rect class="bar ([^"]+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
    # Three steps, then Microsoft 365 still waited for: a bar over the whole second.
    assert [b[0] for b in bars] == ["o-failed", "o-succeeded", "o-succeeded", "w-pending"]
    assert [float(b[1]) for b in bars] == [240.0, 384.0, 528.0, 240.0]
    assert float(bars[3][2]) == 720.0
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)
    assert ticks[0] == "0 ms" and ticks[-1] == "1 s"
    assert svg.count('<line class="phase"') == 1  # when the SSO logout was asked
    assert "3 tentatives" in svg and 'aria-label="' in svg
