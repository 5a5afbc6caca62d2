"""`sortie agent-acl HOST…`: the Redis ACL users of workstation agents.

Prints one `ACL SETUSER` command per host (the password appears only as its SHA-256),
writes each password to a file only its owner can read, and with `--apply` runs the
commands on the Redis server (warning when its `default` user is still open). Hosts come
from the command line and/or `--hosts-file` (one a line, `#` comments). The agent then
connects with `SORTIE_AGENT_REDIS_URL` =
`redis://sortie-agent-<host>:<password>@<redis host>:<port>/0`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from sortie_core.acl import new_password, password_hash, setuser_command
from sortie_core.streams import valid_host

from .render import redact_url


def password_file(path: Path) -> tuple[str, bool]:
    """The password in `path`, created (owner-only) when missing; and whether it was."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    password = new_password()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(password + "\n")
    return password, True


def read_hosts(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [h for h in (line.split("#", 1)[0].strip() for line in lines) if h]


def default_is_open(client: Any) -> bool:
    """Whether the server's `default` user still lets anyone in (it should be off)."""
    info = client.acl_getuser("default")
    return bool(info) and "on" in [_s(f) for f in info.get("flags", [])]


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def agent_passwords(hosts: list[str], workdir: Path, one_file: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for host in hosts:
        path = Path(one_file) if one_file else workdir / "agents" / f"{host}.password"
        password, _ = password_file(path)
        if not password:
            raise ValueError(f"{path} is empty")
        out[host] = password
    return out


def _hosts(args: argparse.Namespace) -> list[str] | None:
    """The hosts named on the command line and in --hosts-file; None once said why not."""
    hosts = [h.strip().lower() for h in args.host]
    if args.hosts_file:
        hosts += [h.lower() for h in read_hosts(Path(args.hosts_file))]
    if not hosts:
        print("sortie: give at least one HOST or --hosts-file", file=sys.stderr)
        return None
    bad = [h for h in hosts if not valid_host(h)]
    if bad:
        print(
            f"sortie: {bad[0]!r}: HOST must be a plain label: letters, digits, '-' and '_'",
            file=sys.stderr,
        )
        return None
    if args.password_file and len(hosts) > 1:
        print("sortie: --password-file is for one HOST only", file=sys.stderr)
        return None
    return hosts


def cmd_agent_acl(args: argparse.Namespace, workdir: Path) -> int:
    hosts = _hosts(args)
    if hosts is None:
        return 2
    commands = []
    for host in dict.fromkeys(hosts):
        path = Path(args.password_file or workdir / "agents" / f"{host}.password")
        password, created = password_file(path)
        if not password:
            print(f"sortie: {path} is empty", file=sys.stderr)
            return 1
        command = setuser_command(host, password_hash(password))
        commands.append(command)
        print(shlex.join(command))
        print(f"# password {'written to' if created else 'read from'} {path} (owner-only)")
    if not args.apply:
        return 0
    url = args.redis_url or os.environ.get("SORTIE_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        print("sortie: --apply needs --redis-url or SORTIE_REDIS_URL", file=sys.stderr)
        return 2
    return _apply(url, commands)


def _apply(url: str, commands: list[list[str]]) -> int:
    """Run the ACL SETUSER commands on the server at `url`, then ACL SAVE."""
    import redis

    try:
        client = redis.Redis.from_url(url)
        if default_is_open(client):
            print(
                "sortie: WARNING: the Redis `default` user is on: anyone who reaches the"
                " server bypasses these ACLs (see `sortie redis-acl`)",
                file=sys.stderr,
            )
        with client.pipeline(transaction=True) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute()
        saved = _acl_save(client)
        client.close()
    except redis.RedisError as exc:
        print(f"sortie: {redact_url(url)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(str(c[2]) for c in commands)
    print(f"# applied on {redact_url(url)}: {names}")
    if not saved:
        print(
            "sortie: WARNING: the server has no ACL file (aclfile): these users are lost at"
            " its next restart",
            file=sys.stderr,
        )
    return 0


def _acl_save(client: Any) -> bool:
    """Persist the users in the server's ACL file; False when it has none."""
    import redis

    try:
        client.execute_command("ACL", "SAVE")
    except redis.ResponseError:
        return False
    return True


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    acl = sub.add_parser(
        "agent-acl", help="print (or apply) the Redis ACL users of workstation agents"
    )
    acl.add_argument("host", nargs="*", help="workstation host names, as the agents report them")
    acl.add_argument("--hosts-file", help="more host names, one a line")
    acl.add_argument(
        "--password-file", help="read the password here, or create it (default .sortie/agents/)"
    )
    acl.add_argument("--apply", action="store_true", help="run ACL SETUSER on the Redis server")
    acl.add_argument("--redis-url", help="admin connection (default $SORTIE_REDIS_URL)")
    return acl
