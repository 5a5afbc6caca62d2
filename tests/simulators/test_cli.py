from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import httpx
import pytest

from sortie_simulators.__main__ import build_app, build_parser
from sortie_simulators.demo import ALICE, DEFAULT_PORTS
from sortie_testkit.redis_server import free_port


def wait_for_line(
    proc: subprocess.Popen[bytes], pattern: re.Pattern[bytes], timeout: float
) -> bytes:
    """Read the process's stderr until a line matches, without blocking past `timeout`."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            match = pattern.search(seen)
            if match:
                return match.group(0)
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern.pattern!r}; stderr so far: {seen!r}")


def test_graph_simulator_runs_as_a_process() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sortie_simulators", "graph", "--port", str(port), "--seed-demo"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        line = wait_for_line(proc, re.compile(rb"listening on http://127\.0\.0\.1:\d+"), 20)
        assert line == f"listening on http://127.0.0.1:{port}".encode()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            user = client.get(f"/v1.0/users/{ALICE.upn}", headers={"Authorization": "Bearer t"})
            assert user.status_code == 200
            assert user.json()["id"] == ALICE.graph_id
            assert client.get(f"/v1.0/users/{ALICE.upn}").status_code == 401
            revoked = client.post(
                f"/v1.0/users/{ALICE.graph_id}/revokeSignInSessions",
                headers={"Authorization": "Bearer t"},
            )
            assert revoked.json()["value"] is True
            assert client.get(f"/_sim/users/{ALICE.upn}").json()["revocation_count"] == 1
    finally:
        proc.terminate()
        try:
            _, rest = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, rest = proc.communicate()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert b"Traceback" not in rest
    assert b"ERROR" not in rest


def test_parser_reads_every_simulator_options() -> None:
    parser = build_parser()
    g = parser.parse_args(
        ["graph", "--latency-ms", "20", "--error-rate", "0.1", "--throttle-writes-per-s", "50"]
    )
    assert (g.port, g.host, g.latency_ms, g.error_rate, g.throttle_writes_per_s) == (
        DEFAULT_PORTS["graph"],
        "127.0.0.1",
        20.0,
        0.1,
        50.0,
    )
    c = parser.parse_args(
        ["cas", "--entapps-url", "http://e:1", "--actuator-user", "u", "--actuator-password", "p"]
    )
    assert (c.entapps_url, c.actuator_user, c.actuator_password) == ("http://e:1", "u", "p")
    e = parser.parse_args(
        ["entapps", "--app", "esper:cas_slo", "--app", "ism:oidc_bcl", "--fail-app", "esper"]
    )
    assert e.apps == [("esper", "cas_slo"), ("ism", "oidc_bcl")]
    assert e.fail_apps == ["esper"]
    w = parser.parse_args(["workstations", "--hosts", "5", "--seed-demo", "--port", "0"])
    assert (w.hosts, w.seed_demo, w.port) == (5, True, 0)
    app = build_app(w)
    assert sorted(app.state.sim.hosts) == [
        "pc-0001",
        "pc-0002",
        "pc-0003",
        "pc-0004",
        "pc-0005",
        "pc-101",
        "pc-102",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ldap"],
        ["graph", "--error-rate", "1.5"],
        ["graph", "--latency-ms", "-1"],
        ["entapps", "--app", "esper"],
        ["entapps", "--app", "esper:saml"],
    ],
)
def test_parser_refuses_bad_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
