"""One Redis ACL user per service, with the least commands and keys it needs, written as
an ACL file (`aclfile` in redis.conf, or `--aclfile`): users then survive a restart and
`ACL SAVE` works. The `default` user is off, so an anonymous client is refused.

Users (their passwords only as SHA-256 in the file):

    sortie-orchestrator   every Sortie key and stream, the agents' wake-up channels
    sortie-m365-worker    its three command streams, its report stream, its dedupe and
                          rate-limit keys
    sortie-ent-worker     its three command streams, its two report streams, its dedupe
                          keys and the OIDC signing-key records
    sortie-agent-<host>   see `acl.py`
    sortie-admin          operators and `sortie agent-acl --apply` (`+@all`)

Redis 7 evaluates rules left to right: `-@dangerous` after a category takes back KEYS,
FLUSHALL, CONFIG, DEBUG and the like.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import streams
from .acl import agent_acl_rules, agent_user, password_hash

ORCHESTRATOR = "sortie-orchestrator"
M365 = "sortie-m365-worker"
ENT = "sortie-ent-worker"
ADMIN = "sortie-admin"
SERVICE_USERS = (ORCHESTRATOR, M365, ENT, ADMIN)

# What every consumer (broker, claim loop, janitor) sends on the streams it reads.
_READ_STREAMS = (
    "-@all", "+@connection", "+@transaction", "-@dangerous",
    "+xreadgroup", "+xack", "+xgroup|create", "+xgroup|delconsumer",
    "+xautoclaim", "+xclaim", "+xpending", "+xinfo|consumers", "+xinfo|groups",
)  # fmt: skip
# Its dedupe keys, and redis-py's Lua scripts, on keys of its own (a selector).
_OWN_KEYS = "+exists +get +set +del +expire +evalsha +eval +script|load +script|exists"


def _worker(reads: list[str], writes: list[str], own: list[str], extra: str = "") -> list[str]:
    """A worker: stream commands on the streams it reads, XADD only to those it writes,
    key commands only on its own keys, and whether a request exists (a command for a
    request the orchestrator never accepted is refused; the request itself, which holds
    the SSO session, stays unreadable)."""
    return [
        "resetchannels",
        *_READ_STREAMS,
        *(f"~{s}" for s in reads),
        f"(+xadd {' '.join(f'~{s}' for s in writes)})",
        f"({_OWN_KEYS}{extra} {' '.join(own)})",
        "(+exists ~sortie:req:*)",
    ]


def _seen(group: str) -> str:
    return f"~sortie:seen:{group}:*"


def service_rules(user: str) -> list[str]:
    """The ACL rules of a service user, without its password."""
    if user == ORCHESTRATOR:
        return [
            "resetchannels",
            f"&{streams.AGENT_WAKE_PREFIX}*",
            "-@all",
            "+@read", "+@write", "+@stream", "+@hash", "+@set", "+@sortedset", "+@string",
            "+@list", "+@keyspace", "+@scripting", "+@transaction", "+@pubsub",
            "+@connection",
            "-@dangerous", "-@admin",
            "~sortie:*",
            *(f"~{s}" for s in streams.ALL_FIXED_STREAMS),
            f"~{streams.WORKSTATION_PREFIX}*",
            f"~{streams.AGENT_RESULTS_PREFIX}*",
            f"~{streams.AGENT_DEADLETTER_PREFIX}*",
        ]  # fmt: skip
    if user == M365:
        return _worker(
            [
                streams.LOGOUT_REQUESTED,
                streams.OFFBOARD_REQUESTED,
                streams.REVERSAL_REQUESTED,
                streams.PREVIEW_REQUESTED,
            ],
            [streams.REVOCATION_COMPLETED, streams.DEADLETTER, streams.PREVIEW_ANSWERED],
            # Its dedupe keys, the shared Graph quota, its queue's expected wait and
            # Graph's latency (quota.py; the orchestrator reads them).
            [_seen(streams.GROUP_M365), "~sortie:ratelimit:*", "~sortie:m365:*"],
            " +time +hmget +hset +pexpire",  # the rate limiter's script
        )
    if user == ENT:
        return _worker(
            [
                streams.LOGOUT_REQUESTED,
                streams.OFFBOARD_REQUESTED,
                streams.SSO_LOGOUT_REQUESTED,
                streams.PREVIEW_REQUESTED,
            ],
            [
                streams.REVOCATION_COMPLETED,
                streams.SSO_LOGOUT_COMPLETED,
                streams.DEADLETTER,
                streams.PREVIEW_ANSWERED,
            ],
            # The SSO credentials of a logout (credentials.py): the ent-worker only.
            [_seen(streams.GROUP_ENT), "~sortie:oidc:*", "~sortie:cred:*"],
            " +time +hgetall +hget +hset +hdel +scan",  # the signing-key records
        )
    if user == ADMIN:
        return ["allchannels", "+@all", "~*"]
    raise ValueError(f"unknown service user: {user!r}")


def _line(user: str, password: str, rules: Iterable[str]) -> str:
    return " ".join(["user", user, "reset", "on", f"#{password_hash(password)}", *rules])


def acl_file(passwords: Mapping[str, str], agents: Mapping[str, str] | None = None) -> str:
    """The ACL file: `default` off, then each service user of `passwords` (user ->
    password) and each agent of `agents` (host -> password)."""
    # `default` stays off (no connection can be it), but holds every command: Redis
    # replays an AOF's MULTI/EXEC as `default` and re-checks its ACL at EXEC, so with
    # `-@all` every transaction is dropped at restart (redis/redis#14541, fixed after 7.2).
    lines = ["user default off resetchannels allchannels +@all ~*"]
    for user, password in passwords.items():
        lines.append(_line(user, password, service_rules(user)))
    for host, password in (agents or {}).items():
        rules = agent_acl_rules(host, password_hash(password))
        # agent_acl_rules starts with `reset on #<hash>`; the line carries those itself.
        lines.append(_line(agent_user(host), password, rules[3:]))
    return "\n".join(lines) + "\n"
