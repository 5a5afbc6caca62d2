"""A throwaway `redis-server` on a free port, owned by the test session or bench that
starts it; `free_port` is the CLI's (one implementation)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sortie_cli.stack import free_port
from sortie_testkit.waiting import wait_until

__all__ = ["RedisServer", "free_port"]


class RedisServer:
    def __init__(self, *, appendonly: bool = False, extra: list[str] | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/bootstrap.sh")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sortie-redis-"))
        self.appendonly = appendonly
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_with_auth(self) -> RedisServer:
        """Start a server whose `default` user is off: ready once it answers NOAUTH."""
        return self.start(ready=(b"+PONG", b"-NOAUTH"))

    def start(self, ready: tuple[bytes, ...] = (b"+PONG",)) -> RedisServer:
        args = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self._answers(ready), 10, 0.05, f"redis-server on {self.port}")
        return self

    def _answers(self, ready: tuple[bytes, ...]) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(ready)
        return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
