"""A throwaway Redis Sentinel deployment: a primary, a replica and three sentinels, each a
real `redis-server` on a free port (the sentinels with `--sentinel`), owned by the test
or bench that starts it. Sentinel's quorum of 2 and a 1 s `down-after-milliseconds` let a
failover finish within a few seconds of the primary's death."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis

from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until

MASTER = "sortie"


# A replica is fed at once (the default waits 5 s for more replicas to join).
FAST_SYNC = ["--repl-diskless-sync-delay", "0"]


def replicas_of(port: int) -> int:
    """Replicas in sync with the master on `port` (those WAIT can count)."""
    try:
        with Redis(port=port, socket_timeout=0.5) as r:
            info = r.info("replication")
    except Exception:
        return 0
    count = int(info.get("connected_slaves", 0))
    return sum(1 for i in range(count) if info.get(f"slave{i}", {}).get("state") == "online")


@contextmanager
def replicated_pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and one replica in sync with it, without sentinels."""
    primary = RedisServer(extra=FAST_SYNC).start()
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    try:
        wait_until(lambda: replicas_of(primary.port) >= 1, 20, 0.05, "the replica in sync")
        yield primary, replica
    finally:
        replica.cleanup()
        primary.cleanup()


class SentinelGroup:
    def __init__(self, down_after_ms: int = 1000) -> None:
        self.primary = RedisServer(extra=FAST_SYNC)
        self.replica = RedisServer(
            extra=[*FAST_SYNC, "--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self.down_after_ms = down_after_ms
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The data URL the services get (Sentinel mode ignores its host and port)."""
        return self.primary.url

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.url,
            "SORTIE_REDIS_SENTINELS": self.addresses,
            "SORTIE_REDIS_SENTINEL_MASTER": MASTER,
        }

    def start(self) -> SentinelGroup:
        """Start the primary, its replica and the sentinels; on any failure what was
        started is stopped (a fixture that raises never reaches its own cleanup)."""
        try:
            return self._form()
        except BaseException:
            self.cleanup()
            raise

    def _form(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        for port in self.sentinel_ports:
            conf = self.primary.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.primary.dir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
            )
            binary = shutil.which("redis-server") or "redis-server"
            self.sentinels.append(
                subprocess.Popen(
                    [binary, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self.wait(lambda: self._sentinels_agree_on(self.primary.port), "sentinels up")
        self.wait(self._replica_linked, "replica in sync")
        return self

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel knows it."""
        for port in self.sentinel_ports:
            try:
                with Redis(port=port, socket_timeout=0.5) as s:
                    addr = s.sentinel_get_master_addr_by_name(MASTER)
            except Exception:  # noqa: S112 (a sentinel down or not answering yet)
                continue
            if addr:
                return int(addr[1])
        return None

    def _sentinels_agree_on(self, port: int) -> bool:
        try:
            for sentinel_port in self.sentinel_ports:
                with Redis(port=sentinel_port, socket_timeout=0.5) as s:
                    master = s.sentinel_master(MASTER)
                    if int(master["port"]) != port or int(master["num-other-sentinels"]) < 2:
                        return False
        except Exception:
            return False
        return True

    def _replica_linked(self) -> bool:
        return self.replicas_of(self.primary.port) >= 1

    def node(self, port: int) -> RedisServer:
        return self.primary if port == self.primary.port else self.replica

    def standby(self) -> RedisServer:
        """The node that is not the master now."""
        return self.replica if self.node(self.master_port() or 0) is self.primary else self.primary

    def stall_standby(self) -> subprocess.Popen[bytes]:
        """Stop the replica (SIGSTOP) and cut its link: what the master writes from now on
        stays in the master's backlog, not in the replica's socket. Resume it with
        SIGCONT (its process is returned) within the sentinels' down-after time."""
        proc = self.standby().proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        with Redis(port=self.master_port() or self.primary.port, socket_timeout=1) as r:
            r.client_kill_filter(_type="replica")
        return proc

    def kill9_primary(self) -> int:
        """kill -9 of the current master; returns its port."""
        port = self.master_port() or self.primary.port
        node = self.node(port)
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(5)
        node.proc = None
        return port

    def wait_failover(self, old_port: int, timeout: float = 30) -> int:
        """The new master's port, once every sentinel agrees on it."""

        def new_master() -> int | None:
            port = self.master_port()
            if port is not None and port != old_port and self._sentinels_agree_on(port):
                return port
            return None

        port = wait_until(new_master, timeout, 0.1, "a failover")
        assert port is not None
        return port

    def restart(self, port: int) -> None:
        """Start the dead node again (empty, as after a crash without AOF): the sentinels
        turn it into a replica of the new master."""
        self.node(port).start()

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 20) -> None:
        wait_until(check, timeout, 0.05, f"sentinel group: {what}")

    def replicas_of(self, port: int) -> int:
        return replicas_of(port)

    def cleanup(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.primary.cleanup()  # its folder holds the sentinels' files too
        self.replica.cleanup()
