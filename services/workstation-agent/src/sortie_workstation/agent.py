"""One agent: the commands of one host, and that host's presence record.

A class rather than module state, so one process could later host the agents of many
machines (a MultiPoint server, a gateway for a room of thin clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.acl import agent_dedupe_prefix
from sortie_core.broker import Delivery, Subscription
from sortie_core.events import (
    DeadLettered,
    LogoutRequested,
    OffboardRequested,
    RevocationCompleted,
    WorkstationCommandRequested,
)
from sortie_core.presence import PresenceRecord, SessionInfo, wake, write_presence
from sortie_core.steps import RetryPolicy
from sortie_core.tasks import pause

from . import __version__, handlers
from .adapters import SessionBackend, account_name

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class Agent:
    """The agent of one host: its subscription, its presence record and heartbeat."""

    host: str
    backend: SessionBackend
    redis: Redis
    policy: RetryPolicy
    heartbeat_s: float = 10.0
    session_policy: str = "logoff"
    shared_station: bool = False
    group: str | None = None
    version: str = __version__
    clock: Callable[[], float] = time.time
    # Users of the last record written; None until the first one (always announced).
    users: frozenset[str] | None = field(default=None, init=False)
    _presence_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def subscriptions(self) -> list[Subscription]:
        """This host's stream, and nothing else."""
        return [
            Subscription(
                streams.workstation_stream(self.host),
                streams.GROUP_WORKSTATION,
                self.on_command,
                accepts=(LogoutRequested, OffboardRequested, WorkstationCommandRequested),
                on_deadletter=self.on_deadletter,
                publishes=streams.agent_results_stream(self.host),
                # If the wake-up is lost, the orchestrator's periodic re-read still finds
                # the report.
                announce=(streams.agent_wake_channel(self.host), "results"),
                dedupe=True,
                dedupe_prefix=agent_dedupe_prefix(self.host),
                deadletter_stream=streams.agent_deadletter_stream(self.host),
            )
        ]

    async def on_command(
        self,
        event: LogoutRequested | OffboardRequested | WorkstationCommandRequested,
        _: Delivery,
    ) -> RevocationCompleted:
        result: RevocationCompleted
        if isinstance(event, WorkstationCommandRequested):
            result = await handlers.handle_admin(
                event, host=self.host, backend=self.backend, policy=self.policy
            )
        elif isinstance(event, LogoutRequested):
            result = await handlers.handle_logout(
                event,
                host=self.host,
                backend=self.backend,
                policy=self.policy,
                session_policy=self.session_policy,
                shared_station=self.shared_station,
            )
        else:
            result = await handlers.handle_offboard(
                event, host=self.host, backend=self.backend, policy=self.policy
            )
        await self.refresh_presence()
        return result

    def on_deadletter(self, event: object, record: DeadLettered) -> RevocationCompleted | None:
        return handlers.handle_deadlettered(
            event,
            record,
            host=self.host,
            session_policy=self.session_policy,
            shared_station=self.shared_station,
        )

    async def refresh_presence(self) -> bool:
        """Write the presence record; announce it when the set of users changed or the
        record was gone (lapsed, or Redis lost its data: the orchestrator's index too).
        Returns whether a record was written. Never raises: a missed refresh is retried
        by the next heartbeat, and a lapsed record is the truth (the agent cannot see)."""
        async with self._presence_lock:
            try:
                sessions = await self.backend.list_sessions()
                users = frozenset(account_name(s.user) for s in sessions)
                existed = await write_presence(
                    self.redis,
                    PresenceRecord(
                        self.host,
                        self.version,
                        users,
                        self.clock(),
                        self.heartbeat_s,
                        group=self.group,
                        sessions=tuple(
                            SessionInfo(str(s.id), s.user, s.state, s.station) for s in sessions
                        ),
                    ),
                )
                if users != self.users or not existed:
                    await wake(self.redis, self.host, "presence")
                    log.info("%s: presence changed (%d users)", self.host, len(users))
                self.users = users
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: presence not refreshed (%s)", self.host, exc)
                return False

    async def run(self) -> None:
        """Announce presence now, then refresh it every `heartbeat_s` until cancelled."""
        await self.refresh_presence()
        while True:
            await pause(self.heartbeat_s)
            await self.refresh_presence()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.backend.aclose()
