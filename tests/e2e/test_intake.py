"""End to end through the intake: the whole stack as processes (`sortie up`'s code), an HR
system deprovisioning a user over SCIM, the CLI offboarding another and waiting, and the
status page showing the finished timeline in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sortie_cli.stack import Stack
from sortie_simulators.demo import ALICE, BOB
from sortie_testkit.waiting import wait_until
from tests.orchestrator.statuspage.chromium import chromium
from tests.support.stacks import StackVariant, use_stack

pytestmark = [pytest.mark.e2e, use_stack(StackVariant("intake"))]
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
FINAL = ("completed", "partial", "failed", "cancelled")


def wait_final(client: httpx.Client, link: str, timeout: float = 30) -> dict:
    def final() -> dict | None:
        view = client.get(link).json()
        return view if view["status"] in FINAL else None

    return wait_until(final, timeout, 0.1, f"{link} finished")


def test_hr_deprovisions_over_scim_and_the_helpdesk_sees_it(stack: Stack, tmp_path: Path) -> None:
    url, token = stack.urls["api"], stack.token or ""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        created = client.post(
            "/scim/v2/Users",
            json={
                "schemas": [USER],
                "userName": BOB.cas_username,
                "externalId": "hr-bob",
                "displayName": BOB.display_name,
                "emails": [{"value": BOB.upn, "type": "work", "primary": True}],
            },
            headers={"Content-Type": "application/scim+json"},
        )
        assert created.status_code == 201, created.text
        started = time.monotonic()
        patched = client.patch(
            f"/scim/v2/Users/{created.json()['id']}",
            json={
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            },
            headers={"Content-Type": "application/scim+json"},
        )
        assert patched.status_code == 200, patched.text
        # SCIM answered without waiting for the offboarding.
        answered = time.monotonic() - started
        link = patched.headers["Sortie-Offboarding"]
        view = wait_final(client, link)
    assert answered < 1.0
    assert view["status"] == "completed", view
    assert view["subject"]["upn"] == BOB.upn
    assert view["services"]["m365"]["steps"] and view["sso"]["steps"]
    assert all(
        s["outcome"] in ("succeeded", "not_found", "skipped")
        for svc in view["services"].values()
        for s in svc["steps"]
    )

    # The helpdesk's browser: sign in, then the request's page with its timeline.
    profile = tmp_path / "profile"
    login = chromium(
        profile, "--virtual-time-budget=3000", "--dump-dom", f"{url}/ui/login#token={token}"
    )
    assert "Recent requests" in login.stdout and BOB.cas_username in login.stdout
    page = f"{url}/ui/requests/{view['request_id']}"
    dom = chromium(profile, "--virtual-time-budget=2000", "--dump-dom", page).stdout
    assert "badge s-completed" in dom and "Timeline" in dom
    bars = dom.count('class="bar o-')
    steps = sum(len(s["steps"]) for s in view["services"].values()) + len(view["sso"]["steps"])
    assert bars == steps
    shot = Path(os.environ.get("SORTIE_SCREENSHOT_DIR", tmp_path)) / "status-page.png"
    chromium(
        profile,
        "--virtual-time-budget=2000",
        f"--screenshot={shot}",
        "--window-size=1280,900",
        page,
    )
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000


def test_cli_offboards_and_waits_for_completion(stack: Stack) -> None:
    env = {
        **os.environ,
        "SORTIE_API_URL": stack.urls["api"],
        "SORTIE_TOKEN": stack.token or "",
        "NO_COLOR": "1",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sortie_cli",
            "offboard",
            ALICE.username,
            "--upn",
            ALICE.upn,
            "--wait",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "completed" in run.stdout and "block_sign_in" in run.stdout
