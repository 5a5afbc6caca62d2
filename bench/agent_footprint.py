"""Footprint of one idle workstation agent: resident memory and CPU between heartbeats.

Starts its own redis-server, the workstations simulator and one agent
(`python -m sortie_workstation`, simulated backend), all on 127.0.0.1; lets it settle,
then reads /proc over a window of a few heartbeats. Runs twice: with the shared worker
defaults (XREADGROUP blocks 100 ms, claim loop every 1 s) and with the agent's defaults.

    .venv/bin/python bench/agent_footprint.py [--window 30] [--heartbeat 10] [--python PY]

`--python` runs the agent with another interpreter, e.g. a virtual environment holding
only `libs/sortie-core` and the agent, as a workstation would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sortie_testkit.redis_server import RedisServer, free_port  # noqa: E402

# This venv holds every service; msgraph-sdk pulls in the OpenTelemetry SDK, which redis-py
# then imports (~4 MB). A workstation installs the agent alone: hide what it would not have.
LAUNCH = (
    "import sys, runpy\n"
    "for name in ('opentelemetry',):\n"
    "    sys.modules[name] = None\n"
    "runpy.run_module('sortie_workstation', run_name='__main__', alter_sys=True)\n"
)
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout_s}s")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            out[key] = int(value.split()[0])
    return out


def measure(
    label: str, env: dict[str, str], window_s: float, settle_s: float, python: str | None
) -> None:
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="sortie-agent-")) / "agent.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [python, "-m", "sortie_workstation"] if python else [sys.executable, "-c", LAUNCH],
        env={**os.environ, **env, "SORTIE_AGENT_HTTP_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        time.sleep(settle_s)
        cpu0, st0, t0 = cpu_s(proc.pid), status(proc.pid), time.monotonic()
        time.sleep(window_s)
        cpu1, st1, t1 = cpu_s(proc.pid), status(proc.pid), time.monotonic()
        elapsed = t1 - t0
        wakeups = (st1["voluntary_ctxt_switches"] - st0["voluntary_ctxt_switches"]) / elapsed
        print(
            f"{label:<34} RSS {st1['VmRSS'] / 1024:6.1f} MB (peak {st1['VmHWM'] / 1024:5.1f} MB)"
            f"   CPU {100 * (cpu1 - cpu0) / elapsed:5.2f} % of a core"
            f" ({cpu1 - cpu0:.2f} s in {elapsed:.0f} s)   wake-ups {wakeups:6.1f}/s"
        )
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        log_path.unlink()
        log_path.parent.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="agent heartbeat (s)")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--python", help="interpreter of the agent (default: this venv's)")
    args = parser.parse_args()
    redis = RedisServer().start()
    sim_port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sortie_simulators",
            "workstations",
            "--port",
            str(sim_port),
            "--seed-demo",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sim_url = f"http://127.0.0.1:{sim_port}"
        wait_http(f"{sim_url}/hosts")
        host = httpx.get(f"{sim_url}/hosts").json()[0]
        base = {
            "SORTIE_REDIS_URL": redis.url,
            "SORTIE_AGENT_HOST": host,
            "SORTIE_AGENT_SIM_URL": sim_url,
            "SORTIE_AGENT_HEARTBEAT_S": str(args.heartbeat),
            "SORTIE_LOG_LEVEL": "WARNING",
        }
        print(
            f"idle agent of {host}, heartbeat {args.heartbeat:g} s, window {args.window:g} s,"
            f" python {args.python or sys.executable + ' (OpenTelemetry hidden)'}"
        )
        measure(
            "worker defaults (100 ms / 1 s)",
            {
                **base,
                "SORTIE_AGENT_POLLING_INTERVAL_MS": "100",
                "SORTIE_AGENT_CLAIM_INTERVAL_MS": "1000",
            },
            args.window,
            args.settle,
            args.python,
        )
        measure("agent defaults", base, args.window, args.settle, args.python)
    finally:
        sim.terminate()
        sim.wait(10)
        redis.cleanup()


if __name__ == "__main__":
    main()
