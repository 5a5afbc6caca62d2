"""A throwaway Redis Cluster: three primaries (`redis-server --cluster-enabled yes`) on
free ports, their slots assigned by `redis-cli --cluster create --cluster-yes`, owned by
the test or bench that starts it; with `replicas=1`, one replica per primary
(`--cluster-replicas 1`), so that killing a primary promotes its replica."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time

from redis import Redis
from redis.exceptions import RedisError

from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until


class RedisClusterGroup:
    def __init__(self, primaries: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
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
            for _ in range(primaries * (1 + replicas))
        ]

    @property
    def startup(self) -> str:
        """`host:port` of the first node (any node lets a client discover the others)."""
        return f"127.0.0.1:{self.nodes[0].port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterGroup:
        """Start every node and form the cluster; on any failure the nodes already started
        are stopped (a fixture that raises never reaches its own cleanup)."""
        try:
            return self._form()
        except BaseException:
            self.cleanup()
            raise

    def _form(self) -> RedisClusterGroup:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_until(self._ok, 60, 0.05, "redis cluster reaching cluster_state:ok")
        # A fresh replica syncs after the cluster says ok: until then a WAIT for it fails.
        wait_until(self._replicated, 60, 0.05, "every primary's replicas online")
        return self

    def env(self) -> dict[str, str]:
        """What `sortie up` (and every service) needs to run on this cluster."""
        return {"REDIS_URL": self.url, "SORTIE_REDIS_CLUSTER": "1"}

    def _ok(self) -> bool:
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue  # killed by the test
            try:
                with Redis(port=node.port, socket_timeout=0.5) as r:
                    info = r.cluster("info")
                    if info.get("cluster_state") != "ok":
                        return False
                    if self.replicas and int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                        return False
            except OSError:
                return False
        return True

    def _replicated(self) -> bool:
        """Every primary has its replicas online (in sync: a WAIT for one can succeed)."""
        for node in self.primaries():
            with Redis(port=node.port, socket_timeout=0.5) as r:
                info = r.info("replication")
            online = [
                v for k, v in info.items()
                if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
            ]  # fmt: skip
            if len(online) < self.replicas:
                return False
        return True

    def role(self, node: RedisServer) -> str:
        with Redis(port=node.port, socket_timeout=0.5) as r:
            return str(r.info("replication")["role"])

    def primaries(self) -> list[RedisServer]:
        return [
            n for n in self.nodes if n.proc and n.proc.poll() is None and self.role(n) == "master"
        ]

    def kill9(self, node: RedisServer) -> int:
        """Kill `node` with -9 (no goodbye to the cluster); the primaries it leaves."""
        assert node.proc is not None
        before = len(self.primaries())
        node.proc.kill()
        node.proc.wait(5)
        return before

    def wait_promoted(self, primaries: int, timeout: float = 30) -> None:
        """Until `primaries` live primaries cover every slot again (a replica promoted)."""
        deadline = time.monotonic() + timeout
        while len(self.primaries()) < primaries or not self._ok():
            if time.monotonic() > deadline:
                raise RuntimeError("no replica was promoted in time")
            time.sleep(0.05)

    def restart_as_replica(self, node: RedisServer, timeout: float = 30) -> None:
        """Start a killed node again (its nodes.conf kept): the cluster makes it a
        replica of the primary that took its slots over, as a supervisor's restart would."""
        node.start()
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, RedisError):
                info = Redis(port=node.port, socket_timeout=0.5).info("replication")
                if info["role"] == "slave" and info.get("master_link_status") == "up":
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the restarted node never became a replica")
            time.sleep(0.05)

    def wait_ok(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self._ok():
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
