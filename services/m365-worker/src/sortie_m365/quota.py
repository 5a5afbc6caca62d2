"""Graph's write quota, used to the last write and no further.

Graph counts identity writes per application and tenant (3,000 per 150 s) and per tenant
for all applications (18,000 per 5 min; https://learn.microsoft.com/graph/throttling-limits).
Writes wait here in one queue per process, offboardings before logouts, and a single
dispatcher takes tokens for them from the buckets in Redis (`SpreadLimiter`: shared by
every replica), each grant naming the app registration that sends the write. How long a
write queued now would wait is the queue over the rate: the gauge
`sortie_m365_expected_wait_seconds`, a Redis key (`expected_wait_key`, for the
orchestrator), and each step that waited says so in its detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from redis.asyncio import Redis

from sortie_core.errors import TransientError
from sortie_core.events import StepResult
from sortie_core.metrics import M365_EXPECTED_WAIT, M365_WRITES_QUEUED
from sortie_core.ratelimit import SpreadLimiter
from sortie_core.services import expected_wait_key, graph_latency_key

log = logging.getLogger(__name__)

OFFBOARD, LOGOUT = 0, 1
_NAMES = {OFFBOARD: "offboard", LOGOUT: "logout"}
# Which kind of request the current task's writes serve (set by the handler).
PRIORITY: ContextVar[int] = ContextVar("sortie_m365_priority", default=LOGOUT)


@dataclass
class Waited:
    """Time the current step's writes spent queued for the quota."""

    seconds: float = 0.0
    expected_s: float = 0.0


_WAITED: ContextVar[Waited | None] = ContextVar("sortie_m365_waited", default=None)
# A wait shorter than this is not worth a word in the step.
NOTEWORTHY_S = 0.05
# The dispatcher's pause, when writes wait for the next token (at most a quarter of the
# limiter's `ahead_s`).
PAUSE_S = 0.02


@dataclass
class Latency:
    """Graph's latency as measured by this process (an exponential moving average of
    single-call user lookups), kept in Redis for the next start to size itself by."""

    seconds: float | None = None
    weight: float = 0.05

    def observe(self, seconds: float) -> None:
        if self.seconds is None:
            self.seconds = seconds
        else:
            self.seconds += self.weight * (seconds - self.seconds)


LATENCY = Latency()


class WriteQueue:
    """`await queue.acquire()`: the index of the app registration to send one write with,
    once the quota allows it; the most urgent waiter first, then first come."""

    def __init__(
        self, limiter: SpreadLimiter, redis: Redis | None = None, tenant_key: str = "default"
    ) -> None:
        self.limiter = limiter
        self._redis = redis
        self._key = expected_wait_key(tenant_key)
        self._tenant = tenant_key
        self._heap: list[tuple[int, int, asyncio.Future[int]]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._published_at = 0.0
        self.granted = [0] * len(limiter.app_keys)
        # prometheus_client's `labels()` looks its child up anew on each call.
        self._gauges = {p: M365_WRITES_QUEUED.labels(name) for p, name in _NAMES.items()}

    @property
    def expected_wait_s(self) -> float:
        return len(self._heap) / self.limiter.rate

    async def acquire(self, cost: float = 1.0) -> int:
        priority = PRIORITY.get()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        expected = self.expected_wait_s
        heapq.heappush(self._heap, (priority, next(self._seq), future))
        self._queued()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._dispatch())
        self._wake.set()
        started = time.monotonic()
        app = await future
        waited = _WAITED.get()
        if waited is not None:
            waited.seconds += time.monotonic() - started
            waited.expected_s = max(waited.expected_s, expected)
        return app

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _next(self) -> asyncio.Future[int] | None:
        while self._heap:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                return future
        return None

    async def _dispatch(self) -> None:
        while True:
            while self._heap and self._heap[0][2].done():
                heapq.heappop(self._heap)
            if not self._heap:
                self._queued()
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                grants, wait = await self.limiter.take(len(self._heap))
            except Exception as exc:  # Redis down: the writes fail (retried by their step)
                log.warning("the Graph write quota cannot be read: %s", type(exc).__name__)
                self._fail_all()
                await asyncio.sleep(0.5)
                continue
            loop = asyncio.get_running_loop()
            for app, due_s in grants:
                future = self._next()
                if future is None:
                    break
                self.granted[app] += 1
                if due_s > 0:
                    loop.call_later(due_s, _grant, future, app)
                else:
                    future.set_result(app)
            await self._queued_async()
            if wait > 0 and self._heap:
                # `wait` is when the next token is (a few ms at hundreds of writes/s): taken
                # one by one, a Redis call each. Tokens keep for a tenth of a second (the
                # burst), and those granted reach `ahead_s` ahead: pausing a little longer
                # takes several per call, the writes still due on time.
                await asyncio.sleep(max(wait, min(PAUSE_S, self.limiter.ahead_s / 4)))

    def _fail_all(self) -> None:
        while (future := self._next()) is not None:
            future.set_exception(
                TransientError("the Graph write quota is unreadable", code="quota_unavailable")
            )

    def _queued(self) -> None:
        counts = {p: 0 for p in _NAMES}
        for priority, _, future in self._heap:
            if not future.done():
                counts[priority] = counts.get(priority, 0) + 1
        for priority, gauge in self._gauges.items():
            gauge.set(counts[priority])
        M365_EXPECTED_WAIT.set(self.expected_wait_s)

    async def _queued_async(self) -> None:
        """The gauges, and at most once a second the Redis key other services read."""
        self._queued()
        now = time.monotonic()
        if self._redis is None or now - self._published_at < 1.0:
            return
        self._published_at = now
        with contextlib.suppress(Exception):
            await self._redis.set(self._key, f"{self.expected_wait_s:.3f}", ex=10)
            if LATENCY.seconds is not None:
                key = graph_latency_key(self._tenant)
                await self._redis.set(key, f"{LATENCY.seconds:.4f}", ex=7 * 86400)


