"""A tiny programmable HTTP peer for adapter and integration tests.

`StubHttp` is a raw ASGI app: it records every request and answers from replies scripted
per (method, path), else from a `default` function (stateful fakes of Graph, CAS, the
workstations simulator). `ServedApp` runs any ASGI app under uvicorn on a free port in a
thread of its own, so a slow reply never blocks the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

from sortie_testkit.redis_server import free_port
from sortie_testkit.waiting import wait_until


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str  # decoded
    raw_path: str  # as sent, percent-escapes kept
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body)


class StubHttp:
    def __init__(self, default: Callable[[Seen], Reply] | None = None) -> None:
        self.seen: list[Seen] = []
        self._scripts: dict[tuple[str, str], list[Reply]] = {}
        self.default = default or (lambda _: Reply(404, {"error": "no route"}))

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """The next requests to `method path` get `replies`, one each, then `default`."""
        self._scripts.setdefault((method.upper(), path), []).extend(replies)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        return [
            s
            for s in list(self.seen)
            if (method is None or s.method == method.upper()) and (path is None or s.path == path)
        ]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = Seen(
            method=scope["method"],
            path=scope["path"],
            raw_path=scope.get("raw_path", b"").decode(),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
        )
        self.seen.append(seen)
        queue = self._scripts.get((seen.method, seen.path))
        reply = queue.pop(0) if queue else self.default(seen)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        payload = b"" if reply.json is None else json.dumps(reply.json).encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        if reply.json is not None:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class ServedApp:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                access_log=False,
                # A slow scripted reply still running when the test ends is cut short.
                timeout_graceful_shutdown=0.1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedApp:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("test HTTP server did not start")
            return bool(self.server.started)

        wait_until(started, 10, 0.01, "the test HTTP server started")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
