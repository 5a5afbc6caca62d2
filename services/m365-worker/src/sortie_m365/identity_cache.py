"""Resolved Microsoft 365 identities, kept a while per process.

A logout or offboarding names its subject the same way each time, and the same user is
often named again within minutes: the user Graph resolved is kept (bounded, least recently
used first out, each entry for `ttl_s`) under the identifiers tried, so the next request
saves the lookup's round trip. Any `not_found` from Graph for that user forgets it, and
the request resolves it again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .adapters import M365User

Key = tuple[tuple[str, str], ...]


@dataclass
class IdentityCache:
    size: int = 10_000
    ttl_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[Key, tuple[M365User, float, str]] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0

    def get(self, key: Key) -> tuple[M365User, str] | None:
        """The user and the lookup that found it, unless expired or unknown."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self.clock():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0], entry[2]

    def put(self, key: Key, user: M365User, how: str) -> None:
        self._entries[key] = (user, self.clock() + self.ttl_s, how)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, user_id: str) -> None:
        for key in [k for k, (u, _, _) in self._entries.items() if u.id == user_id]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
