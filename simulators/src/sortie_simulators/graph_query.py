"""`GET /users?$filter=… eq '…'`, the lookups Sortie makes, with Graph's rules.

Source: "Advanced query capabilities on Microsoft Entra ID objects"
(https://learn.microsoft.com/graph/aad-advanced-queries), table "Support for filter by
properties of directory objects": `eq` works by default on `mail`, `userPrincipalName`
and `employeeId`; on `onPremisesSamAccountName` only as an advanced query, that is with
the header `ConsistencyLevel: eventual` and `$count=true`, else Graph answers 400
`Request_UnsupportedQuery`. `$count=true` without the header is silently ignored.
Directory string comparisons are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .graph_model import GRAPH_METADATA, GraphUser, Reply, bad_request, select_properties

FILTER_RE = re.compile(r"([A-Za-z]+) eq '((?:[^']|'')*)'")
# $filter property -> (GraphUser attribute, whether `eq` needs an advanced query)
FILTERABLE: dict[str, tuple[str, bool]] = {
    "mail": ("mail", False),
    "userPrincipalName": ("user_principal_name", False),
    "employeeId": ("employee_id", False),
    "onPremisesSamAccountName": ("on_premises_sam_account_name", True),
}


def unsupported(prop: str) -> Reply:
    return bad_request(
        f"Unsupported or invalid query filter clause specified for property '{prop[:80]}' "
        "of resource 'User'.",
        "Request_UnsupportedQuery",
    )


def list_users(users: Iterable[GraphUser], query: dict[str, str], consistency: str | None) -> Reply:
    advanced = (consistency or "").lower() == "eventual" and query.get("$count") == "true"
    flt = query.get("$filter")
    found = list(users)
    if flt is not None:
        match = FILTER_RE.fullmatch(flt.strip())
        if match is None:
            return bad_request(f"Unsupported or invalid query filter clause: {flt[:100]}")
        prop, literal = match.group(1), match.group(2).replace("''", "'").lower()
        if prop not in FILTERABLE:
            return unsupported(prop)
        attr, needs_advanced = FILTERABLE[prop]
        if needs_advanced and not advanced:
            return unsupported(prop)
        found = [u for u in found if (getattr(u, attr) or "").lower() == literal]
    body: dict[str, Any] = {"@odata.context": f"{GRAPH_METADATA}#users"}
    if advanced:
        body["@odata.count"] = len(found)
    top = query.get("$top")
    if top is not None:
        if not top.isdigit() or not 1 <= int(top) <= 999:
            return bad_request(f"Invalid page size specified: '{top[:20]}'.")
        found = found[: int(top)]
    views = [select_properties(u.graph_view(), query.get("$select")) for u in found]
    for view in views:
        view.pop("@odata.context", None)
    body["value"] = views
    return Reply(200, body)
