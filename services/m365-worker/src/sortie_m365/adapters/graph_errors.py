"""Graph's error answers translated into Sortie's error tree.

Throttling: https://learn.microsoft.com/graph/throttling (429, 503, 504 with `Retry-After`
in seconds). Error body: https://learn.microsoft.com/graph/errors (`error.code` is a machine
identifier; `error.message` can echo request content, so it is never copied).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sortie_core.errors import (
    NotFoundError,
    PermanentError,
    SortieError,
    ThrottledError,
    TransientError,
)
from sortie_core.http import parse_retry_after

_GRAPH_CODE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}$")


def safe_code(code: object) -> str:
    return code if isinstance(code, str) and _GRAPH_CODE_RE.fullmatch(code) else "no error code"


def error_for(
    status: int,
    code: object,
    headers: Mapping[str, str] | None,
    what: str,
    *,
    permission: str | None = None,
) -> SortieError:
    """`what` names the operation; `permission` the Graph application permission it needs."""
    code = safe_code(code)
    retry_after = parse_retry_after((headers or {}).get("Retry-After"))
    if status == 429:
        return ThrottledError(
            f"Graph throttled {what} ({code})", code="graph_throttled", retry_after=retry_after
        )
    if status in (503, 504):
        cls = ThrottledError if retry_after is not None else TransientError
        return cls(
            f"Graph unavailable for {what}: HTTP {status} ({code})",
            code="graph_unavailable",
            retry_after=retry_after,
        )
    if status >= 500:
        return TransientError(
            f"Graph server error on {what}: HTTP {status} ({code})", code="graph_server_error"
        )
    if status == 404:
        return NotFoundError(f"user not found in Microsoft 365 ({code})")
    if status == 400:
        return PermanentError(f"Graph refused {what} as invalid ({code})", code="graph_bad_request")
    if status == 401:
        return PermanentError(
            f"Graph did not accept Sortie's credentials for {what} ({code})",
            code="graph_unauthorized",
        )
    if status == 403:
        needs = f"; grant the application permission {permission}" if permission else ""
        return PermanentError(
            f"Sortie lacks the Graph permission for {what} ({code}){needs}",
            code="graph_forbidden",
        )
    return PermanentError(
        f"Graph answered HTTP {status} to {what} ({code})", code=f"graph_http_{status}"
    )
