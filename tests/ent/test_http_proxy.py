"""The ENT worker's HTTP session reads HTTP(S)_PROXY and NO_PROXY once per host (aiohttp
with trust_env would read them, and ~/.netrc, in a thread on every request)."""

from __future__ import annotations

import pytest
from yarl import URL

from sortie_ent.adapters.http import Http


def test_proxy_from_environment_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.school.example:3128")
    monkeypatch.setenv("NO_PROXY", "cas.school.example")
    http = Http({})
    proxy, _auth = http._proxy(URL("http://apps.school.example/logout"))
    assert proxy == URL("http://proxy.school.example:3128")
    assert http._proxy(URL("http://cas.school.example/cas")) == (None, None)
    # Cached: a later change of the environment is not read again for a known host.
    monkeypatch.delenv("HTTP_PROXY")
    assert http._proxy(URL("http://apps.school.example/other"))[0] == proxy
    assert http._proxy(URL("http://esper.school.example/"))[0] is None
