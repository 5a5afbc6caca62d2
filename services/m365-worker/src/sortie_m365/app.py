"""Process entry point: `python -m sortie_m365`."""

from __future__ import annotations

from sortie_core.runtime import run, run_worker
from sortie_core.settings import load_settings

from .bootstrap import SERVICE, make_build
from .settings import M365Settings


def main() -> None:
    settings = load_settings(M365Settings)
    run(run_worker(SERVICE, settings, make_build(settings)))
