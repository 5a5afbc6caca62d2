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


START_ATTEMPTS = 3


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
        self._ran = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start_with_auth(self) -> RedisServer:
        """Start a server whose `default` user is off: ready once it answers NOAUTH."""
        return self.start(ready=(b"+PONG", b"-NOAUTH"))

    def start(self, ready: tuple[bytes, ...] = (b"+PONG",)) -> RedisServer:
        """Start and wait until it answers. Ports are drawn free when the server is built
        but may be taken before it starts (another process drew them too): a server that
        exits at once is started again on newly drawn ports (its bus port too), unless it
        ran before (a restart keeps its port)."""
        for attempt in range(START_ATTEMPTS):
            self.proc = subprocess.Popen(
                self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_until(lambda: self._answers(ready) or self._exited(), 10, 0.05, self._what)
            except BaseException:
                self.stop()  # never answered: not left running behind the failure
                raise
            if not self._exited():
                self._ran = True
                return self
            if self._ran:  # a restart keeps its port: its clients know no other
                break
            if attempt + 1 < START_ATTEMPTS:
                self._redraw_ports()
        raise RuntimeError(f"{self._what} did not start: {self._log()}")

    @property
    def _what(self) -> str:
        return f"redis-server on {self.port}"

    def _args(self) -> list[str]:
        return [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.dir),
            "--logfile",
            str(self.dir / "redis.log"),
            "--appendonly",
            "yes" if self.appendonly else "no",
            *self.extra,
        ]

    def _exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _redraw_ports(self) -> None:
        self.port = free_port()
        if "--cluster-port" in self.extra:
            at = self.extra.index("--cluster-port") + 1
            self.extra[at] = str(free_port())

    def _log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "redis.log").read_text()[-400:]
        return "(no log)"

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
