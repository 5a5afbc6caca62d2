"""`sortie redis-acl --out FILE`: the Redis ACL file of every Sortie service user.

Each user's password is read from `<password dir>/<user>.password`, or created there
(owner-only) when missing; the file holds only the passwords' SHA-256. Agents named by
`--hosts-file` get their users too (passwords in `<workdir>/agents/<host>.password`,
shared with `sortie agent-acl`). Point redis-server at the file (`aclfile FILE` in
redis.conf, or `--aclfile FILE`) and give each service its own URL, e.g.
`redis://sortie-orchestrator:<password>@redis:6379/0`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sortie_core.service_acl import SERVICE_USERS, acl_file
from sortie_core.streams import valid_host

from .agent_acl import agent_passwords, password_file, read_hosts


def service_passwords(directory: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for user in SERVICE_USERS:
        password, _ = password_file(directory / f"{user}.password")
        if not password:
            raise ValueError(f"{directory / f'{user}.password'} is empty")
        out[user] = password
    return out


def write_acl_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def cmd_redis_acl(args: argparse.Namespace, workdir: Path) -> int:
    hosts = [h.lower() for h in read_hosts(Path(args.hosts_file))] if args.hosts_file else []
    bad = [h for h in hosts if not valid_host(h)]
    if bad:
        print(f"sortie: {bad[0]!r} is not a plain host label", file=sys.stderr)
        return 2
    directory = Path(args.password_dir or workdir / "redis-users")
    try:
        text = acl_file(service_passwords(directory), agent_passwords(hosts, workdir, None))
    except ValueError as exc:
        print(f"sortie: {exc}", file=sys.stderr)
        return 1
    write_acl_file(Path(args.out), text)
    print(f"# {args.out}: default off; users {', '.join(SERVICE_USERS)}, {len(hosts)} agent(s)")
    print(f"# passwords in {directory} and {workdir / 'agents'} (owner-only)")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    acl = sub.add_parser("redis-acl", help="write the Redis ACL file of Sortie's service users")
    acl.add_argument("--out", required=True, help="the ACL file to write (owner-only)")
    acl.add_argument(
        "--password-dir", help="one <user>.password per user (default .sortie/redis-users/)"
    )
    acl.add_argument("--hosts-file", help="workstation host names, one a line: their users too")
    return acl
