"""The status page in a real headless Chromium: sign-in with a token in the URL fragment,
a screenshot of a request's timeline, and its live update through server-sent events."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.orchestrator.statuspage.chromium import chromium
from tests.support.live import READER, TOKEN, live_orchestrator

PNG = b"\x89PNG\r\n\x1a\n"


def test_timeline_updates_live_in_chromium(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    shot = tmp_path / "request.png"
    # Long enough timeouts that the page surely loads while the request runs.
    with live_orchestrator(phase1_timeout_s=2.5, sso_timeout_s=1.0) as url:
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"})
        # Signing in: the token rides in the fragment, which never reaches the server.
        login = chromium(
            profile, "--virtual-time-budget=3000", "--dump-dom", f"{url}/ui/login#token={READER}"
        )
        assert "Recent requests" in login.stdout, login.stderr[-2000:]
        body = {"subject": {"user_id": "dmoreau", "upn": "dmoreau@lycee.example"}}
        rid = api.post("/v1/offboardings", json=body).json()["request_id"]
        assert api.get(f"/v1/requests/{rid}").json()["status"] == "in_progress"
        live = chromium(
            profile, "--virtual-time-budget=8000", "--dump-dom", f"{url}/ui/requests/{rid}"
        )
        dom = live.stdout
        assert api.get(f"/v1/requests/{rid}").json()["status"] == "failed"
        # Served while running (the events URL is only there then), now showing the end:
        # only the server-sent events can have brought that.
        assert f'data-events="/ui/requests/{rid}/events"' in dom
        assert "badge s-failed" in dom
        assert len(re.findall(r'<rect class="bar o-timed_out"', dom)) >= 6
        shots = chromium(
            profile,
            "--virtual-time-budget=2000",
            f"--screenshot={shot}",
            "--window-size=1280,900",
            f"{url}/ui/requests/{rid}",
        )
        assert shot.exists(), shots.stderr[-2000:]
        data = shot.read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000
        signed_out = chromium(
            tmp_path / "fresh",
            "--virtual-time-budget=2000",
            "--dump-dom",
            f"{url}/ui/requests/{rid}",
        )
        assert "Sign in" in signed_out.stdout and "dmoreau" not in signed_out.stdout
