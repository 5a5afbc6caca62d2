"""`settle_heap`: start-up's objects leave the collector's generations, so a full
collection later walks only what the process made since (a shorter pause)."""

from __future__ import annotations

import gc

from sortie_core.runtime import settle_heap


def test_start_up_objects_are_frozen_out_of_collections() -> None:
    kept = [{"n": n} for n in range(20_000)]  # start-up state, alive for good
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(kept)
        walked = sum(len(gc.get_objects(generation)) for generation in range(3))
        assert walked < gc.get_freeze_count()
    finally:
        gc.unfreeze()