def _grant(future: asyncio.Future[int], app: int) -> None:
    """A reserved token is due: its write may go (unless its waiter gave up)."""
    if not future.done():
        future.set_result(app)


def watching_waits() -> Waited:
    """Start counting the current step's quota waits (its task's writes)."""
    waited = Waited()
    _WAITED.set(waited)
    return waited


def note_wait(step: StepResult, waited: Waited) -> StepResult:
    """The step, telling how long its writes waited for Graph's write quota."""
    if waited.seconds < NOTEWORTHY_S:
        return step
    note = (
        f"waited {waited.seconds:.2f} s for Graph's write quota "
        f"(expected wait when queued: {waited.expected_s:.2f} s)"
    )
    detail = f"{step.detail}; {note}" if step.detail else note
    return step.model_copy(update={"detail": detail[:2000]})


def concurrency_for(rate: float, latency_s: float, lower: int = 16, upper: int = 512) -> int:
    """Users in flight that keep `rate` writes/s going when each Graph call takes
    `latency_s` (Little's law: in flight = throughput x time in the system). A user costs
    at most three calls per write (logout: lookup, revoke, read-back); twice as many again
    stay queued so the quota never idles (bench/m365_offboard.py, 2 app registrations at
    400 writes/s, 100 ms calls: with half as many again, 21 % of the quota went unused).
    Bounded."""
    return max(lower, min(upper, math.ceil(rate * 3 * latency_s * 3)))


class PendingWrites:
    """One write per key at a time in this process: a caller finding the same write
    pending (e.g. `revokeSignInSessions` of a user who logged out twice in a row) waits
    for it and shares its result, instead of spending a second write of the quota."""

    def __init__(self) -> None:
        self._pending: dict[tuple[object, ...], asyncio.Future[None]] = {}

    async def run(self, key: tuple[object, ...], write: Callable[[], Awaitable[None]]) -> bool:
        """Runs `write` unless one is pending under `key`; True when it joined one (its
        error, if any, is raised here too)."""
        pending = self._pending.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending[key] = future
        try:
            await write()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
            raise
        else:
            future.set_result(None)
        finally:
            del self._pending[key]
        return False


REVOCATIONS = PendingWrites()
JOINED = (
    "joined the session revocation already pending for this user (one Graph call for "
    "both requests; read back for this one)"
)
