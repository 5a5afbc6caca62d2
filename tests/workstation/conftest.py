"""A fake machine: the commands in `bin/` first on PATH, their state in a JSON file."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BIN = Path(__file__).parent / "bin"


class Machine:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, **state: Any) -> None:
        current = self.state() if self.path.exists() else {"sessions": [], "calls": []}
        current.update(state)
        self.path.write_text(json.dumps(current), encoding="utf-8")

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    @property
    def sessions(self) -> list[dict[str, Any]]:
        return list(self.state()["sessions"])

    @property
    def calls(self) -> list[list[str]]:
        return [list(c) for c in self.state()["calls"]]


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    m = Machine(tmp_path / "machine.json")
    m.set(sessions=[])
    # The fakes run with this interpreter's `python3`, ahead of any real command.
    path = os.pathsep.join([str(BIN), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("SORTIE_FAKE_WS", str(m.path))
    yield m


# The orchestrator in-process with its HTTP client (tests/orchestrator/conftest.py).
from tests.orchestrator.conftest import client, orchestrator  # noqa: E402, F401
