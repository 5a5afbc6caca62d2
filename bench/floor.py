"""The CPU floor of a logout saga: what each elementary operation in one costs on this
machine, with the libraries of this checkout's .venv, on uvloop as Sortie runs. It starts
its own redis-server, HTTP server and Graph simulator on 127.0.0.1 (~3 minutes):

    .venv/bin/python bench/floor.py [--scale 1] [--rtt 14 --http-out 6 --graph 2 ...]

Figures: CPU (user + system) µs per operation, the least of 5 rounds (a shared machine's
noise only adds). `client`: this process (process_time()), `server`: uvicorn's (/proc),
`redis`: redis-server's (INFO cpu); peers' CPU is not counted. redis: a round trip of
redis-py asyncio; pipeline: ten commands a round trip; XADD: an entry as
sortie_core.entries.publish writes it. faststream (one run each): per entry, in the
consumer (RedisBroker and Prometheus middleware as runtime.make_broker) and in redis;
`batch raw`: as sortie_core.broker subscribes (max_records=32, raw parser/decoder), `1-by-1
model`: FastStream's way (a LogoutRequested parameter: its decode is in it); `full`: the
stream filled beforehand, `paced`: another process XADDs --rate/s meanwhile (as at a few
hundred sagas/s); no handler work, no XACK. aiohttp / httpx: a small form POSTed, keep-alive.
msgraph-sdk: the m365 worker's GraphSdkDirectory on `python -m sortie_simulators graph`.
fastapi: uvicorn's CPU (uvloop, httptools) per POST of a small JSON body validated by a
pydantic model, 64 keep-alive clients in another process. SagaState / LogoutRequested:
model_validate_json + model_dump_json of a logout's state after both phase-1 reports (by
sortie_orchestrator.saga), of an event. Floor: counts per saga (flags; defaults: a logout
in Sortie today) x those (entries: batch raw paced + redis; round trips: SET + redis).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop
from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, SecretStr
from redis.asyncio import BlockingConnectionPool, Redis

from sortie_core import events as ev
from sortie_core.broker import _decode, _parse
from sortie_core.entries import entry_fields
from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until, wait_until_async

ROLE = [sys.executable, str(Path(__file__).resolve()), "_role"]
FORM = {"logoutRequest": "<samlp:LogoutRequest ID='x'><samlp:SessionIndex>ST-1-abc" * 3}
SUBJECT = ev.Subject(user_id="jdupont", upn="jean.dupont@example.org", cas_username="jdupont")
Row = tuple[str, int, float, str]  # operation, iterations, CPU µs per operation, where
ROUNDS = 5


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def redis_stats(r: Redis) -> tuple[float, int]:
    """redis-server's CPU seconds, and how many XREADGROUPs it has served."""
    info = await r.info("cpu", "commandstats")
    reads = int(info.get("cmdstat_xreadgroup", {}).get("calls", 0))
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), reads


