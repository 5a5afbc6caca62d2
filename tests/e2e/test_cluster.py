"""Redis Cluster end to end (issue 19): the real services as processes, started by the same
code as `sortie up`, on a local cluster of three primaries, each with a replica, started
here (`redis-server --cluster-enabled yes` x 6, `redis-cli --cluster create`).

Every script touches one slot: the request's state and its events go to the request's
slot (outbox), the relay moves them to the shared streams. One logout everywhere ends
`completed` with every service's steps; then one primary is killed with -9 under load and
every request that got a 202 still ends `completed` (none lost, none stuck)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from redis.cluster import RedisCluster

from sortie_cli.stack import Stack
from sortie_core.outbox import OUTBOX_SLOTS, slot_of
from sortie_simulators.demo import ALICE
from sortie_testkit.redis_cluster import RedisClusterGroup
from tests.e2e.test_sentinel_failover import Load, _statuses
from tests.support.stacks import running_stack, wait_status

pytestmark = pytest.mark.e2e

FAST = {
    # Entries whose acknowledgement died with the primary are claimed again after this.
    **{f"SORTIE_{p}_CLAIM_IDLE_MS": "2000" for p in ("ORCHESTRATOR", "M365", "ENT", "AGENT")},
    "SORTIE_ORCHESTRATOR_DURABLE_REPLICAS": "1",
    "SORTIE_ORCHESTRATOR_DURABLE_TIMEOUT_MS": "500",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterGroup]:
    group = RedisClusterGroup(replicas=1).start()
    yield group
    group.cleanup()


@pytest.fixture(scope="module")
def stack(cluster: RedisClusterGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("sortie-cluster"), {**cluster.env(), **FAST}) as s:
        yield s


def api(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.urls["api"], headers={"Authorization": f"Bearer {stack.token}"}, timeout=10
    )


def _wait_presence(cluster: RedisClusterGroup, host: str, user: str) -> None:
    redis = RedisCluster.from_url(cluster.url)
    deadline = time.monotonic() + 20
    while not redis.sismember(f"sortie:hosts:{user}", host):
        assert time.monotonic() < deadline, f"{host}'s presence never reached the orchestrator"
        time.sleep(0.1)
    redis.close()


def test_logout_everywhere_completes_on_a_cluster(stack: Stack, cluster: RedisClusterGroup) -> None:
    cas = stack.urls["sim_cas"]
    sso = httpx.get(f"{cas}/_sim/users/{ALICE.cas_username}/sso").json()
    _wait_presence(cluster, "pc-101", ALICE.cas_username)
    body = {
        "subject": {
            "user_id": ALICE.cas_username,
            "upn": ALICE.upn,
            "cas_username": ALICE.cas_username,
            "windows_account": ALICE.cas_username,
        },
        "sso_session": sso,
    }
    with api(stack) as client:
        resp = client.post("/v1/logouts", json=body, headers={"Idempotency-Key": "c-1"})
        assert resp.status_code == 202, resp.text
        rid = resp.json()["request_id"]
        again = client.post("/v1/logouts", json=body, headers={"Idempotency-Key": "c-1"})
        assert again.json()["request_id"] == rid
        view = wait_status(client, rid, {"completed", "partial", "failed"})
    assert view["status"] == "completed", json.dumps(view, indent=1)
    # Its id lies in a slot whose outbox and deadlines every replica polls.
    assert slot_of(rid) in OUTBOX_SLOTS
    services = view["services"]
    assert {"m365", "ent", "workstation:pc-101"} <= set(services)
    actions = {s["action"] for svc in services.values() for s in svc["steps"]}
    assert {"revoke_sessions", "app_logout:esper", "app_logout:ism", "logoff"} <= actions
    for svc in services.values():
        assert all(s["outcome"] == "succeeded" for s in svc["steps"]), svc
    assert [s["action"] for s in view["sso"]["steps"]] == ["destroy_sso_session"]
    assert view["sso"]["steps"][0]["verification"] == "verified"
    # The events crossed slots through the outbox, each exactly once (request.finished
    # follows the status by up to a relay pass).
    redis = RedisCluster.from_url(cluster.url)

    def of_request(stream: str) -> list[object]:
        return [f for _, f in redis.xrange(stream) if f[b"request_id"] == rid.encode()]

    deadline = time.monotonic() + 5
    while not of_request("request.finished"):
        assert time.monotonic() < deadline, "request.finished never left the outbox"
        time.sleep(0.05)
    counts = {s: len(of_request(s)) for s in ("logout.requested", "request.finished")}
    redis.close()
    assert counts == {"logout.requested": 1, "request.finished": 1}


def test_a_primary_killed_under_load_loses_nothing(
    stack: Stack, cluster: RedisClusterGroup
) -> None:
    load = Load(stack).start()
    try:
        load.wait_accepted(20, timeout=60)
        victim = next(n for n in cluster.primaries() if n is not cluster.nodes[0])
        primaries = cluster.kill9(victim)
        killed_at = time.monotonic()
        cluster.wait_promoted(primaries)  # its replica took its slots over
        failover_s = time.monotonic() - killed_at
        # Until it has a replica again, the promoted primary's slots answer 503
        # (NotDurable): nothing is accepted that one more crash could lose.
        cluster.restart_as_replica(victim)
        after = len(load.accepted)
        load.wait_accepted(after + 20, timeout=60)
    finally:
        load.finish()
    with api(stack) as client:
        statuses = _statuses(client, [rid for _, rid in load.accepted], timeout=60)
    counts = Counter(statuses.values())
    lost = sum(1 for s in statuses.values() if s.startswith("http"))
    stuck = len(statuses) - lost - counts["completed"]
    print(
        f"\ncluster-kill: {failover_s:.1f} s to a promoted replica; {len(load.accepted)} "
        f"accepted, lost {lost}, stuck {stuck}; statuses {dict(counts)}; "
        f"answers {dict(load.answers)}"
    )
    assert (lost, stuck) == (0, 0), (counts, load.answers, _what_waits(stack, cluster))
    assert not stack.dead()


def _what_waits(stack: Stack, cluster: RedisClusterGroup) -> str:
    """For a failure's message: where the streams stand, and every process asked what its
    tasks await (SIGUSR1, runtime's task dump), written beside the processes' logs."""
    redis = RedisCluster.from_url(cluster.url)
    lines = []
    for stream in ("logout.requested", "revocation.completed", "sso.logout.requested"):
        groups = [
            (g["name"], g["pending"], g.get("lag"), g["last-delivered-id"])
            for g in redis.xinfo_groups(stream)
        ]
        lines.append(f"{stream}: length {redis.xlen(stream)}, groups {groups}")
    outboxes = list(redis.scan_iter(match="sortie:outbox:*", _type="STREAM"))
    waiting = sum(redis.xlen(o) for o in outboxes)
    lines.append(f"{len(outboxes)} outboxes holding {waiting} entries")
    redis.close()
    for proc in stack.procs:
        if proc.popen and proc.alive():
            proc.popen.send_signal(signal.SIGUSR1)
    time.sleep(1)
    lines.append(f"task dumps: the 'tasks:' lines of {stack.workdir / 'logs'}")
    return "\n".join(lines)
