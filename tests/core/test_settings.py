"""Settings from files (`X_FILE`), the Redis password apart from its URL, and the one-line
refusals of a bad or production-unready configuration, run as the real entrypoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sortie_core.settings import SettingsError, read_settings
from sortie_ent.settings import EntSettings
from sortie_m365.settings import M365Settings
from sortie_orchestrator.settings import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("SORTIE_", "REDIS_")):
            monkeypatch.delenv(key)


def secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_secret_setting_reads_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SORTIE_M365_CLIENT_SECRET_FILE", secret(tmp_path, "cs", "s3cret\n"))
    monkeypatch.setenv("SORTIE_M365_CLIENT_SECRET", "ignored-when-a-file-is-given")
    monkeypatch.setenv("SORTIE_ENT_CAS_ACTUATOR_PASSWORD_FILE", secret(tmp_path, "cas", "pw"))
    assert M365Settings().client_secret.get_secret_value() == "s3cret"
    assert EntSettings().cas_actuator_password is not None
    assert EntSettings().cas_actuator_password.get_secret_value() == "pw"


def test_orchestrator_tokens_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = [{"name": "ent", "token_sha256": "a" * 64, "scopes": ["logout:write"]}]
    path = secret(tmp_path, "tokens", json.dumps(tokens))
    monkeypatch.setenv("SORTIE_ORCHESTRATOR_TOKENS_FILE", path)
    assert [t.name for t in OrchestratorSettings().tokens] == ["ent"]


def test_redis_password_file_goes_into_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SORTIE_REDIS_URL", "redis://orchestrator@redis:6379/0")
    monkeypatch.setenv("SORTIE_REDIS_PASSWORD_FILE", secret(tmp_path, "pw", "p@ss/w:rd\n"))
    url = OrchestratorSettings().redis_url.get_secret_value()
    assert url == "redis://orchestrator:p%40ss%2Fw%3Ard@redis:6379/0"


def test_an_unreadable_secret_file_is_one_line_without_content(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SORTIE_M365_CLIENT_SECRET_FILE", "/nonexistent/secret")
    with pytest.raises(SettingsError) as err:
        read_settings(M365Settings)
    why = "cannot read /nonexistent/secret (No such file or directory)"
    assert err.value.lines == [f"SORTIE_M365_CLIENT_SECRET_FILE: {why}"]


def test_a_demo_configuration_is_accepted_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORTIE_M365_GRAPH_TOKEN", "change-me")
    assert read_settings(M365Settings).graph_token.get_secret_value() == "change-me"


def test_production_refuses_placeholders_and_demo_shortcuts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SORTIE_MODE", "production")
    monkeypatch.setenv("SORTIE_M365_GRAPH_TOKEN", "change-me")
    monkeypatch.setenv("SORTIE_M365_TENANT_ID", "<tenant id>")
    with pytest.raises(SettingsError) as err:
        read_settings(M365Settings)
    names = [line.split(":")[0] for line in err.value.lines]
    assert names == [
        "SORTIE_M365_TENANT_ID",
        "SORTIE_M365_GRAPH_TOKEN",
        "SORTIE_REDIS_URL",
        "SORTIE_M365_GRAPH_TOKEN",
        "SORTIE_M365_GRAPH_URL",
        "SORTIE_M365_CLIENT_ID",
        "SORTIE_M365_CLIENT_SECRET_FILE or SORTIE_M365_CERTIFICATE_PATH",
    ]
    assert not any("change-me" in line for line in err.value.lines)


def run_entrypoint(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SORTIE_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_env_example_in_production_mode_fails_with_one_line_per_value() -> None:
    """deploy/env.example as shipped, switched to production: clear lines, no traceback."""
    env = {}
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    env["SORTIE_MODE"] = "production"
    env["SORTIE_REDIS_URL"] = "redis://127.0.0.1:1/0"
    proc = run_entrypoint("sortie_orchestrator", env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("configuration: SORTIE_") for line in lines), lines
    assert any("SORTIE_ORCHESTRATOR_TOKENS" in line for line in lines)
    assert any("SORTIE_REDIS_URL" in line for line in lines)


def test_a_malformed_value_is_one_line_not_a_traceback() -> None:
    proc = run_entrypoint(
        "sortie_orchestrator",
        {"SORTIE_ORCHESTRATOR_TOKENS": '[{"name":"ent","token_sha256":"<64 hex>","scopes":[]}]'},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "configuration: SORTIE_ORCHESTRATOR_TOKENS (0.token_sha256): "
        "String should match pattern '^[0-9a-f]{64}$'"
    )


async def test_the_url_and_password_file_open_a_redis_with_default_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As compose runs it: `default` off, the service's user in the URL, its password in a
    file. An anonymous client is refused; the settings' URL gets in."""
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError, ResponseError

    from sortie_testkit.redis_server import RedisServer

    server = RedisServer().start()
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "orchestrator", "on", ">s3cret/pw", "~*", "&*", "+@all"
        )
        await admin.execute_command("ACL", "SETUSER", "default", "off")
        await admin.aclose()
        host = server.url.removeprefix("redis://")
        monkeypatch.setenv("SORTIE_REDIS_URL", f"redis://orchestrator@{host}")
        monkeypatch.setenv("SORTIE_REDIS_PASSWORD_FILE", secret(tmp_path, "pw", "s3cret/pw\n"))
        client = Redis.from_url(OrchestratorSettings().redis_url.get_secret_value())
        assert await client.execute_command("ACL", "WHOAMI") in (b"orchestrator", "orchestrator")
        await client.aclose()
        anonymous = Redis.from_url(server.url)
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.ping()
        await anonymous.aclose()
    finally:
        server.cleanup()
