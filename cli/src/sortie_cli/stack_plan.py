"""Which processes `sortie up` runs and with which settings (nothing is started here).

Its own `redis-server` unless `REDIS_URL` is set; a simulator for each peer that has no
real endpoint configured (Microsoft Graph, CAS, ENT applications, workstations); then the
orchestrator, the workers and, with the workstation simulator, the demo agents.
"""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING

from sortie_core.acl import agent_user
from sortie_core.service_acl import ADMIN, ENT, M365, ORCHESTRATOR

from .console_sso import plan_console_sso
from .procs import Proc, free_port, port_is_free
from .stack_files import demo_registry, oidc_signing_key, write_redis_acl

if TYPE_CHECKING:
    from .stack import Stack

# Simulator -> the setting that, when set, points at a real peer instead.
SIMULATED_BY_DEFAULT = (
    ("graph", "SORTIE_M365_GRAPH_URL"),
    ("cas", "SORTIE_ENT_CAS_URL"),
    ("entapps", "SORTIE_ENT_REGISTRY_PATH"),
    ("workstations", "SORTIE_AGENT_SIM_URL"),
)
READY_PATH = {
    "graph": "/_sim/stats",
    "cas": "/_sim/tickets",
    "entapps": "/_sim/apps",
    "workstations": "/hosts",
}


class StackError(RuntimeError):
    pass


