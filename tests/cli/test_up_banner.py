"""`sortie up`'s banner, its output kept by something other than a person's terminal (a
file, a CI log): the generated API token is not in it, only where it is kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sortie_testkit.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_a_generated_token_stays_out_of_an_output_that_is_not_a_terminal(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "SORTIE_DEV_TOKEN"}
    cli = Path(sys.executable).with_name("sortie")
    workdir, out = tmp_path / "stack", tmp_path / "out.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [str(cli), "--workdir", str(workdir), "up", "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until(lambda: "Sortie is up." in out.read_text(), 120, 0.1, "the banner")
        token = json.loads((workdir / "stack.json").read_text())["token"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    printed = out.read_text()
    assert len(token) >= 32
    assert token not in printed
    assert f"token        in {workdir / 'stack.json'} (owner-only)" in printed
