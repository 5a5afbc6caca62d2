"""The ENT worker's settings and wiring: env prefix, defaults, secrets, subscriptions."""

from __future__ import annotations

from pathlib import Path

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import (
    LogoutRequested,
    OffboardRequested,
    PreviewRequested,
    SsoLogoutRequested,
)
from sortie_ent.adapters.fake import FakeAppLogout, FakeSsoSessions
from sortie_ent.bootstrap import app_tokens
from sortie_ent.bootstrap import make_build as ent_build
from sortie_ent.registry import parse_registry
from sortie_ent.settings import EntSettings


def test_ent_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = EntSettings()
    assert defaults.cas_url == "http://127.0.0.1:8082/cas"
    assert defaults.cas_actuator_user is None and defaults.registry_path is None
    monkeypatch.setenv("SORTIE_ENT_CAS_ACTUATOR_USER", "ops")
    monkeypatch.setenv("SORTIE_ENT_CAS_ACTUATOR_PASSWORD", "hunter2")
    monkeypatch.setenv("SORTIE_ENT_APP_CONCURRENCY", "3")
    monkeypatch.setenv("SORTIE_ENT_APP_TIMEOUT_S", "2.5")
    settings = EntSettings()
    assert settings.cas_actuator_password is not None
    assert settings.cas_actuator_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert (settings.app_concurrency, settings.app_timeout_s) == (3, 2.5)


def test_app_tokens_come_from_the_named_variables() -> None:
    registry = parse_registry(
        "applications:\n"
        "  - {name: a, protocol: http, logout_url: 'https://a.test/', token_env: A_TOKEN}\n"
        "  - {name: b, protocol: http, logout_url: 'https://b.test/', token_env: B_TOKEN}\n"
        "  - {name: c, protocol: http, logout_url: 'https://c.test/'}\n"
    )
    tokens = app_tokens(registry, {"A_TOKEN": "secret-a", "OTHER": "x"})
    assert {k: v.get_secret_value() for k, v in tokens.items()} == {"a": "secret-a"}


def test_app_tokens_come_from_a_file_named_by_token_env_file(tmp_path: Path) -> None:
    registry = parse_registry(
        "applications:\n"
        "  - {name: a, protocol: http, logout_url: 'https://a.test/', token_env: A_TOKEN}\n"
    )
    (tmp_path / "a").write_text("secret-from-file\n")
    tokens = app_tokens(registry, {"A_TOKEN_FILE": str(tmp_path / "a")})
    assert tokens["a"].get_secret_value() == "secret-from-file"


async def test_ent_subscribes_to_three_commands_and_previews(redis: Redis) -> None:
    apps, sso = FakeAppLogout(), FakeSsoSessions()
    build = ent_build(EntSettings(), registry=parse_registry(""), apps=apps, sso=sso)
    parts = await build(RedisBroker(), redis)
    assert [(s.stream, s.group, s.accepts) for s in parts.subscriptions] == [
        (streams.LOGOUT_REQUESTED, streams.GROUP_ENT, (LogoutRequested,)),
        (streams.OFFBOARD_REQUESTED, streams.GROUP_ENT, (OffboardRequested,)),
        (streams.SSO_LOGOUT_REQUESTED, streams.GROUP_ENT, (SsoLogoutRequested,)),
        (streams.PREVIEW_REQUESTED, streams.GROUP_ENT, (PreviewRequested,)),
    ]
    for hook in parts.on_stop:
        await hook()
    assert apps.closed and sso.closed
