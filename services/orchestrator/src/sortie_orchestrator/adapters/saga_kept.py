"""The docs one orchestrator process wrote last, by request: a transition starts from one
without reading it back from Redis.

Safe because every transition is a compare-and-set on the request's version: when another
replica wrote since, the commit fails (`saga_store.Conflict`) and the store reads Redis's
doc. A transition found to have nothing to do proves nothing (no commit), so the store
judges it again on Redis's doc. A finished request's doc is stored compacted and changes
rarely: it is not kept. Bounded, least recently written first out.
"""

from __future__ import annotations

from collections import OrderedDict


class KeptDocs:
    def __init__(self, size: int) -> None:
        self.size = size
        self._docs: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._docs

    def get(self, request_id: str) -> tuple[int, bytes] | None:
        """(version, doc) as this process wrote it, or None."""
        return self._docs.get(request_id)

    def written(self, request_id: str, version: int, doc: bytes, finished: bool) -> None:
        if finished or not self.size:
            self._docs.pop(request_id, None)
            return
        self._docs[request_id] = (version, doc)
        self._docs.move_to_end(request_id)
        while len(self._docs) > self.size:
            self._docs.popitem(last=False)

    def drop(self, request_id: str) -> None:
        self._docs.pop(request_id, None)