def child_env(stack: Stack, **extra: str) -> dict[str, str]:
    """The environment of a child process: the caller's, without the dev token."""
    env = {k: v for k, v in stack.base_env.items() if not k.startswith("SORTIE_")}
    env.update(
        {
            k: v
            for k, v in stack.base_env.items()
            if k.startswith("SORTIE_") and k != "SORTIE_DEV_TOKEN"
        }
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def python_proc(
    stack: Stack, name: str, module: str, args: list[str], ready: str | None, **env: str
) -> Proc:
    return Proc(
        name=name,
        argv=[sys.executable, "-m", module, *args],
        env=child_env(stack, **env),
        ready_url=ready,
        log_path=stack.workdir / "logs" / f"{name}.log",
    )


def plan(stack: Stack) -> list[Proc]:
    procs: list[Proc] = []
    if stack.redis_url is None:
        procs.append(_redis(stack))
    stack.urls["redis"] = stack.redis_url or ""
    configured = stack.base_env
    sims = {sim: free_port() for sim, key in SIMULATED_BY_DEFAULT if not configured.get(key)}
    sim_url = {name: f"http://127.0.0.1:{port}" for name, port in sims.items()}
    if stack.api_port == 0 or not port_is_free(stack.api_port):
        stack.api_port = free_port()
    api = f"http://127.0.0.1:{stack.api_port}"
    procs += _simulators(stack, sims, sim_url, api)
    stack.urls["api"] = api
    console_env = _console(stack, sim_url, api, procs)
    procs.append(_orchestrator(stack, api, console_env))
    procs.append(_m365_worker(stack, sim_url))
    procs.append(_ent_worker(stack, sim_url, api))
    if "workstations" in sim_url:
        procs += _agents(stack, sim_url["workstations"])
    return procs


def _redis(stack: Stack) -> Proc:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed and REDIS_URL is not set")
    port = free_port()
    data = stack.workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    acl, users = write_redis_acl(stack.workdir, port, list(stack.agents))
    stack.redis_users.update(users)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    argv += ["--aclfile", str(acl)]
    stack.redis_url = stack.redis_users.get(ADMIN, f"redis://127.0.0.1:{port}/0")
    return Proc("redis", argv, child_env(stack), None, stack.workdir / "logs" / "redis.log")


def _simulators(
    stack: Stack, sims: dict[str, int], sim_url: dict[str, str], api: str
) -> list[Proc]:
    procs = []
    for name, port in sims.items():
        extra = (
            ["--entapps-url", sim_url["entapps"]] if name == "cas" and "entapps" in sim_url else []
        )
        if name == "entapps":
            # Its oidc_bcl apps verify logout tokens against the orchestrator's JWKS.
            extra = ["--jwks-url", f"{api}/.well-known/jwks.json"]
        if stack.sim_latency_ms:
            extra = [*extra, "--latency-ms", str(stack.sim_latency_ms)]
        procs.append(
            python_proc(
                stack,
                f"sim-{name}",
                "sortie_simulators",
                [name, "--port", str(port), "--seed-demo", *extra],
                sim_url[name] + READY_PATH[name],
            )
        )
        stack.urls[f"sim_{name}"] = sim_url[name]
    return procs


def _redis_env(stack: Stack, user: str) -> dict[str, str]:
    return {"SORTIE_REDIS_URL": stack.redis_users.get(user, stack.redis_url or "")}


def _console(stack: Stack, sim_url: dict[str, str], api: str, procs: list[Proc]) -> dict[str, str]:
    """The console's demo sign-in (console_sso.py): the OpenID provider simulator, and
    the orchestrator's setting that names it and the CAS simulator."""
    port = free_port()
    oidc = f"http://127.0.0.1:{port}"
    plan = plan_console_sso(stack.base_env, api, sim_url.get("cas"), oidc)
    if plan.orchestrator_env:
        argv = ["oidc", "--port", str(port), "--seed-demo"]
        ready = f"{oidc}/.well-known/openid-configuration"
        sim = python_proc(stack, "sim-oidc", "sortie_simulators", argv, ready, **plan.oidc_env)
        procs.append(sim)
        stack.urls["sim_oidc"] = oidc
        stack.urls["console"] = f"{api}/ui/"
    stack.console_banner = plan.banner
    return plan.orchestrator_env


def _orchestrator(stack: Stack, api: str, console_env: dict[str, str]) -> Proc:
    return python_proc(
        stack,
        "orchestrator",
        "sortie_orchestrator",
        [],
        f"{api}/readyz",
        SORTIE_ORCHESTRATOR_HTTP_PORT=str(stack.api_port),
        SORTIE_DEV_TOKEN=stack.token or "",
        # The display names of the applications, for the pages.
        SORTIE_ORCHESTRATOR_ENT_REGISTRY_PATH=str(stack.workdir / "ent-registry.yaml"),
        **console_env,
        **_redis_env(stack, ORCHESTRATOR),
    )


def _m365_worker(stack: Stack, sim_url: dict[str, str]) -> Proc:
    port = free_port()
    env = {"SORTIE_M365_HTTP_PORT": str(port), **_redis_env(stack, M365)}
    if "graph" in sim_url:
        env["SORTIE_M365_GRAPH_URL"] = sim_url["graph"]
        env["SORTIE_M365_GRAPH_TOKEN"] = "simulator-token"
        if not stack.base_env.get("SORTIE_M365_EXCHANGE_URL"):
            # The Graph simulator also serves Exchange's InvokeCommand (Set-/Get-CASMailbox).
            env["SORTIE_M365_EXCHANGE_URL"] = sim_url["graph"]
    if stack.m365_identity_lookups is not None:
        env["SORTIE_M365_IDENTITY_LOOKUPS"] = stack.m365_identity_lookups
    stack.urls["m365_metrics"] = f"http://127.0.0.1:{port}/metrics"
    ready = f"http://127.0.0.1:{port}/readyz"
    return python_proc(stack, "m365-worker", "sortie_m365", [], ready, **env)


def _ent_worker(stack: Stack, sim_url: dict[str, str], api: str) -> Proc:
    port = free_port()
    # The signing key is re-published every 5 s (a third of its TTL): it comes back
    # within 5 s after Redis lost its data.
    env = {
        "SORTIE_ENT_HTTP_PORT": str(port),
        "SORTIE_ENT_OIDC_KEY_TTL_S": "15",
        **_redis_env(stack, ENT),
    }
    if "cas" in sim_url:
        env["SORTIE_ENT_CAS_URL"] = sim_url["cas"] + "/cas"
    if not stack.base_env.get("SORTIE_ENT_OIDC_SIGNING_KEY_PATH"):
        env["SORTIE_ENT_OIDC_SIGNING_KEY_PATH"] = str(oidc_signing_key(stack.workdir))
        env["SORTIE_ENT_OIDC_ISSUER"] = api
    if "entapps" in sim_url:
        env["SORTIE_ENT_REGISTRY_PATH"] = str(demo_registry(stack.workdir, sim_url["entapps"]))
        # The demo `http` application accepts any bearer token.
        env["SORTIE_DEMO_APP_TOKEN"] = "demo-app-token"
    stack.urls["ent_metrics"] = f"http://127.0.0.1:{port}/metrics"
    ready = f"http://127.0.0.1:{port}/readyz"
    return python_proc(stack, "ent-worker", "sortie_ent", [], ready, **env)


def _agents(stack: Stack, workstations_url: str) -> list[Proc]:
    procs = []
    for host in stack.agents:
        port = free_port()
        procs.append(
            python_proc(
                stack,
                f"agent-{host}",
                "sortie_workstation",
                [],
                f"http://127.0.0.1:{port}/readyz",
                SORTIE_AGENT_HOST=host,
                SORTIE_AGENT_BACKEND="simulated",
                SORTIE_AGENT_SIM_URL=workstations_url,
                SORTIE_AGENT_HEARTBEAT_S=str(stack.agent_heartbeat_s),
                SORTIE_AGENT_HTTP_PORT=str(port),
                **_redis_env(stack, agent_user(host)),
            )
        )
        stack.urls[f"agent_{host}_metrics"] = f"http://127.0.0.1:{port}/metrics"
    return procs
