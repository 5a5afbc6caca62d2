"""What the compose services would read, without a Docker engine: deploy/init-secrets.sh run
for real in a copy of deploy/, then each service's settings loaded from env.example plus
the compose `environment:`, with /run/secrets/<name> and the bind mounts mapped to the
files compose would mount. As shipped it is a working demo; in production mode it is
refused, one line per value to fill in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sortie_core.settings import ServiceSettings, SettingsError, read_settings
from sortie_ent.bootstrap import app_tokens, make_signer, read_registry
from sortie_ent.settings import EntSettings
from sortie_m365.settings import M365Settings
from sortie_orchestrator.settings import OrchestratorSettings
from sortie_workstation.settings import AgentSettings
from tests.deploy.test_deploy import interpolate

ROOT = Path(__file__).resolve().parents[2]
CLASSES: dict[str, type[ServiceSettings]] = {
    "orchestrator": OrchestratorSettings,
    "m365-worker": M365Settings,
    "ent-worker": EntSettings,
    "workstation-agent-demo": AgentSettings,
}
REDIS_FILES = [
    f"redis-{u}.password"
    for u in ("orchestrator", "m365-worker", "ent-worker", "exporter", "agent-pc-101")
]


def init_secrets(deploy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(deploy / "init-secrets.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy, ignore=shutil.ignore_patterns(".env"))
    for path in (copy / "secrets").iterdir():
        if path.name != ".gitignore":
            path.unlink() if path.is_file() else shutil.rmtree(path)
    return copy


def test_init_secrets_makes_every_file_once_and_names_what_redis_acl_must_write(
    deploy: Path,
) -> None:
    secrets = deploy / "secrets"
    first = init_secrets(deploy)
    assert first.returncode == 1  # the Redis ACL is `sortie redis-acl`'s
    assert "still missing: " + " ".join([*REDIS_FILES, "redis-users.acl"]) in first.stderr
    compose = yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text()))
    for secret in compose["secrets"].values():
        name = secret["file"].removeprefix("./deploy/secrets/")
        assert (secrets / name).exists() or name.startswith("redis-"), name
    assert (secrets / "tls").is_dir()
    assert oct((secrets).stat().st_mode & 0o777) == "0o700"
    tokens = (secrets / "orchestrator_tokens.json").read_text()
    assert "token_sha256" in tokens and '"token"' not in tokens  # no usable token at rest
    shown = first.stderr.split("(shown once): ")[1].split()[0]
    assert shown not in tokens
    before = {p.name: p.read_bytes() for p in secrets.iterdir() if p.is_file()}
    for name in [*REDIS_FILES, "redis-users.acl"]:
        (secrets / name).write_text("x")
    second = init_secrets(deploy)
    assert second.returncode == 0, second.stderr
    assert "wrote" not in second.stderr and "shown once" not in second.stderr
    assert all((secrets / n).read_bytes() == b for n, b in before.items())


def service_env(deploy: Path, service: str, mode: str) -> dict[str, str]:
    """The variables compose gives `service`, paths mapped onto the copy of deploy/."""
    compose = yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text()))
    env: dict[str, str] = {}
    for line in (deploy / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env["SORTIE_MODE"] = mode
    spec = compose["services"][service]
    mounts = {
        target: source.replace("./deploy/", f"{deploy}/")
        for source, target, *_ in (v.split(":") for v in spec.get("volumes", []))
    }
    for key, raw in spec["environment"].items():
        value = str(raw)
        if value.startswith("/run/secrets/"):
            name = value.removeprefix("/run/secrets/")
            assert name in spec["secrets"], (service, name)
            value = compose["secrets"][name]["file"].replace("./deploy/", f"{deploy}/")
        env[key] = mounts.get(value, value)
    return env


def load(
    cls: type[ServiceSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> ServiceSettings:
    for key in list(os.environ):
        if key.startswith(("SORTIE_", "REDIS_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return read_settings(cls)


@pytest.fixture
def secrets_made(deploy: Path) -> Path:
    init_secrets(deploy)
    for name in REDIS_FILES:
        (deploy / "secrets" / name).write_text(f"pw-of-{name}\n")
    return deploy


@pytest.mark.parametrize("service", sorted(CLASSES))
def test_the_demo_settings_load_as_compose_passes_them(
    secrets_made: Path, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load(CLASSES[service], service_env(secrets_made, service, "demo"), monkeypatch)
    url = settings.redis_url.get_secret_value()
    user = "agent-pc-101" if service.startswith("workstation") else service
    assert url == f"redis://{user}:pw-of-redis-{user}.password@redis:6379/0"
    if isinstance(settings, EntSettings):
        registry = read_registry(settings)
        assert {a.name for a in registry.applications} == {"esper", "escada", "mer", "ism"}
        assert make_signer(settings) is not None, "the OIDC key is mounted and loads"
        assert "mer" in app_tokens(registry, dict(os.environ))
    if isinstance(settings, OrchestratorSettings):
        assert [t.name for t in settings.tokens] == ["admin"]
        assert settings.trusted_proxies == ["172.30.80.10"]


def test_production_mode_names_what_is_left_of_the_demo(
    secrets_made: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = service_env(secrets_made, "m365-worker", "production")
    with pytest.raises(SettingsError) as err:
        load(M365Settings, env, monkeypatch)
    assert [line.split(":")[0] for line in err.value.lines] == [
        "SORTIE_M365_GRAPH_TOKEN",
        "SORTIE_M365_GRAPH_URL",
        "SORTIE_M365_TENANT_ID",
        "SORTIE_M365_CLIENT_ID",
        "SORTIE_M365_CLIENT_SECRET_FILE or SORTIE_M365_CERTIFICATE_PATH",
    ]
    env = service_env(secrets_made, "ent-worker", "production")
    with pytest.raises(SettingsError) as err:
        load(EntSettings, env, monkeypatch)
    assert [line.split(":")[0] for line in err.value.lines] == ["SORTIE_ENT_CAS_URL"]
    # The orchestrator's demo (an admin token, Redis users) is already production-shaped.
    env = service_env(secrets_made, "orchestrator", "production")
    assert load(OrchestratorSettings, env, monkeypatch).mode == "production"
