"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: the compose
file against the Compose specification's JSON schema, the Dockerfiles against the rules
we hold them to (slim base, non-root user, health check, exec-form command)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / ".venv" / "share" / "compose-spec" / "compose_spec.json"
SERVICES = ["orchestrator", "m365-worker", "ent-worker", "workstation-agent"]


def interpolate(text: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` interpolation, from an empty environment."""

    def sub(m: re.Match[str]) -> str:
        return os.environ.get(m.group(1), m.group(3) or "")

    return re.sub(r"\$\{([A-Za-z0-9_]+)(:-([^}]*))?\}", sub, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text()))


def test_compose_file_matches_the_compose_schema(compose: dict) -> None:
    assert SCHEMA.exists(), "run scripts/bootstrap.sh: it installs the compose schema"
    schema = json.loads(SCHEMA.read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_compose_has_every_service_built_from_its_dockerfile(compose: dict) -> None:
    services = compose["services"]
    for name in ["orchestrator", "m365-worker", "ent-worker"]:
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and "everysec" in redis_cmd
    assert services["redis"]["healthcheck"]["test"]
    assert all(s.get("profiles") == ["demo"] for n, s in services.items() if n.startswith("sim-"))


def test_no_secret_is_written_inline(compose: dict) -> None:
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if re.search(r"TOKEN|PASSWORD|SECRET|KEY", key):
                pytest.fail(f"{name} sets {key} inline; use deploy/.env")
            assert "@" not in str(value) or not str(value).startswith("redis://"), value


@pytest.mark.parametrize(
    "dockerfile",
    [
        *(f"services/{s}/Dockerfile" for s in SERVICES),
        "simulators/Dockerfile",
    ],
)
def test_dockerfile_rules(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert froms and all(re.search(r"python:3\.11-slim", f) for f in froms), froms
    users = [ln for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1].split()[1] not in ("root", "0"), "must end as a non-root user"
    cmd = [ln for ln in lines if ln.upper().startswith("CMD ")]
    assert cmd and cmd[-1][4:].lstrip().startswith("["), "CMD in exec form"
    assert not re.search(r"^ADD\s+https?://", text, re.M), "no ADD from a URL"
    assert "latest" not in " ".join(froms)
    if "simulators" not in dockerfile:
        assert any(ln.upper().startswith("HEALTHCHECK ") for ln in lines)
