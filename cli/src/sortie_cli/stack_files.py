"""The files `sortie up` keeps in its workdir.

The Redis ACL file (one user per process), the ENT worker's OIDC signing key, the demo
ENT registry pointing at the applications simulator, and `stack.json`, which tells the
other `sortie` commands where the running stack is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from sortie_core.acl import agent_user
from sortie_core.service_acl import acl_file
from sortie_simulators.demo import DEMO_APPS

from .agent_acl import agent_passwords
from .redis_acl import service_passwords, write_acl_file

STACK_FILE = "stack.json"


def redis_url(port: int, user: str, password: str) -> str:
    return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/0"


def write_redis_acl(workdir: Path, port: int, agents: list[str]) -> tuple[Path, dict[str, str]]:
    """Its own Redis runs with `default` off and one user per process, as in production,
    so whatever runs on the stack exercises the ACLs. Returns the file and each user's URL."""
    passwords = service_passwords(workdir / "redis-users")
    agent_pw = agent_passwords(agents, workdir, None)
    urls = {user: redis_url(port, user, password) for user, password in passwords.items()}
    for host, password in agent_pw.items():
        urls[agent_user(host)] = redis_url(port, agent_user(host), password)
    path = workdir / "redis" / "users.acl"
    write_acl_file(path, acl_file(passwords, agent_pw))
    return path, urls


def oidc_signing_key(workdir: Path) -> Path:
    """The ENT worker's logout-token signing key, made once per workdir (owner-only)."""
    # Imported here: cryptography and redis.asyncio are slow to load for the other commands.
    from sortie_core.jwks import generate_key_pem

    path = workdir / "ent-oidc-signing-key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generate_key_pem())
    return path


def _demo_app(entapps_url: str, name: str, protocol: str) -> dict[str, Any]:
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
    return app


def demo_registry(workdir: Path, entapps_url: str) -> Path:
    """The ENT registry of the demo applications the simulator serves."""
    apps = [_demo_app(entapps_url, name, protocol) for name, protocol in DEMO_APPS]
    path = workdir / "ent-registry.yaml"
    path.write_text(yaml.safe_dump({"applications": apps}, sort_keys=False))
    return path


def write_stack_file(workdir: Path, data: dict[str, Any]) -> None:
    """`stack.json` (owner-only: it holds the API token)."""
    fd = os.open(workdir / STACK_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


def load_stack_file(workdir: Path) -> dict[str, Any] | None:
    path = workdir / STACK_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data
