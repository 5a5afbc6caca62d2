"""Round trips shared by every coroutine that needs one at the same moment (group commit).

Under load a process has many entries in work at once, and each wants a few small
commands (a de-duplication mark, a compare-and-set, publish-and-acknowledge). Sent one
caller at a time, each is a round trip of its own: a connection taken from the pool, a
write system call, a read, for a few hundred bytes. Here callers queue what they want
to send; one flusher sends everything queued in one pipeline, and while that round trip
is on the wire the next callers queue up for the following one. A lone caller is sent
at once (no wait, no timer): batches only form when work is already waiting, so
latency never grows and throughput rises with load.

Two queues, two guarantees:

* `run` (a plain pipeline): each caller's commands keep their order, and each reply is
  the caller's own (an error reply is returned in its place, never raised at another
  caller).
* `atomic`: each caller's commands run as one MULTI/EXEC. Every caller of one flush
  shares a single MULTI (atomic for each, and then some); if Redis refuses that
  transaction (EXECABORT: one caller's command was refused when queued), each caller's
  commands run again in a MULTI of their own, so one bad caller fails alone.

On a Redis Cluster a pipeline spans slots and a MULTI may not: every caller then runs
alone, through `redis_cluster.multi` (the commands in order), exactly as without
coalescing. Errors of the round trip itself (connection lost, timeout) reach every
caller of that flush, who handle them as they would their own.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ExecAbortError, ResponseError

from .redis_cluster import is_cluster, multi, relearn

# What a caller adds to the pipeline it is handed (commands only; no await).
Build = Callable[[Any], None]

# One flush carries at most this many callers; the rest wait for the next.
MAX_CALLERS = 256


class _Queue:
    """One flusher, and what waits for it."""

    def __init__(self, send: Callable[[list[Build]], Any], wait_s: float) -> None:
        self._send = send
        self._wait_s = wait_s
        self._waiting: list[tuple[Build, asyncio.Future[list[Any]], float]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, build: Build) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((build, future, loop.time()))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    def _take(self) -> list[tuple[Build, asyncio.Future[list[Any]]]]:
        """The next batch. Who waited past `wait_s` for it (a round trip held up: Redis
        saturated or stalled) is failed unsent, as a pool with no free connection in
        time would (the intake's 503): nothing of theirs was written."""
        batch = self._waiting[:MAX_CALLERS]
        del self._waiting[:MAX_CALLERS]
        late = asyncio.get_running_loop().time() - self._wait_s
        live = []
        for build, future, since in batch:
            if future.done():
                continue
            if since < late:
                future.set_exception(
                    RedisConnectionError(
                        f"Redis saturated: no round trip free within {self._wait_s:g} s"
                    )
                )
                continue
            live.append((build, future))
        return live

    async def _flush(self) -> None:
        try:
            while self._waiting:
                live = self._take()
                if not live:
                    continue
                try:
                    replies = await self._send([b for b, _f in live])
                except BaseException as exc:
                    for _b, future in live:
                        if not future.done():
                            future.set_exception(_copy(exc))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_b, future), reply in zip(live, replies, strict=True):
                    if not future.done():
                        future.set_result(reply)
        finally:
            self._flusher = None
            if self._waiting:  # cancelled mid-way: the rest are not stranded
                self._flusher = asyncio.create_task(self._flush())


def _copy(exc: BaseException) -> BaseException:
    # One exception object raised in many tasks would chain their tracebacks together.
    try:
        return type(exc)(*exc.args)
    except Exception:
        return exc


class Coalescer:
    """`run` and `atomic` for one Redis client (see the module's docstring)."""

    def __init__(self, redis: Redis, wait_s: float | None = None) -> None:
        self.redis = redis
        self._alone = is_cluster(redis)
        # How long a caller may wait for its round trip: the pool's own timeout.
        pool = getattr(redis, "connection_pool", None)
        wait_s = wait_s or getattr(pool, "timeout", None) or 10.0
        self._plain = _Queue(self._send_plain, wait_s)
        self._atomic = _Queue(self._send_atomic, wait_s)
        self.flushes = 0
        self.callers = 0

    async def run(self, build: Build) -> list[Any]:
        """`build`'s commands in a pipeline shared with other callers; their replies, an
        error reply in place of its command's."""
        if self._alone:
            async with self.redis.pipeline(transaction=False) as pipe:
                build(pipe)
                replies = list(await pipe.execute(raise_on_error=False))
            if any(isinstance(r, RedisConnectionError | TimeoutError) for r in replies):
                # A node lost: returned as a reply, so redis-py did not learn the
                # Cluster's new layout itself.
                relearn(self.redis)
            return replies
        return await self._plain.submit(build)

    async def call(self, build: Build) -> Any:
        """The reply of `build`'s one command (see `run`); an error reply is raised."""
        (reply,) = await self.run(build)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def atomic(self, build: Build) -> list[Any]:
        """`build`'s commands in one MULTI/EXEC (shared with other callers); their
        replies. Raises what Redis answered when it refused them."""
        if self._alone:
            async with multi(self.redis) as pipe:
                build(pipe)
                return list(await pipe.execute())
        replies: Any = await self._atomic.submit(build)
        if isinstance(replies, _Failed):
            raise replies.exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _send_plain(self, builds: list[Build]) -> list[list[Any]]:
        self.flushes += 1
        self.callers += len(builds)
        async with self.redis.pipeline(transaction=False) as pipe:
            spans = _add(pipe, builds)
            replies = await pipe.execute(raise_on_error=False)
        return [list(replies[a:b]) for a, b in spans]

    async def _send_atomic(self, builds: list[Build]) -> list[Any]:
        self.flushes += 1
        self.callers += len(builds)
        if len(builds) > 1:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    spans = _add(pipe, builds)
                    # Errors at EXEC time come back as replies, each to its caller.
                    replies = await pipe.execute(raise_on_error=False)
                return [list(replies[a:b]) for a, b in spans]
            except ResponseError as exc:
                if not _aborted(exc):
                    raise
                # Refused when queued, so nothing ran: each caller alone, below.
        out: list[Any] = []
        for build in builds:
            # Each caller's own outcome: those before a failure did commit.
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    build(pipe)
                    out.append(list(await pipe.execute(raise_on_error=False)))
            except Exception as exc:
                out.append(_Failed(exc))
        return out


_BY_CLIENT: weakref.WeakKeyDictionary[Any, Coalescer] = weakref.WeakKeyDictionary()


def coalescer_for(redis: Any) -> Coalescer:
    """The one coalescer of `redis` (a client): every part of a process that shares the
    client shares its round trips."""
    found = _BY_CLIENT.get(redis)
    if found is None:
        found = _BY_CLIENT[redis] = Coalescer(redis)
    return found


class _Failed:
    """A caller's transaction that failed on its own: raised in that caller only."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _aborted(exc: ResponseError) -> bool:
    """EXECABORT: redis-py raises the first queued command's error from it."""
    return isinstance(exc, ExecAbortError) or isinstance(exc.__cause__, ExecAbortError)


def _add(pipe: Any, builds: list[Build]) -> list[tuple[int, int]]:
    spans = []
    for build in builds:
        start = len(pipe.command_stack)
        build(pipe)
        spans.append((start, len(pipe.command_stack)))
    return spans
