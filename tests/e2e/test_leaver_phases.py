"""End to end: a two-phase profile's later phase through the real m365-worker (msgraph-sdk
over HTTP) against the Graph simulator, with every Sortie service and Redis (AOF) down
past the phase's date: once they are back, it fires within a second and its change is
read back from the simulator."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis as redis_sync

from sortie_cli.stack import Stack
from sortie_core import streams
from sortie_simulators.demo import ALICE
from tests.support.stacks import running_stack, wait_status, wait_view

pytestmark = pytest.mark.e2e
FINISHED = {"completed", "partial", "failed"}
AFTER_S = 10
PROFILES = {
    "profiles": {
        "leaves-soon": {
            "phases": [
                {"actions": ["block_sign_in", "revoke_sessions"]},
                {"after": AFTER_S, "actions": ["remove_licenses"]},
            ]
        }
    }
}
SIM_TOKEN = {"Authorization": "Bearer simulator-token"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("sortie-phases")
    profiles = workdir / "profiles.json"
    profiles.write_text(json.dumps(PROFILES))
    env = {"SORTIE_ORCHESTRATOR_PROFILES_FILE": str(profiles)}
    with running_stack(workdir, env=env) as s:
        yield s


def licences(stack: Stack) -> list[Any]:
    url = f"{stack.urls['sim_graph']}/v1.0/users/{ALICE.upn}?$select=assignedLicenses"
    found: list[Any] = httpx.get(url, headers=SIM_TOKEN).json()["assignedLicenses"]
    return found


def phase_commands(stack: Stack, rid: str) -> list[tuple[float, dict[str, Any]]]:
    client = redis_sync.Redis.from_url(stack.urls["redis"])
    try:
        return [
            (int(entry.decode().split("-")[0]) / 1000, json.loads(fields[b"data"]))
            for entry, fields in client.xrange(streams.OFFBOARD_REQUESTED)
            if fields[b"request_id"].decode() == rid
        ]
    finally:
        client.close()


def restart_sortie(stack: Stack, rid: str, until: float) -> tuple[float, float]:
    """Every Sortie service and Redis stopped, started again once `until` (epoch s) has
    passed: Redis, the orchestrator, then the workers and agents. When the orchestrator
    was started and when it was ready (epoch s). The simulators stay up."""
    ours = [p for p in stack.procs if not p.name.startswith("sim-")]
    # The orchestrator first (it alone fires phases), Redis last.
    for proc in sorted(ours, key=lambda p: (p.name != "orchestrator", p.name == "redis")):
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(30)
    while time.time() < until:
        time.sleep(0.05)
    redis = [p for p in ours if p.name == "redis"]
    orchestrator = [p for p in ours if p.name == "orchestrator"]
    started = ready = 0.0
    for group in (redis, orchestrator, [p for p in ours if p not in redis + orchestrator]):
        if group is orchestrator:
            # Redis is back with its AOF, the services not yet: nothing has fired.
            assert [c for c in phase_commands(stack, rid) if c[1]["phase"] == 1] == []
            assert len(licences(stack)) == 2
            started = time.time()
        for proc in group:
            proc.start()
        for proc in group:
            stack._wait_ready(proc, time.monotonic() + 60)
        if group is orchestrator:
            ready = time.time()
    return started, ready


def test_a_later_phase_fires_after_a_restart_of_every_service(stack: Stack) -> None:
    graph = stack.urls["sim_graph"]
    seed = {"prefix": "alice", "licenses": 2, "groups": 0, "devices": 0, "methods": []}
    httpx.post(f"{graph}/_sim/leaver:seed", json=seed).raise_for_status()
    assert len(licences(stack)) == 2
    subject = {"user_id": ALICE.cas_username, "upn": ALICE.upn, "cas_username": ALICE.cas_username}
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.urls["api"], headers=headers, timeout=10) as api:
        resp = api.post("/v1/offboardings", json={"subject": subject, "profile": "leaves-soon"})
        assert resp.status_code == 202, resp.text
        rid = resp.json()["request_id"]
        first = wait_status(api, rid, FINISHED, timeout=60)
        assert first["profile"] == "leaves-soon" and first["phases"][1]["status"] == "scheduled"
        at = datetime.fromisoformat(first["phases"][1]["at"]).timestamp()
        assert time.time() < at, "phase 0 took longer than the phase's delay"
    # Down past the date: nothing fired meanwhile, everything fires once back.
    started, ready = restart_sortie(stack, rid, until=at + 0.5)
    with httpx.Client(base_url=stack.urls["api"], headers=headers, timeout=10) as api:
        view = wait_view(
            api, rid, lambda v: v.get("phases", [{}] * 2)[1].get("status") in FINISHED, 60
        )
    [(fired, command)] = [c for c in phase_commands(stack, rid) if c[1]["phase"] == 1]
    assert command["actions"] == ["remove_licenses"]
    # Fired by the orchestrator as it came back, within a second of being ready.
    assert started <= fired < ready + 1.0, (fired, started, ready)
    phase = view["phases"][1]
    assert phase["status"] == "completed", phase
    [step] = phase["services"]["m365"]["steps"]
    assert step["action"] == "remove_licenses" and step["done"]
    assert licences(stack) == []
