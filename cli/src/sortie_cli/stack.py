"""`sortie up`: the whole stack on one machine, each part its own process.

It uses `REDIS_URL` when set, otherwise starts its own `redis-server` on a free port; it
starts the protocol simulators (Microsoft Graph, CAS, ENT applications, workstations)
unless real endpoints are configured, then the orchestrator, the workers and two demo
workstation agents. The end-to-end tests start the stack through this same class.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from sortie_core.acl import agent_user
from sortie_core.service_acl import ADMIN, ENT, M365, ORCHESTRATOR

DEMO_AGENTS = ("pc-101", "pc-102")
STACK_FILE = "stack.json"


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # Restarts in a row without a stable run, and when the next one is due.
    failures: int = 0
    restart_at: float | None = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# Back-off before restarting a process that died, by restarts in a row.
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0


class StackError(RuntimeError):
    pass


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

    # -- planning -----------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.base_env.items() if not k.startswith("SORTIE_")}
        env.update(
            {
                k: v
                for k, v in self.base_env.items()
                if k.startswith("SORTIE_") and k != "SORTIE_DEV_TOKEN"
            }
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def _py(self, name: str, module: str, args: list[str], ready: str | None, **env: str) -> Proc:
        return Proc(
            name=name,
            argv=[sys.executable, "-m", module, *args],
            env=self._env(**env),
            ready_url=ready,
            log_path=self.workdir / "logs" / f"{name}.log",
        )

    def plan(self) -> list[Proc]:
        procs: list[Proc] = []
        configured = self.base_env
        if self.redis_url is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise StackError("redis-server is not installed and REDIS_URL is not set")
            port = free_port()
            data = self.workdir / "redis"
            data.mkdir(parents=True, exist_ok=True)
            procs.append(
                Proc(
                    "redis",
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(data),
                        "--save",
                        "",
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "everysec",
                        "--aclfile",
                        str(self._acl_file(port)),
                    ],
                    self._env(),
                    None,
                    self.workdir / "logs" / "redis.log",
                )
            )
            self.redis_url = self.redis_users.get(ADMIN, f"redis://127.0.0.1:{port}/0")
        self.urls["redis"] = self.redis_url

        sims: dict[str, int] = {}
        for sim, setting in (
            ("graph", "SORTIE_M365_GRAPH_URL"),
            ("cas", "SORTIE_ENT_CAS_URL"),
            ("entapps", "SORTIE_ENT_REGISTRY_PATH"),
            ("workstations", "SORTIE_AGENT_SIM_URL"),
        ):
            if not configured.get(setting):
                sims[sim] = free_port()
        sim_url = {name: f"http://127.0.0.1:{port}" for name, port in sims.items()}
        if self.api_port == 0 or not port_is_free(self.api_port):
            self.api_port = free_port()
        api = f"http://127.0.0.1:{self.api_port}"
        ready_path = {
            "graph": "/_sim/stats",
            "cas": "/_sim/tickets",
            "entapps": "/_sim/apps",
            "workstations": "/hosts",
        }
        for name, port in sims.items():
            extra = (
                ["--entapps-url", sim_url["entapps"]]
                if name == "cas" and "entapps" in sim_url
                else []
            )
            if name == "entapps":
                # Its oidc_bcl apps verify logout tokens against the orchestrator's JWKS.
                extra = ["--jwks-url", f"{api}/.well-known/jwks.json"]
            if self.sim_latency_ms:
                extra = [*extra, "--latency-ms", str(self.sim_latency_ms)]
            procs.append(
                self._py(
                    f"sim-{name}",
                    "sortie_simulators",
                    [name, "--port", str(port), "--seed-demo", *extra],
                    sim_url[name] + ready_path[name],
                )
            )
            self.urls[f"sim_{name}"] = sim_url[name]

        self.urls["api"] = api
        console_env = self._plan_console(sim_url, api, procs)

        def common(user: str) -> dict[str, str]:
            return {"SORTIE_REDIS_URL": self.redis_users.get(user, self.redis_url or "")}

        procs.append(
            self._py(
                "orchestrator",
                "sortie_orchestrator",
                [],
                f"{api}/readyz",
                SORTIE_ORCHESTRATOR_HTTP_PORT=str(self.api_port),
                SORTIE_DEV_TOKEN=self.token or "",
                # The display names of the applications, for the pages.
                SORTIE_ORCHESTRATOR_ENT_REGISTRY_PATH=str(self.workdir / "ent-registry.yaml"),
                **console_env,
                **common(ORCHESTRATOR),
            )
        )
        m365_port = free_port()
        m365_env = {"SORTIE_M365_HTTP_PORT": str(m365_port), **common(M365)}
        if "graph" in sim_url:
            m365_env["SORTIE_M365_GRAPH_URL"] = sim_url["graph"]
            m365_env["SORTIE_M365_GRAPH_TOKEN"] = "simulator-token"
            if not configured.get("SORTIE_M365_EXCHANGE_URL"):
                # The Graph simulator also serves Exchange's InvokeCommand (Set-/Get-CASMailbox).
                m365_env["SORTIE_M365_EXCHANGE_URL"] = sim_url["graph"]
        if self.m365_identity_lookups is not None:
            m365_env["SORTIE_M365_IDENTITY_LOOKUPS"] = self.m365_identity_lookups
        procs.append(
            self._py(
                "m365-worker", "sortie_m365", [], f"http://127.0.0.1:{m365_port}/readyz", **m365_env
            )
        )
        self.urls["m365_metrics"] = f"http://127.0.0.1:{m365_port}/metrics"
        ent_port = free_port()
        # The signing key is re-published every 5 s (a third of its TTL): it comes back
        # within 5 s after Redis lost its data.
        ent_env = {
            "SORTIE_ENT_HTTP_PORT": str(ent_port),
            "SORTIE_ENT_OIDC_KEY_TTL_S": "15",
            **common(ENT),
        }
        if "cas" in sim_url:
            ent_env["SORTIE_ENT_CAS_URL"] = sim_url["cas"] + "/cas"
        if not configured.get("SORTIE_ENT_OIDC_SIGNING_KEY_PATH"):
            ent_env["SORTIE_ENT_OIDC_SIGNING_KEY_PATH"] = str(self._oidc_signing_key())
            ent_env["SORTIE_ENT_OIDC_ISSUER"] = api
        if "entapps" in sim_url:
            ent_env["SORTIE_ENT_REGISTRY_PATH"] = str(self._demo_registry(sim_url["entapps"]))
            # The demo `http` application accepts any bearer token.
            ent_env["SORTIE_DEMO_APP_TOKEN"] = "demo-app-token"
        procs.append(
            self._py(
                "ent-worker", "sortie_ent", [], f"http://127.0.0.1:{ent_port}/readyz", **ent_env
            )
        )
        self.urls["ent_metrics"] = f"http://127.0.0.1:{ent_port}/metrics"
        if "workstations" in sim_url:
            for host in self.agents:
                port = free_port()
                procs.append(
                    self._py(
                        f"agent-{host}",
                        "sortie_workstation",
                        [],
                        f"http://127.0.0.1:{port}/readyz",
                        SORTIE_AGENT_HOST=host,
                        SORTIE_AGENT_BACKEND="simulated",
                        SORTIE_AGENT_SIM_URL=sim_url["workstations"],
                        SORTIE_AGENT_HEARTBEAT_S=str(self.agent_heartbeat_s),
                        SORTIE_AGENT_HTTP_PORT=str(port),
                        **common(agent_user(host)),
                    )
                )
                self.urls[f"agent_{host}_metrics"] = f"http://127.0.0.1:{port}/metrics"
        self.procs = procs
        return procs

    def _plan_console(self, sim_url: dict[str, str], api: str, procs: list[Proc]) -> dict[str, str]:
        """The console's demo sign-in (console_sso.py): the OpenID provider simulator, and
        the orchestrator's setting that names it and the CAS simulator."""
        from .console_sso import plan_console_sso

        port = free_port()
        oidc = f"http://127.0.0.1:{port}"
        plan = plan_console_sso(self.base_env, api, sim_url.get("cas"), oidc)
        if plan.orchestrator_env:
            argv = ["oidc", "--port", str(port), "--seed-demo"]
            ready = f"{oidc}/.well-known/openid-configuration"
            procs.append(self._py("sim-oidc", "sortie_simulators", argv, ready, **plan.oidc_env))
            self.urls["sim_oidc"] = oidc
            self.urls["console"] = f"{api}/ui/"
        self.console_banner = plan.banner
        return plan.orchestrator_env

    def _acl_file(self, port: int) -> Path:
        """Its own Redis runs with `default` off and one user per process, as in
        production, so whatever runs on the stack exercises the ACLs."""
        from sortie_core.service_acl import acl_file

        from .agent_acl import agent_passwords
        from .redis_acl import service_passwords, write_acl_file

        passwords = service_passwords(self.workdir / "redis-users")
        agents = agent_passwords(list(self.agents), self.workdir, None)
        for user, password in passwords.items():
            self.redis_users[user] = _url(port, user, password)
        for host, password in agents.items():
            self.redis_users[agent_user(host)] = _url(port, agent_user(host), password)
        path = self.workdir / "redis" / "users.acl"
        write_acl_file(path, acl_file(passwords, agents))
        return path

    def _oidc_signing_key(self) -> Path:
        """The ENT worker's logout-token signing key, made once per workdir (owner-only)."""
        from sortie_core.jwks import generate_key_pem

        path = self.workdir / "ent-oidc-signing-key.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(generate_key_pem())
        return path

    def _demo_registry(self, entapps_url: str) -> Path:
        from sortie_simulators.demo import DEMO_APPS

        apps: list[dict[str, Any]] = []
        for name, protocol in DEMO_APPS:
            base = f"{entapps_url}/{name}/"
            app: dict[str, Any] = {"name": name, "protocol": protocol, "timeout_s": 5}
            app["display_name"] = name.capitalize() if len(name) > 3 else name.upper()
            app["service_urls"] = [base]
            if protocol == "http":
                app.update(
                    logout_url=f"{entapps_url}/{name}/api/logout",
                    method="POST",
                    body_template='{"user": "{cas_username}"}',
                    token_env="SORTIE_DEMO_APP_TOKEN",
                )
            elif protocol == "oidc_bcl":
                app.update(
                    client_id=name,
                    backchannel_logout_uri=f"{entapps_url}/{name}/oidc/backchannel-logout",
                )
            apps.append(app)
        path = self.workdir / "ent-registry.yaml"
        path.write_text(yaml.safe_dump({"applications": apps}, sort_keys=False))
        return path

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
                if _redis_ping(self.redis_url or ""):
                    return
            elif proc.ready_url is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(proc.ready_url, timeout=1.0).status_code == 200:
                        return
            if time.monotonic() > deadline:
                raise StackError(f"{proc.name} not ready in time:\n{proc.log_tail()}")
            time.sleep(0.1)

    def _write_stack_file(self) -> None:
        path = self.workdir / STACK_FILE
        data = {
            "urls": self.urls,
            "token": self.token,
            "upn_domain": "example.org",
            "pids": {p.name: p.popen.pid for p in self.procs if p.popen},
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)

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
                self._reap(proc, timeout)
        for proc in reversed(self.procs):
            self._reap(proc, timeout)
        with contextlib.suppress(OSError):
            (self.workdir / STACK_FILE).unlink()

    @staticmethod
    def _reap(proc: Proc, timeout: float) -> None:
        if proc.popen is None:
            return
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(5)


def _url(port: int, user: str, password: str) -> str:
    return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/0"


def _redis_ping(url: str) -> bool:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), 0.5
        ) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def load_stack_file(workdir: Path) -> dict[str, Any] | None:
    path = workdir / STACK_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data
