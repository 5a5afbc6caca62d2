"""`sortie agent-acl HOST`: the Redis ACL user of one workstation agent.

Prints the `ACL SETUSER` command (the password appears only as its SHA-256), writes the
password to a file only its owner can read, and with `--apply` runs the command on the
Redis server. The agent then connects with `SORTIE_AGENT_REDIS_URL` =
`redis://sortie-agent-<host>:<password>@<redis host>:<port>/0`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from sortie_core.acl import agent_user, new_password, password_hash, setuser_command
from sortie_core.streams import valid_host

from .render import redact_url


def _password(path: Path) -> tuple[str, bool]:
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    password = new_password()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    return password, True


def cmd_agent_acl(args: argparse.Namespace, workdir: Path) -> int:
    host = args.host.strip().lower()
    if not valid_host(host):
        print("sortie: HOST must be a plain label: letters, digits, '-' and '_'", file=sys.stderr)
        return 2
    path = Path(args.password_file or workdir / "agents" / f"{host}.password")
    password, created = _password(path)
    if not password:
        print(f"sortie: {path} is empty", file=sys.stderr)
        return 1
    command = setuser_command(host, password_hash(password))
    print(shlex.join(command))
    print(f"# password {'written to' if created else 'read from'} {path} (owner-only)")
    if not args.apply:
        return 0
    url = args.redis_url or os.environ.get("SORTIE_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        print("sortie: --apply needs --redis-url or SORTIE_REDIS_URL", file=sys.stderr)
        return 2
    import redis

    try:
        client = redis.Redis.from_url(url)
        client.execute_command(*command)
        client.close()
    except redis.RedisError as exc:
        print(f"sortie: {redact_url(url)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"# applied on {redact_url(url)}: user {agent_user(host)}")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    acl = sub.add_parser(
        "agent-acl", help="print (or apply) the Redis ACL user of one workstation agent"
    )
    acl.add_argument("host", help="the workstation's host name, as the agent reports it")
    acl.add_argument(
        "--password-file", help="read the password here, or create it (default .sortie/agents/)"
    )
    acl.add_argument("--apply", action="store_true", help="run ACL SETUSER on the Redis server")
    acl.add_argument("--redis-url", help="admin connection (default $SORTIE_REDIS_URL)")
    return acl
