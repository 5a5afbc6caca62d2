"""The Microsoft 365 worker's settings and wiring: env prefix, defaults, secrets,
subscriptions."""

from __future__ import annotations

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import (
    LogoutRequested,
    OffboardRequested,
    PreviewRequested,
    ReversalRequested,
)
from sortie_m365.adapters.fake import FakeDirectory
from sortie_m365.bootstrap import make_build as m365_build
from sortie_m365.settings import M365Settings


def test_m365_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert M365Settings().graph_url == "http://127.0.0.1:8081"
    monkeypatch.setenv("SORTIE_M365_GRAPH_URL", "https://graph.microsoft.com")
    monkeypatch.setenv("SORTIE_M365_GRAPH_TOKEN", "tok-123")
    monkeypatch.setenv("SORTIE_M365_REDIS_URL", "redis://m365:6379/0")
    settings = M365Settings()
    assert settings.graph_url == "https://graph.microsoft.com"
    assert settings.graph_token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(settings)
    assert settings.redis_url.get_secret_value() == "redis://m365:6379/0"


async def test_m365_subscribes_to_its_three_commands_and_previews(redis: Redis) -> None:
    directory = FakeDirectory()
    parts = await m365_build(M365Settings(), directory)(RedisBroker(), redis)
    assert [(s.stream, s.group, s.accepts) for s in parts.subscriptions] == [
        (streams.LOGOUT_REQUESTED, streams.GROUP_M365, (LogoutRequested,)),
        (streams.OFFBOARD_REQUESTED, streams.GROUP_M365, (OffboardRequested,)),
        (streams.REVERSAL_REQUESTED, streams.GROUP_M365, (ReversalRequested,)),
        (streams.PREVIEW_REQUESTED, streams.GROUP_M365, (PreviewRequested,)),
    ]
    # A command given up is reported; a preview given up is only dead-lettered.
    assert [s.on_deadletter is not None for s in parts.subscriptions] == [True, True, True, False]
    assert [s.publishes for s in parts.subscriptions][-1] == streams.PREVIEW_ANSWERED
    for hook in parts.on_stop:
        await hook()
    assert directory.closed
