"""Property-based fuzzing of the HTTP API: schemathesis generates requests from the
OpenAPI document served by a real orchestrator (over a real redis-server) and checks
that no answer is a 5xx. Bounded: a fixed seed and 20 examples per operation."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.live import TOKEN, live_orchestrator


def test_no_server_error_under_fuzzing(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed: run scripts/bootstrap.sh"
    with live_orchestrator() as url:
        run = subprocess.run(
            [
                st,
                "run",
                f"{url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--max-examples",
                "20",
                "--seed",
                "42",
                "--workers",
                "1",
                "--no-color",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            cwd=tmp_path,  # its crash cache stays out of the repository
        )
    out = run.stdout
    summary = re.search(r"(\d+) generated, (\d+) passed", out)
    print(out[-1500:])
    assert run.returncode == 0, out[-6000:] + run.stderr[-2000:]
    assert summary, out[-3000:]
    generated, passed = int(summary.group(1)), int(summary.group(2))
    assert generated == passed and generated >= 500
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) >= 15
