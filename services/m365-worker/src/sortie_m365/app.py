"""Process entry point: `python -m sortie_m365`."""

from __future__ import annotations

import asyncio

from sortie_core.runtime import run_worker
from sortie_core.settings import load_settings

from .bootstrap import SERVICE, make_build
from .settings import M365Settings
from .sizing import sized


def main() -> None:
    settings = asyncio.run(sized(load_settings(M365Settings)))
    asyncio.run(run_worker(SERVICE, settings, make_build(settings)))
