"""State shared by the fake session commands in this folder: a JSON file named by
$SORTIE_FAKE_WS holding the machine's sessions and browser processes. Each command
records its argv, can be told to fail or hang, and prints what the real one prints."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

Sessions = list[dict[str, Any]]


def load() -> dict[str, Any]:
    with open(os.environ["SORTIE_FAKE_WS"], encoding="utf-8") as f:
        state: dict[str, Any] = json.load(f)
    return state


def save(state: dict[str, Any]) -> None:
    with open(os.environ["SORTIE_FAKE_WS"], "w", encoding="utf-8") as f:
        json.dump(state, f)


def start(name: str) -> dict[str, Any]:
    """Record the call; apply a scripted hang or failure for command `name`."""
    state = load()
    state.setdefault("calls", []).append([name, *sys.argv[1:]])
    save(state)
    hang = state.get("hang", {}).get(name)
    if hang:
        time.sleep(float(hang))
    fail = state.get("fail", {}).get(name)
    if fail:
        sys.stderr.write(fail["stderr"] + "\n")
        sys.exit(int(fail.get("rc", 1)))
    return state


def find(state: dict[str, Any], sid: str) -> dict[str, Any] | None:
    return next((s for s in state["sessions"] if str(s["id"]) == sid), None)


def gone(message: str, rc: int = 1) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(rc)
