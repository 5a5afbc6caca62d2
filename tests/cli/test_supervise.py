"""`sortie up` restarts a process that dies, with a growing back-off, and says so."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sortie_cli import stack as stack_mod
from sortie_cli.stack import Proc, Stack
from sortie_testkit.waiting import wait_until


def test_a_dead_process_is_restarted_after_a_back_off(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stack_mod, "RESTART_BACKOFF_S", (0.2, 0.4))
    marker = tmp_path / "runs"
    # Each run appends a line, then dies at once.
    code = f"open({str(marker)!r}, 'a').write('run\\n'); raise SystemExit(3)"
    proc = Proc("flaky", [sys.executable, "-c", code], {}, None, tmp_path / "flaky.log")
    stack = Stack(tmp_path, base_env={})
    stack.procs = [proc]
    proc.start()
    said: list[str] = []
    restarts: list[float] = []
    began = time.monotonic()

    def restarted_twice() -> bool:
        if stack.supervise(said.append):
            restarts.append(time.monotonic() - began)
        return len(restarts) >= 2

    wait_until(restarted_twice, 10, 0.02, "two restarts")
    assert len(restarts) == 2
    # The second restart waited longer than the first: 0.2 s, then 0.4 s more.
    assert restarts[0] >= 0.2 and restarts[1] - restarts[0] >= 0.4
    assert "flaky exited (code 3); restarting it in 0.2s (restart 1)" in said[0]
    assert said[1] == "sortie up: flaky restarted"
    wait_until(lambda: marker.read_text().count("run") >= 3, 5, 0.02, "the third run")
    assert marker.read_text().count("run") == 3
