"""JSON batching: requests queued by many concurrent users go to Graph as one `POST /$batch`.

https://learn.microsoft.com/graph/json-batching: at most 20 requests per batch, each
answered with its own status; Graph may run them in any order, and throttles each one
(a 429 inside a 200 batch). Items are `GraphCall`s, their URLs and bodies as msgraph-sdk's
request builders make them (graph_urls.py); the `$batch` itself goes through the SDK's
request adapter. Only requests already waiting share a batch (a lone one
goes at once, alone) unless a linger is set; a batch goes as one app registration, so
writes granted to different registrations never share one. One user's steps are awaited
one after another, so they are never queued together; the batcher also refuses two items
of one user in a batch.

A write that names its read-back (`GraphCall.then`) and finds nobody to share a batch
with goes with it as a `$batch` of two, the read depending on the write (`dependsOn`:
Graph runs it after the write succeeded, else answers it 424): one round trip instead of
two, the read-back still Graph's word after the write. Graph takes a batch either fully
parallel or fully sequential (https://learn.microsoft.com/graph/known-issues, JSON
batching), so in a shared batch a write goes without its read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from sortie_core.errors import SortieError, TransientError

from .graph_errors import error_for
from .graph_urls import GraphCall

MAX_BATCH = 20


@dataclass
class _Item:
    user: str
    call: GraphCall
    what: str
    permission: str
    direct: Callable[[], Awaitable[Any]]
    app: int | None = None
    # Given the body of the write's read-back, when it came with it.
    read: Callable[[Any], None] | None = None
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ReadBacks:
    """Read-backs that came with their writes, each kept until its step's verification
    asks for it (`take`, once), for a few seconds at most."""

    def __init__(self, ttl_s: float = 5.0, size: int = 4096) -> None:
        self._ttl_s, self._size = ttl_s, size
        self._found: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, Any]] = OrderedDict()

    def put(self, user: str, fields: tuple[str, ...], body: Any) -> None:
        self._found[(user, fields)] = (time.monotonic() + self._ttl_s, body)
        while len(self._found) > self._size:
            self._found.popitem(last=False)

    def take(self, user: str, fields: tuple[str, ...]) -> Any:
        """The body read with the write (None: none, or too old)."""
        due, body = self._found.pop((user, fields), (0.0, None))
        return body if due > time.monotonic() else None


# Sends one request (the batch) through the SDK pipeline, as the given app registration;
# returns the body's bytes or raises Sortie's error for the whole batch.
Send = Callable[[RequestInformation, str, int | None], Awaitable[bytes | None]]


class GraphBatcher:
    def __init__(self, base_url: str, send: Send, *, linger_s: float = 0.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._send = send
        self._linger_s = linger_s
        self._queue: list[_Item] = []
        self._timer: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0

    async def submit(
        self,
        user: str,
        call: GraphCall,
        what: str,
        permission: str,
        direct: Callable[[], Awaitable[Any]],
        app: int | None = None,
        read: Callable[[Any], None] | None = None,
    ) -> Any:
        """Queue one request; its answer's JSON body (None when empty). A request left
        alone (after the linger, if any) goes out by itself, through `direct`, or with its
        read-back (`call.then`, whose body goes to `read`)."""
        item = _Item(user, call, what, permission, direct, app, read)
        self._queue.append(item)
        loop = asyncio.get_running_loop()
        if len(self._queue) >= MAX_BATCH:
            self._flush()
        elif self._timer is None and self._linger_s > 0:
            self._timer = loop.call_later(self._linger_s, self._flush)
        elif self._timer is None:
            # What the other tasks queue in this turn of the loop shares the batch.
            self._timer = loop.call_soon(self._flush)
        return await item.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            batch: list[_Item] = []
            users: set[str] = set()
            rest: list[_Item] = []
            app = self._queue[0].app
            for item in self._queue:
                if len(batch) < MAX_BATCH and item.user not in users and item.app == app:
                    batch.append(item)
                    users.add(item.user)
                else:
                    rest.append(item)
            self._queue = rest
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            if len(batch) == 1 and batch[0].call.then is not None:
                await self._send_batch(batch, pair=True)
            elif len(batch) == 1:
                await self._alone(batch[0])
            else:
                await self._send_batch(batch)
        except asyncio.CancelledError:
            for item in batch:
                if not item.future.done():
                    item.future.cancel()
            raise

    async def _alone(self, item: _Item) -> None:
        try:
            result = await item.direct()
        except Exception as exc:  # handed to the caller, who translates or reports it
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    @staticmethod
    def _entry(n: int, item: _Item) -> dict[str, Any]:
        call = item.call
        entry: dict[str, Any] = {"id": str(n), "method": call.method.value, "url": call.url}
        if call.body is not None:
            entry["body"] = call.body()
            entry["headers"] = {"Content-Type": "application/json"}
        return entry

    async def _send_batch(self, batch: list[_Item], *, pair: bool = False) -> None:
        requests = [self._entry(n, item) for n, item in enumerate(batch)]
        then = batch[0].call.then
        if pair and then is not None:
            follow = {
                "id": "read",
                "method": then.method.value,
                "url": then.url,
                "dependsOn": ["0"],
            }
            requests.append(follow)
        envelope = {"requests": requests}
        info = RequestInformation(Method.POST)
        info.url = self._base_url + "/$batch"
        info.headers.try_add("Accept", "application/json")
        info.set_stream_content(json.dumps(envelope).encode(), "application/json")
        self.batches_sent += 1
        try:
            raw = await self._send(info, "a $batch of writes", batch[0].app)
            answers = json.loads(raw or b"{}").get("responses", [])
        except SortieError as exc:
            for item in batch:
                item.future.set_exception(exc)
            return
        except ValueError:
            answers = []
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        read, answer = batch[0].read, by_id.get("read")
        if pair and read is not None and answer and 200 <= int(answer.get("status", 0)) < 300:
            read(answer.get("body"))
        for n, item in enumerate(batch):
            answer = by_id.get(str(n))
            if answer is None:
                item.future.set_exception(
                    TransientError(
                        f"Graph's $batch gave no answer for {item.what}",
                        code="graph_batch_incomplete",
                    )
                )
                continue
            status = int(answer.get("status", 0))
            body = answer.get("body")
            if 200 <= status < 300:
                item.future.set_result(body)
                continue
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            headers = httpx.Headers(answer.get("headers") or {})
            item.future.set_exception(
                error_for(status, code, headers, item.what, permission=item.permission)
            )