async def timed(n: int, call: Callable[[], Awaitable[Any]], probe: Any = None) -> list[float]:
    """CPU µs per call here (and in what `probe` reads): after 300 calls, the least of ROUNDS
    rounds of `n` calls in all (the others carry other processes' noise: caches, steal)."""
    best, k = [float("inf")] * 2, max(n // ROUNDS, 1)
    for _ in range(300):
        await call()
    for _ in range(ROUNDS):
        other, t0 = await probe() if probe else 0.0, time.process_time()
        for _ in range(k):
            await call()
        here, other = time.process_time() - t0, (await probe() - other) if probe else 0.0
        best = [min(b, v * 1e6 / k) for b, v in zip(best, (here, other), strict=True)]
    return best


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def serving(args: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server process (`args`, then a free port) and its URL, until the block ends."""
    port = free_port()
    server = subprocess.Popen([*args, str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port), 30, 0.05, f"a server on port {port}")
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


async def bench_redis(url: str, n: int) -> list[Row]:
    r = Redis.from_pool(BlockingConnectionPool.from_url(url, max_connections=8))
    sha = await r.script_load("return redis.call('SET', KEYS[1], ARGV[1])")
    pipe = r.pipeline(transaction=False)

    async def pipe10() -> None:
        for i in range(10):
            pipe.set(f"floor:p{i}", "v")
        await pipe.execute()

    async def probe() -> float:
        return (await redis_stats(r))[0]

    rows: list[Row] = []
    for name, call, per in (
        ("redis SET round trip", lambda: r.set("floor:k", "v"), 1),
        ("redis EVALSHA (1 SET) round trip", lambda: r.evalsha(sha, 1, "floor:k", "v"), 1),
        ("redis pipeline x10 SET, per command", pipe10, 10),
    ):
        client, server = (v / per for v in await timed(n // per, call, probe))
        rows += [(name, n, client, "client"), (name, n, server, "redis")]
    await r.aclose()
    return rows


async def produce(url: str, stream: str, n: int, rate: float) -> float:
    """Another process XADDs `n` entries, at `rate`/s (0: at once); its CPU µs per XADD."""
    proc = await asyncio.create_subprocess_exec(
        *ROLE, "produce", url, stream, str(n), str(rate), stdout=asyncio.subprocess.PIPE
    )
    return float((await proc.communicate())[0])


async def consume(url: str, n: int, *, batch: bool, rate: float) -> tuple[float, float, int]:
    """(consumer, redis) CPU µs per entry (with the paced XADDs), and the XREADGROUPs."""
    stream, r = f"floor:{uuid.uuid4().hex}", Redis.from_url(url)
    await r.xgroup_create(stream, "g", id="0", mkstream=True)
    if not rate:
        await produce(url, stream, n, 0)
    log = logging.getLogger("faststream")
    log.setLevel(logging.WARNING)  # its per-entry lines are at DEBUG, as in Sortie
    metrics = RedisPrometheusMiddleware(registry=CollectorRegistry())
    broker = RedisBroker(url, max_connections=8, socket_timeout=5.1, middlewares=[metrics],
                         logger=log, log_level=logging.DEBUG)  # fmt: skip
    sub = StreamSub(stream, group="g", consumer="c", polling_interval=100, batch=batch,
                    max_records=32)  # fmt: skip
    seen = [0]

    async def on_batch(raw: Any) -> None:
        seen[0] += len(raw["message_ids"])

    async def on_entry(event: ev.LogoutRequested) -> None:
        seen[0] += 1

    raw, handler = ({"parser": _parse, "decoder": _decode}, on_batch) if batch else ({}, on_entry)
    broker.subscriber(stream=sub, ack_policy=AckPolicy.MANUAL, **raw)(handler)

    (redis0, reads0), t0 = await redis_stats(r), time.process_time()
    await broker.start()
    paced = asyncio.ensure_future(produce(url, stream, n, rate) if rate else asyncio.sleep(0))
    await wait_until_async(lambda: seen[0] >= n, 90, 0.01, "every entry consumed")
    used, (redis1, reads1) = time.process_time() - t0, await redis_stats(r)
    await broker.stop()
    await paced
    await r.aclose()
    return used * 1e6 / n, (redis1 - redis0) * 1e6 / n, reads1 - reads0


async def bench_streams(url: str, n: int, rate: float) -> list[Row]:
    r, stream = Redis.from_url(url), f"floor:{uuid.uuid4().hex}"
    before, _ = await redis_stats(r)
    client = await produce(url, stream, n, 0)
    xadd = ((await redis_stats(r))[0] - before) * 1e6 / n
    await r.aclose()
    name = "redis XADD round trip (in another process)"
    rows: list[Row] = [(name, n, client, "client"), (name, n, xadd, "redis")]
    fit = []  # batch raw's (entries per read, client µs per entry): full, then paced
    for batch in (True, False):
        for mode, pace in (("full", 0.0), (f"paced {rate:.0f}/s", rate)):
            client, server, reads = await consume(url, n, batch=batch, rate=pace)
            kind = "batch raw" if batch else "1-by-1 model"
            label = f"faststream {kind}, {mode} ({n / reads:.1f}/read), per entry"
            server -= xadd if pace else 0.0
            rows += [(label, n, client, "client"), (label, n, server, "redis")]
            fit += [(n / reads, client)] if batch else []
    # client = per entry + per read / (entries per read): both, from the two batch raw runs
    (k1, c1), (k2, c2) = fit
    per_read = (c2 - c1) / (1 / k2 - 1 / k1)
    return [*rows, ("faststream batch raw: per XREADGROUP (from the 2 above)", n, per_read,
                    "client"), ("faststream batch raw: per entry (idem)", n, c1 - per_read / k1,
                    "client")]  # fmt: skip


async def bench_http_clients(base: str, n: int) -> list[Row]:
    url = f"{base}/logout"
    connector = aiohttp.TCPConnector(limit=8, keepalive_timeout=30)  # as ent's adapter
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

        async def aio_post() -> None:
            async with session.post(url, data=FORM, allow_redirects=False) as resp:
                await resp.read()

        aio = (await timed(n, aio_post))[0]
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        hx = (await timed(n // 2, lambda: client.post(url, data=FORM)))[0]
    return [("aiohttp POST form", n, aio, "client"), ("httpx POST form", n // 2, hx, "client")]


async def bench_graph(graph_url: str, upn: str, n: int) -> list[Row]:
    from sortie_m365.adapters.credentials import StaticTokenCredential
    from sortie_m365.adapters.graph_http import graph_client
    from sortie_m365.adapters.graph_sdk import GraphSdkDirectory

    credential = StaticTokenCredential(SecretStr("bench-token"))
    client = graph_client(graph_url, credential, scope="bench/.default", timeout_s=30)
    directory = GraphSdkDirectory(client, credential=credential)
    fields = ["accountEnabled", "signInSessionsValidFromDateTime"]
    read = (await timed(n, lambda: directory.read_user(upn, fields)))[0]
    revoke = (await timed(n, lambda: directory.revoke_sessions(upn)))[0]
    await directory.aclose()
    return [("msgraph-sdk GET user (read-back)", n, read, "client"),
            ("msgraph-sdk POST revokeSignInSessions", n, revoke, "client")]  # fmt: skip


def bench_fastapi(pid: int, base: str, n: int, concurrency: int = 64) -> list[Row]:
    load = [*ROLE, "load", f"{base}/v1/logout", str(concurrency)]
    k = n // ROUNDS // concurrency * concurrency  # requests per round
    subprocess.run([*load, str(k)], check=True)
    used = float("inf")
    for _ in range(ROUNDS):
        before = proc_cpu_s(pid)
        subprocess.run([*load, str(k)], check=True)
        used = min(used, (proc_cpu_s(pid) - before) * 1e6 / k)
    return [(f"fastapi POST JSON+pydantic, {concurrency} clients", n, used, "server")]


def saga_state() -> BaseModel:
    """A logout's state once both phase-1 services reported (the SSO logout to come)."""
    from sortie_orchestrator.saga import DEFAULT_TIMEOUTS, new_logout, on_revocation, start

    now, later = ev.utcnow(), ev.utcnow() + timedelta(milliseconds=40)
    tickets = tuple(ev.ServiceTicket(service=f"https://app{i}.example.org/cas/login",
                                     ticket=f"ST-{i}-{'x' * 30}") for i in range(3))  # fmt: skip
    sso = ev.SsoSession(tgt="TGT-1-" + "y" * 40, service_tickets=tickets)
    state = new_logout(uuid.uuid4(), SUBJECT, "logout", [ev.Target.M365, ev.Target.ENT], sso, now)
    state = start(state, [], now, DEFAULT_TIMEOUTS).state
    for service, action in (("m365", "revoke_sessions"), ("ent", "app_logout")):
        step = ev.StepResult(action=action, outcome=ev.Outcome.SUCCEEDED, started_at=now,
                             finished_at=later, detail="3 sessions")  # fmt: skip
        report = ev.RevocationCompleted(request_id=state.request_id, subject=SUBJECT,
                                        service=service, steps=(step,))  # fmt: skip
        moved = on_revocation(state, report, now, DEFAULT_TIMEOUTS)
        assert moved is not None
        state = moved.state
    return state


def logout_event() -> ev.LogoutRequested:
    deadline = ev.utcnow() + timedelta(seconds=30)
    return ev.LogoutRequested(request_id=uuid.uuid4(), subject=SUBJECT, deadline=deadline)


def codec_us(model: type[BaseModel], doc: str, n: int) -> float:
    async def once() -> None:
        model.model_validate_json(doc).model_dump_json()

    return uvloop.run(timed(n, once))[0]


def bench_pydantic(n: int) -> list[Row]:
    state = saga_state()
    doc, event = state.model_dump_json(), logout_event().model_dump_json()
    return [(f"SagaState validate+dump ({len(doc)} B)", n, codec_us(type(state), doc, n), "client"),
            (f"LogoutRequested validate+dump ({len(event)} B)", n,
             codec_us(ev.LogoutRequested, event, n), "client")]  # fmt: skip


def role_fastapi(port: str) -> None:
    import uvicorn
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/logout")  # for the HTTP clients: a form, not parsed
    async def form(request: Request) -> Response:
        await request.body()
        return Response(b"ok")

    @app.post("/v1/logout", status_code=202)
    async def logout(body: ev.Subject) -> JSONResponse:
        return JSONResponse({"request_id": str(uuid.uuid4()), "user": body.user_id}, 202)

    # As sortie_orchestrator.app.main runs it (uvloop and httptools: uvicorn's "auto").
    uvicorn.run(app, host="127.0.0.1", port=int(port), loop="uvloop", http="httptools",
                log_level="warning", proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                timeout_keep_alive=75)  # fmt: skip


async def role_load(url: str, concurrency: str, n: str) -> None:
    body = {"user_id": "jdupont", "upn": "jean.dupont@example.org", "site": "0750001A"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=int(concurrency))) as s:

        async def worker() -> None:
            for _ in range(int(n) // int(concurrency)):
                async with s.post(url, json=body) as resp:
                    assert resp.status == 202, resp.status
                    await resp.read()

        await asyncio.gather(*(worker() for _ in range(int(concurrency))))


async def role_produce(url: str, stream: str, count: str, per_s: str) -> None:
    r, n, rate = Redis.from_url(url), int(count), float(per_s)
    fields: Any = entry_fields(logout_event())
    loop, sent = asyncio.get_running_loop(), 0
    t0, cpu0 = loop.time(), time.process_time()
    while sent < n:  # one XADD per round trip, as sortie_core.entries.publish
        due = min(n, int((loop.time() - t0) * rate) + 1) if rate else n
        for _ in range(due - sent):
            await r.xadd(stream, fields)
        sent = max(sent, due)
        if rate:
            await asyncio.sleep(0.001)
    print((time.process_time() - cpu0) * 1e6 / n)
    await r.aclose()


FLOOR = [  # flag, count per saga, what, the figure (rows named so: their mean), whose CPU
    ("intake", 1, "HTTP requests taken in", "fastapi POST", ("server",)),
    ("messages", 6, "stream entries consumed", "faststream batch raw, paced", ("client", "redis")),
    ("rtt", 14, "Redis round trips", "redis SET", ("client", "redis")),
    ("http-out", 6, "ent's outbound HTTP calls", "aiohttp POST", ("client",)),
    ("graph", 2, "m365's msgraph-sdk calls", "msgraph-sdk", ("client",)),
    ("state-codec", 4, "SagaState decodes+encodes", "SagaState", ("client",)),
    ("events", 6, "event decodes+encodes", "LogoutRequested", ("client",)),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="iterations x this (default 1)")
    p.add_argument("--rate", type=float, default=2000, help="entries/s of the paced producer")
    for flag, count, what, *_ in FLOOR:
        p.add_argument(f"--{flag}", type=int, default=count, help=f"{what} per saga ({count})")
    return p.parse_args()


def print_floor(rows: list[Row], a: argparse.Namespace) -> None:
    total, terms = 0.0, []
    for flag, _, _, prefix, whose in FLOOR:
        figures = [[v for name, _, v, w in rows if name.startswith(prefix)
                    and w == who] for who in whose]  # fmt: skip
        each, count = sum(sum(f) / len(f) for f in figures), getattr(a, flag.replace("-", "_"))
        total += count * each
        terms.append(f"{count} {flag} x {each:.0f}")
    print(" + ".join(terms) + " µs")
    print(f"floor per saga: {total / 1000:.2f} ms CPU (both cores at 100%: at most "
          f"{2e6 / total:.0f} sagas/s)")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_role":
        role = globals()[f"role_{sys.argv[2]}"](*sys.argv[3:])  # async ones give a coroutine
        if role is not None:
            uvloop.run(role)
        return
    a = parse_args()
    started, n = time.monotonic(), int(10_000 * a.scale)
    redis = RedisServer().start()
    try:
        rows = uvloop.run(bench_redis(redis.url, n))
        rows += uvloop.run(bench_streams(redis.url, n, a.rate))
    finally:
        redis.cleanup()
    with serving([*ROLE, "fastapi"]) as (server, base):
        rows += uvloop.run(bench_http_clients(base, n)) + bench_fastapi(server.pid, base, n)
    with serving([sys.executable, "-m", "sortie_simulators", "graph", "--port"]) as (_, base):
        made = httpx.post(f"{base}/_sim/users:bulk", json={"prefix": "floor", "count": 1})
        rows += uvloop.run(bench_graph(base, made.raise_for_status().json()["first"], n // 5))
    rows += bench_pydantic(n)
    print(f"{'operation':<62} {'iterations':>10} {'CPU µs/op':>10}  where")
    for name, iters, v, where in rows:
        print(f"{name:<62} {iters:>10} {v:>10.1f}  {where}")
    print_floor(rows, a)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
