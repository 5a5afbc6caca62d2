"""A throwaway local Redis Cluster for the benches (`bench/e2e.py --cluster`,
`bench/chaos.py cluster-kill`): `redis-server --cluster-enabled yes` on free ports, slots
assigned by `redis-cli --cluster create`, optionally one replica per primary. Benches do
not import `tests`, so this is their own small copy of tests/redis_cluster.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.dir), "--cluster-enabled", "yes"]
        args += ["--cluster-node-timeout", "2000", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-port", str(_free_port())]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _until(lambda: _ping(self.port), f"redis-server on {self.port}", 10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def info(self, section: str) -> dict[str, object]:
        with Redis(port=self.port, socket_timeout=1) as r:
            return dict(r.info(section))


def _ping(port: int) -> bool:
    try:
        with Redis(port=port, socket_timeout=0.3) as r:
            return bool(r.ping())
    except (OSError, RedisError):
        return False


def _until(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not in time")
        time.sleep(0.05)


@dataclass
class LocalCluster:
    primaries: int = 3
    replicas: int = 0
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "SORTIE_REDIS_CLUSTER": "1"}

    def start(self) -> LocalCluster:
        root = Path(tempfile.mkdtemp(prefix="sortie-cluster-"))
        for i in range(self.primaries * (1 + self.replicas)):
            (root / str(i)).mkdir()
            self.nodes.append(Node(_free_port(), root / str(i)))
            self.nodes[-1].start()
        cli = shutil.which("redis-cli") or "redis-cli"
        args = [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)]
        args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            timeout=60,
        )
        _until(self.ok, "cluster_state:ok", 60)
        return self

    def ok(self) -> bool:
        try:
            for node in (n for n in self.nodes if n.alive):
                info = _cluster_info(node.port)
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_known_nodes", 0)) < len(self.nodes):
                    return False
        except (OSError, RedisError):
            return False
        return True

    def live_primaries(self) -> list[Node]:
        return [n for n in self.nodes if n.alive and n.info("replication")["role"] == "master"]

    def kill9(self, node: Node) -> None:
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(5)

    def wait_promoted(self, primaries: int, timeout: float = 30) -> None:
        _until(lambda: len(self.live_primaries()) >= primaries and self.ok(), "failover", timeout)

    def restart_as_replica(self, node: Node, timeout: float = 30) -> None:
        node.start()

        def replica() -> bool:
            info = node.info("replication")
            return info["role"] == "slave" and info.get("master_link_status") == "up"

        _until(replica, "the restarted node as a replica", timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive and node.proc is not None:
                node.proc.terminate()
                node.proc.wait(5)
        if self.nodes:
            shutil.rmtree(self.nodes[0].dir.parent, ignore_errors=True)


def _cluster_info(port: int) -> dict[str, str]:
    with Redis(port=port, socket_timeout=0.5) as r:
        return dict(r.cluster("info"))
