"""Process entry point: `python -m sortie_workstation`."""

from __future__ import annotations

from sortie_core.runtime import run, run_worker
from sortie_core.settings import load_settings

from .bootstrap import SERVICE, make_build
from .settings import AgentSettings


def main() -> None:
    settings = load_settings(AgentSettings)
    run(run_worker(SERVICE, settings, make_build(settings)))
