"""Process entry point: `python -m sortie_m365`."""

from __future__ import annotations

from sortie_core.runtime import run, run_worker
from sortie_core.settings import load_settings

from .bootstrap import SERVICE, make_build
from .settings import M365Settings
from .sizing import sized


def main() -> None:
    run(_main())


async def _main() -> None:
    # The worker's concurrency is sized from Graph's quota and the latency it measured.
    settings = await sized(load_settings(M365Settings))
    await run_worker(SERVICE, settings, make_build(settings))
