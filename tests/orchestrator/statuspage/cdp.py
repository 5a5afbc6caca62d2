"""Debian's Chromium, headless, driven over the Chrome DevTools Protocol (a websocket,
aiohttp's client): load a page in a language, with or without JavaScript, at a width,
read its DOM, run axe-core in it, take a screenshot. Protocol reference:
chromedevtools.github.io/devtools-protocol (Page, Runtime, Emulation)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from sortie_testkit.redis_server import free_port
from sortie_testkit.waiting import TimedOut, wait_until_async
from tests.orchestrator.statuspage.chromium import headless

ROOT = Path(__file__).resolve().parents[3]
# Installed by scripts/bootstrap-test.sh (npm), for the accessibility checks.
AXE = ROOT / ".venv/share/axe/node_modules/axe-core/axe.min.js"


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[mid] = fut
        await self.ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def goto(self, url: str) -> None:
        self.events.clear()
        await self.send("Page.navigate", url=url)
        await self.wait(lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events))

    async def eval(self, expression: str, *, promise: bool = False) -> Any:
        found = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=promise
        )
        if "exceptionDetails" in found:
            raise RuntimeError(f"{expression[:80]}: {found['exceptionDetails']}")
        return found["result"].get("value")

    async def wait(self, check: Any, timeout: float = 20) -> None:
        await wait_until_async(check, timeout, 0.05, "the page getting there")

    async def wait_text(self, text: str, timeout: float = 20) -> str:
        """The page's text once it holds `text` (polled: no JavaScript of ours needed)."""
        seen = {"body": ""}

        async def showing() -> bool:
            seen["body"] = await self.text()
            return text in seen["body"]

        try:
            await wait_until_async(showing, timeout, 0.1)
        except TimedOut:
            raise AssertionError(f"{text!r} never showed; the page says:\n{seen['body']}") from None
        return seen["body"]

    async def text(self) -> str:
        for _ in range(20):
            doc = await self.send("DOM.getDocument", depth=-1)
            try:
                html = await self.send("DOM.getOuterHTML", nodeId=doc["root"]["nodeId"])
            except RuntimeError:
                continue  # the page reloaded (its refresh) in between
            return str(html["outerHTML"])
        raise AssertionError("the page never stood still")

    async def width(self, px: int, height: int = 900) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=px,
            height=height,
            deviceScaleFactor=1,
            mobile=px < 600,
        )

    async def screenshot(self, path: Path) -> Path:
        for _ in range(50):
            try:
                shot = await self.send(
                    "Page.captureScreenshot", format="png", captureBeyondViewport=True
                )
                break
            except RuntimeError:  # in the middle of a reload (the page's refresh)
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("no screenshot could be taken")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    async def axe(self) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations of the page as it is."""
        await self.send("Page.setBypassCSP", enabled=True)
        await self.eval(AXE.read_text())
        found = await self.eval(
            "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
            "v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' '))})))",
            promise=True,
        )
        return [v for v in found if v["impact"] in ("serious", "critical")]


@contextlib.asynccontextmanager
async def browser(
    profile: Path, *, lang: str = "fr-FR,fr", javascript: bool = True
) -> AsyncIterator[Page]:
    port = free_port()
    args = [
        *headless(profile),
        f"--accept-lang={lang}",
        f"--lang={lang.split(',', maxsplit=1)[0]}",
        f"--remote-debugging-port={port}",
    ]
    if not javascript:
        args.append("--blink-settings=scriptEnabled=false")
    proc = subprocess.Popen(
        [*args, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def pages() -> list[dict[str, Any]]:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                        return [t for t in await resp.json() if t["type"] == "page"]
                assert proc.poll() is None, "chromium exited"
                return []

            targets = await wait_until_async(pages, 30, 0.1, "chromium's DevTools answering")
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                # Chromium's Accept-Language, as a French or English browser sends it.
                await page.send("Network.enable")
                await page.send(
                    "Emulation.setUserAgentOverride", userAgent="Mozilla/5.0", acceptLanguage=lang
                )
                await page.width(1280)
                if not javascript:
                    await page.send("Emulation.setScriptExecutionDisabled", value=True)
                try:
                    yield page
                finally:
                    page.reader.cancel()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
