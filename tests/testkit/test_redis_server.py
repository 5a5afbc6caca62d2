"""`RedisServer`: a port taken between drawing it and starting the server (another process
drew it too) costs a new draw, not the test; a restart keeps its port; a group that fails
to start leaves nothing running."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from sortie_testkit import redis_cluster
from sortie_testkit.redis_cluster import RedisClusterGroup
from sortie_testkit.redis_server import RedisServer


def _occupy(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_taken_port_is_drawn_again() -> None:
    server = RedisServer()
    taken = server.port
    with _occupy(taken):
        server.start()
        try:
            assert server.port != taken
            assert server.proc is not None and server.proc.poll() is None
        finally:
            server.cleanup()


def test_a_taken_cluster_bus_port_is_drawn_again() -> None:
    server = RedisServer(extra=["--cluster-enabled", "yes", "--cluster-port", "0"])
    bus = socket.socket()
    bus.bind(("127.0.0.1", 0))
    bus.listen()
    server.extra[-1] = str(bus.getsockname()[1])
    with bus:
        server.start()
        try:
            assert server.extra[-1] != str(bus.getsockname()[1])
            assert server.proc is not None and server.proc.poll() is None
        finally:
            server.cleanup()


def test_a_restart_keeps_its_port_and_says_why_it_failed() -> None:
    server = RedisServer().start()
    port = server.port
    server.stop()
    try:
        with _occupy(port), pytest.raises(RuntimeError, match="did not start"):
            server.start()
        assert server.port == port
    finally:
        server.cleanup()


def test_a_cluster_that_fails_to_form_leaves_no_server_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = RedisClusterGroup(primaries=3, replicas=0)
    real_which = shutil.which
    monkeypatch.setattr(
        redis_cluster.shutil,
        "which",
        lambda name: "/bin/false" if name == "redis-cli" else real_which(name),
    )
    with pytest.raises(subprocess.CalledProcessError):
        group.start()
    assert [node.proc for node in group.nodes] == [None, None, None]
