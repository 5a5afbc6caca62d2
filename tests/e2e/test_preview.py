"""A preview (`POST /v1/offboardings:preview`, `sortie offboard alice --dry-run`) on the
processes of `sortie up`: the real workers answer with what the Graph and CAS simulators
hold, and nothing changes in any simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from sortie_cli.stack import Stack
from sortie_simulators.demo import ALICE
from tests.support.stacks import StackVariant, use_stack

pytestmark = [pytest.mark.e2e, use_stack(StackVariant("preview"))]


def _state(stack: Stack) -> dict[str, Any]:
    """Everything the simulators would show of an offboarding's effect."""
    u = stack.urls
    get = lambda url: httpx.get(url, timeout=10).json()  # noqa: E731
    stats = get(f"{u['sim_graph']}/_sim/stats")
    return {
        "graph_writes": stats["writes"],
        "graph_user": get(f"{u['sim_graph']}/_sim/users/{ALICE.upn}"),
        "cas_sso": get(f"{u['sim_cas']}/_sim/users/{ALICE.cas_username}/sso"),
        "cas_events": get(f"{u['sim_cas']}/_sim/events"),
        "apps_received": get(f"{u['sim_entapps']}/_sim/received"),
        "stations": get(f"{u['sim_workstations']}/_sim/sessions"),
        "station_events": get(f"{u['sim_workstations']}/_sim/events"),
    }


def test_preview_finds_and_changes_nothing(stack: Stack) -> None:
    before = _state(stack)
    headers = {"Authorization": f"Bearer {stack.token}"}
    body = {"subject": {"user_id": ALICE.cas_username, "upn": ALICE.upn}}
    resp = httpx.post(
        f"{stack.urls['api']}/v1/offboardings:preview", json=body, headers=headers, timeout=30
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()
    m365, ent = data["services"]["m365"], data["services"]["ent"]
    assert m365["answered"] and ALICE.upn in m365["discovery"]["identity"]
    assert ent["answered"] and ent["discovery"]["sso_sessions_found"] >= 1
    assert ent["discovery"]["applications"]
    assert all(a.startswith("app_logout:") for a in data["will_do"]["ent"])
    assert list(data["will_do"])[-1] == "sso"
    assert _state(stack) == before
    env = {
        **os.environ,
        "SORTIE_API_URL": stack.urls["api"],
        "SORTIE_TOKEN": stack.token,
        "NO_COLOR": "1",
    }
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "sortie_cli",
            "offboard",
            ALICE.cas_username,
            "--upn",
            ALICE.upn,
            "--dry-run",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "nothing was changed" in cli.stdout and ALICE.upn in cli.stdout
    assert "sso: destroy_all_sso_sessions" in cli.stdout
    assert _state(stack) == before
    listed = httpx.get(f"{stack.urls['api']}/v1/requests", headers=headers, timeout=10).json()
    assert all(i["kind"] != "offboard" for i in listed["items"])
