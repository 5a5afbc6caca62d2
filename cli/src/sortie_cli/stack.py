"""`sortie up`: the whole stack on one machine, each part its own process.

It uses `REDIS_URL` when set, otherwise starts its own `redis-server` on a free port; it
starts the protocol simulators (Microsoft Graph, CAS, ENT applications, workstations)
unless real endpoints are configured, then the orchestrator, the workers and two demo
workstation agents (`stack_plan`). This module starts them in order, restarts those that
die and stops them. The end-to-end tests start the stack through this same class.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import stack_plan
from .procs import Proc, free_port, redis_ping
from .stack_files import STACK_FILE, load_stack_file, write_stack_file
from .stack_plan import StackError

__all__ = ["Proc", "Stack", "StackError", "free_port", "load_stack_file"]

DEMO_AGENTS = ("pc-101", "pc-102")

# Back-off before restarting a process that died, by restarts in a row.
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0


@dataclass
class Stack:
    workdir: Path
    api_port: int = 8080
    redis_url: str | None = None
    token: str | None = None
    token_generated: bool = field(init=False, default=False)
    agents: tuple[str, ...] = DEMO_AGENTS
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # Shorter timers make the demo and the tests snappy; production uses the defaults.
    agent_heartbeat_s: float = 2.0
    # How the m365-worker finds a user named by ENT id only (SORTIE_M365_IDENTITY_LOOKUPS,
    # e.g. "onPremisesSamAccountName={user_id}"); None keeps the environment's value.
    m365_identity_lookups: str | None = None
    # Latency of every simulator call (bench/e2e.py --latency); 0: none.
    sim_latency_ms: float = 0.0
    procs: list[Proc] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    # One Redis URL per process (its own ACL user) when the stack runs its own Redis.
    redis_users: dict[str, str] = field(default_factory=dict)
    # How to sign in to the console (console_sso.py), for the start-up banner.
    console_banner: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.token = self.token or self.base_env.get("SORTIE_DEV_TOKEN") or None
        self.token_generated = self.token is None
        if self.token is None:
            self.token = secrets.token_urlsafe(32)
        self.redis_url = self.redis_url or self.base_env.get("REDIS_URL") or None

    def plan(self) -> list[Proc]:
        self.procs = stack_plan.plan(self)
        return self.procs

    # -- running ------------------------------------------------------------------------
    def start(self, timeout: float = 60.0, on_ready: Any = None) -> None:
        if not self.procs:
            self.plan()
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        # Redis and the simulators first, then the services that need them.
        first = [p for p in self.procs if p.name == "redis" or p.name.startswith("sim-")]
        rest = [p for p in self.procs if p not in first]
        for group in (first, rest):
            for proc in group:
                proc.start()
            for proc in group:
                self._wait_ready(proc, deadline)
                if on_ready:
                    on_ready(proc)
        self._write_stack_file()

    def _wait_ready(self, proc: Proc, deadline: float) -> None:
        while True:
            if not proc.alive():
                raise StackError(f"{proc.name} exited during start-up:\n{proc.log_tail()}")
            if proc.name == "redis":
                if redis_ping(self.redis_url or ""):
                    return
            elif proc.ready_url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(proc.ready_url, timeout=1.0).status_code == 200:
                        return
            if time.monotonic() > deadline:
                raise StackError(f"{proc.name} not ready in time:\n{proc.log_tail()}")
            time.sleep(0.1)

    def _write_stack_file(self) -> None:
        data = {
            "urls": self.urls,
            "token": self.token,
            "upn_domain": "example.org",
            "pids": {p.name: p.popen.pid for p in self.procs if p.popen},
        }
        write_stack_file(self.workdir, data)

    def dead(self) -> list[Proc]:
        return [p for p in self.procs if p.popen is not None and not p.alive()]

    def supervise(self, say: Callable[[str], None]) -> list[Proc]:
        """Restart each process that died, after a back-off that grows while it keeps
        dying (reset once it ran `STABLE_AFTER_S`), saying so; returns those restarted."""
        now = time.monotonic()
        restarted: list[Proc] = []
        for proc in self.dead():
            if proc.restart_at is None:
                if now - proc.started_at > STABLE_AFTER_S:
                    proc.failures = 0
                delay = RESTART_BACKOFF_S[min(proc.failures, len(RESTART_BACKOFF_S) - 1)]
                proc.failures += 1
                proc.restart_at = now + delay
                code = proc.popen.returncode if proc.popen else None
                say(
                    f"sortie up: {proc.name} exited (code {code}); restarting it in {delay:g}s"
                    f" (restart {proc.failures}). Last lines of its log:\n{proc.log_tail(10)}"
                )
            elif now >= proc.restart_at:
                proc.restart_at = None
                proc.start()
                restarted.append(proc)
                say(f"sortie up: {proc.name} restarted")
        if restarted:
            self._write_stack_file()
        return restarted

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM in reverse start order (services finish in-flight work), then kill."""
        for proc in reversed(self.procs):
            if proc.alive() and proc.popen is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
                if proc.name in ("redis",) or proc.name.startswith("sim-"):
                    continue
                proc.reap(timeout)
        for proc in reversed(self.procs):
            proc.reap(timeout)
        with contextlib.suppress(OSError):
            (self.workdir / STACK_FILE).unlink()
