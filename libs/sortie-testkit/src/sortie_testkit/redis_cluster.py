"""A throwaway Redis Cluster: three primaries (`redis-server --cluster-enabled yes`) on
free ports, their slots assigned by `redis-cli --cluster create --cluster-yes`, owned by
the test or bench that starts it."""

from __future__ import annotations

import shutil
import subprocess

from redis import Redis

from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until


class RedisClusterGroup:
    def __init__(self, primaries: int = 3) -> None:
        self.nodes = [
            RedisServer(
                extra=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-config-file",
                    "nodes.conf",
                    # The bus port, by default port + 10000, may not exist or be taken.
                    "--cluster-port",
                    str(free_port()),
                ]
            )
            for _ in range(primaries)
        ]

    @property
    def startup(self) -> str:
        """`host:port` of the first node (any node lets a client discover the others)."""
        return f"127.0.0.1:{self.nodes[0].port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_until(self._ok, 20, 0.05, "redis cluster reaching cluster_state:ok")
        return self

    def _ok(self) -> bool:
        for node in self.nodes:
            with Redis(port=node.port, socket_timeout=0.5) as r:
                if r.cluster("info").get("cluster_state") != "ok":
                    return False
        return True

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
