"""What the shared client's read timeout costs: CPU per Redis GET on one connection, with
and without `socket_timeout` (redis-py then bounds every send with `asyncio.wait_for` and
every read with `asyncio.timeout`), on uvloop, against a Redis on 127.0.0.1.

    .venv/bin/python bench/redis_read_timeout.py [--port 6379] [--calls 20000]
"""

from __future__ import annotations

import argparse
import time

import uvloop
from redis.asyncio import Redis


async def per_call_us(port: int, calls: int, timeout: float | None) -> float:
    redis = Redis(port=port, socket_timeout=timeout)
    await redis.ping()
    started = time.process_time()
    for _ in range(calls):
        await redis.get("sortie:bench:absent")
    spent = time.process_time() - started
    await redis.aclose()
    return 1e6 * spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    for label, timeout in (("no timeout", None), ("timeout 11 s", 11.0)) * 2:
        cost = uvloop.run(per_call_us(args.port, args.calls, timeout))
        print(f"{label:>13}: {cost:6.1f} us CPU per GET")


if __name__ == "__main__":
    main()
