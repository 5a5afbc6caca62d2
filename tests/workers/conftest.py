from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.workers.stub_http import ServedApp


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """`serve(asgi_app)` runs the app on a free port for this test; returns its base URL."""
    started: list[ServedApp] = []

    def _serve(app: Any) -> str:
        served = ServedApp(app).start()
        started.append(served)
        return served.url

    yield _serve
    for served in started:
        served.stop()
