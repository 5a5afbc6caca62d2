"""The Redis ACL user of one workstation agent: the least trusted part of Sortie.

It may read and acknowledge only its own `workstation.<host>` stream (with the agents'
group), append only to its own `agent.results.<host>` and `agent.deadletter.<host>`,
write only its presence record and its own de-duplication keys, add (never remove) a
member of `sortie:agent-hosts`, and publish on its own wake-up channel. It writes no
stream another host writes: Redis cannot limit how an XADD is used, and an entry with
the largest possible id (or `MAXLEN 0`) would block (or empty) a shared stream for every
host. Everything else, such as publishing a logout, reading another host's commands or
reporting on the shared `revocation.completed` stream (which would let it forge another
service's report), is refused by Redis.
Redis 7 selectors (the parenthesised parts) give XADD and SADD their own, narrower keys.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import quote, urlsplit, urlunsplit

from . import streams
from .presence import AGENT_HOSTS, agent_key

# What the agent's broker, claim loop, presence writer and redis-py send.
_COMMANDS = (
    "+ping", "+hello", "+client|setname", "+select",
    "+multi", "+exec", "+discard",
    "+xreadgroup", "+xack", "+xgroup|create", "+xautoclaim", "+xclaim", "+xpending",
    "+exists", "+set", "+hset", "+expire", "+publish",
    # broker.py's de-duplication scripts (GET, SET, DEL and XACK on the keys above).
    "+evalsha", "+eval", "+script|load", "+get", "+del",
)  # fmt: skip


def agent_user(host: str) -> str:
    return f"sortie-agent-{host.lower()}"


def agent_dedupe_prefix(host: str) -> str:
    return f"sortie:seen:{streams.GROUP_WORKSTATION}:{host.lower()}"


def new_password() -> str:
    return secrets.token_urlsafe(32)


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def agent_acl_rules(host: str, password_sha256: str) -> list[str]:
    """Arguments of `ACL SETUSER <agent_user(host)>`; the password only as its hash."""
    stream = streams.workstation_stream(host)
    return [
        "reset",
        "on",
        f"#{password_sha256}",
        "resetchannels",
        f"&{streams.agent_wake_channel(host)}",
        "-@all",
        *_COMMANDS,
        f"~{stream}",
        f"~{agent_key(host)}",
        f"~{agent_dedupe_prefix(host)}:*",
        f"(+xadd ~{streams.agent_results_stream(host)} ~{streams.agent_deadletter_stream(host)})",
        f"(+sadd ~{AGENT_HOSTS})",
    ]


def setuser_command(host: str, password_sha256: str) -> list[str]:
    return ["ACL", "SETUSER", agent_user(host), *agent_acl_rules(host, password_sha256)]


def agent_redis_url(redis_url: str, host: str, password: str) -> str:
    """`redis_url` with the agent's user and password in place of any credentials."""
    parts = urlsplit(redis_url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    auth = f"{quote(agent_user(host), safe='')}:{quote(password, safe='')}"
    return urlunsplit((parts.scheme, f"{auth}@{netloc}", parts.path, parts.query, ""))
