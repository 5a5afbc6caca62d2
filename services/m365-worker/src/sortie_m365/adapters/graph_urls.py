"""URLs of Graph requests, as msgraph-sdk sends them, at a fraction of its CPU.

kiota expands a request's RFC 6570 template (std-uritemplate) each time its URL is read, and
its adapter reads it twice per request: ~0.1 ms of CPU each, the largest share of a call's
cost in the SDK (py-spy, bench/m365_logout_cpu.py). Here a request's URL is expanded once
and set on it; the per-user calls a logout makes are built by hand, as the SDK would build
them (tests/m365/test_graph_urls.py compares them with the SDK's).

The SDK encodes OData's query option names (`%24select`); its ParametersNameDecodingHandler
middleware turns them back (`$select`) before sending, since not every Graph workload reads
them encoded. Sortie's client has no middleware, so `wire()` does that, for every request.
Inside a `$batch`, items keep the SDK's encoded names, as before (the middleware never saw
them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

# ParametersNameDecodingHandlerOption's defaults (kiota-http): `.`, `-`, `~`, `$`.
_ENCODED_NAMES: tuple[tuple[str, str], ...] = (("%2E", "."), ("%2e", "."), ("%2D", "-"))
_ENCODED_NAMES += (("%2d", "-"), ("%7E", "~"), ("%7e", "~"), ("%24", "$"))
# What msgraph-sdk's models write as the type of a user sent in a body.
USER_TYPE = {"@odata.type": "#microsoft.graph.user"}


@dataclass(frozen=True, slots=True)
class GraphCall:
    """One request to Graph: `url` relative to the version's base (as in a `$batch` item,
    query names encoded as the SDK does), `body` made when it is sent (None: no body)."""

    method: Method
    url: str
    body: Callable[[], dict[str, Any]] | None = field(default=None, compare=False)
    # The write's read-back, sent with it when it goes alone (graph_batch.py).
    then: GraphCall | None = None


def user_url(user: str, suffix: str = "", select: Sequence[str] = ()) -> str:
    """`/users/{user}{suffix}`, with `?$select=` when fields are given."""
    url = "/users/" + quote(user, safe="") + suffix
    return url + _select(tuple(select)) if select else url


@lru_cache(maxsize=256)
def _select(fields: tuple[str, ...]) -> str:
    return "?%24select=" + ",".join(quote(f, safe="") for f in fields)


def wire(url: str) -> str:
    """The URL as the SDK's middleware would send it: query option names decoded."""
    path, sep, query = url.partition("?")
    if not sep or "%" not in query:
        return url
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if "%" in name:
            for code, char in _ENCODED_NAMES:
                name = name.replace(code, char)
        parts.append(name + eq + value)
    return path + "?" + "&".join(parts)


def prepared(info: RequestInformation, base_url: str) -> RequestInformation:
    """`info` with its URL expanded once, as sent (the adapter reads it twice)."""
    info.path_parameters["baseurl"] = base_url
    info.url = wire(info.url)
    return info
