"""SCIM searches (RFC 7644 section 3.4.2): scim2-models parses and evaluates the filter;
this module only picks the candidates. An equality on the unique name, `externalId` or
`id` (alone, or as one term of an `and`) reads an index; any other filter reads the
resources in creation order, at most MAX_SCAN of them, and matches each."""

from __future__ import annotations

from typing import Any

from scim2_models import ScimFilter, SearchRequest
from scim2_models.path import CompareOperator, Comparison, LogicalExpr, LogicalOperator

from sortie_orchestrator.adapters.scim_store import Stored
from sortie_orchestrator.http.scim.lifecycle import Kind, from_doc, hydrate_many

MAX_SCAN = 10_000


def _indexed(node: Any, name: str) -> tuple[str, str] | None:
    if isinstance(node, Comparison):
        path = node.attr_path
        attr = path.attr.lower()
        if (
            node.op == CompareOperator.eq
            and path.sub_attr is None
            and isinstance(node.value, str)
            and attr in (name.lower(), "externalid", "id")
        ):
            return attr, node.value
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        for term in node.terms:
            found = _indexed(term, name)
            if found:
                return found
    return None


async def _candidates(
    kind: Kind, text: str | None, start: int, stop: int | None
) -> tuple[list[Stored], int | None]:
    """Candidates, and the total when no filter narrows them (then they are the page)."""
    store = kind.store
    if not text:
        ids, total = await store.page(start, (stop - start) if stop is not None else 10**6)
        return await store.many(ids), total
    found = _indexed(ScimFilter(text).ast, store.kind.name)
    if found is None:
        return await store.many(await store.all_ids(MAX_SCAN)), None
    attr, value = found
    if attr == "id":
        ids = [value] if len(value) <= 64 else []
    elif attr == "externalid":
        ids = await store.by_external_id(value)
    else:
        ids = await store.by_name(value)
    return await store.many(ids), None


async def search(kinds: list[Kind], req: SearchRequest[Any], base: str) -> tuple[int, list[Any]]:
    """(totalResults, the page of resources) for a validated search request. Only a filter
    naming `groups` needs a user's groups to match; otherwise only the page reads them."""
    start, stop = req.start_index_0 or 0, req.stop_index_0
    text = str(req.filter) if req.filter else None
    if len(kinds) == 1 and text is None:
        stored, total = await _candidates(kinds[0], None, start, stop)
        return int(total or 0), await hydrate_many(kinds[0], stored, base)
    matched: list[tuple[Kind, Stored]] = []
    for kind in kinds:
        stored, _ = await _candidates(kind, text, 0, None)
        bound = ScimFilter[kind.model](text) if text else None  # type: ignore[name-defined]
        needs_groups = "groups" in (text or "").lower()
        resources = await hydrate_many(kind, stored, base) if needs_groups else None
        for n, item in enumerate(stored):
            resource = resources[n] if resources else from_doc(kind, item.doc)
            if bound is None or bound.match(resource):
                matched.append((kind, item))
    page: list[Any] = []
    for kind, item in matched[start:stop]:
        page += await hydrate_many(kind, [item], base)
    return len(matched), page
