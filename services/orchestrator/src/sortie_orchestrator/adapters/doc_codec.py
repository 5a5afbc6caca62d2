"""How a request's state is written in its Redis hash (`doc`), and read back.

A request in flight is plain JSON: it changes at every report and is read as often. A
finished one is kept for the audit until its retention ends (90 days by default), so it is
compacted: the same state without the fields that hold their default value, deflated with
a preset dictionary of what request states have in common (field names, actions, outcomes,
evidence sources). Nothing is dropped: reading it back gives the very same state, every
step's outcome, evidence, items and timings included. A typical finished logout takes
~5 kB as JSON and ~0.4 kB compacted (`bench/request_memory.py` measures it).

Format: JSON starts with `{`; a compacted doc starts with a version byte (`\\x01`: raw
deflate, dictionary v1) and the deflate stream. The dictionary of a version never
changes, or the docs written with it could not be read; a new one gets a new version byte.
"""

from __future__ import annotations

import zlib
from functools import cache
from importlib import resources

from sortie_orchestrator.saga import SagaState

_V1 = b"\x01"
# Raw deflate (no zlib header and checksum: the hash field is its own frame).
_WBITS = -15


@cache
def _dictionary_v1() -> bytes:
    # Read on first use, not at import (no I/O at import time).
    return resources.files(__package__).joinpath("doc-dictionary-v1.json").read_bytes()


def encode(state: SagaState) -> bytes:
    """The doc to store: compacted once the request is finished, plain JSON before."""
    plain = state.model_dump_json(exclude_defaults=state.finished).encode()
    if not state.finished:
        return plain
    deflate = zlib.compressobj(
        9, zlib.DEFLATED, _WBITS, 9, zlib.Z_DEFAULT_STRATEGY, _dictionary_v1()
    )
    return _V1 + deflate.compress(plain) + deflate.flush()


def decode(raw: bytes | str) -> SagaState:
    if isinstance(raw, str):
        raw = raw.encode()
    if raw[:1] == _V1:
        inflate = zlib.decompressobj(_WBITS, _dictionary_v1())
        raw = inflate.decompress(raw[1:]) + inflate.flush()
    return SagaState.model_validate_json(raw)
