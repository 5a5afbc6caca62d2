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
    assert SCHEMA.exists(), "run scripts/bootstrap-test.sh: it installs the compose schema"
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
            if key.endswith("__FILE") and str(value).startswith("/run/secrets/"):
                continue  # the name of a compose secret's file, not the secret
            if re.search(r"TOKEN|PASSWORD|SECRET|KEY", key):
                pytest.fail(f"{name} sets {key} inline; use deploy/.env or a compose secret")
            assert "@" not in str(value) or not str(value).startswith("redis://"), value


DOCKERFILES = [*(f"services/{s}/Dockerfile" for s in SERVICES), "simulators/Dockerfile"]


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / dockerfile).read_text()
    logical = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("#"))
    )
    out = []
    for line in logical.splitlines():
        if line.strip():
            op, _, args = line.strip().partition(" ")
            out.append((op.upper(), " ".join(args.split())))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_rules(dockerfile: str) -> None:
    ins = instructions(dockerfile)
    froms = [a for op, a in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: build in one stage, run in a clean one"
    assert all(re.fullmatch(r"python:3\.11-slim-bookworm( AS \w+)?", f) for f in froms), froms
    users = [a for op, a in ins if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "must end as a non-root user"
    last_stage = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    assert any(op == "USER" for op, _ in last_stage), "the runtime stage sets its user"
    cmd = [a for op, a in ins if op == "CMD"]
    assert cmd and cmd[-1].startswith("["), "CMD in exec form"
    assert not any(op == "ADD" for op, _ in ins), "COPY, not ADD"
    assert not any(op == "MAINTAINER" for op, _ in ins)
    for op, args in ins:
        if op == "RUN":
            assert "sudo " not in args and "curl " not in args and "wget " not in args
            if "apt-get install" in args:
                assert "--no-install-recommends" in args
            if "pip install" in args:
                assert "-c constraints.txt" in args, "pinned by constraints.txt"
        if op == "WORKDIR":
            assert args.startswith("/")
    if "simulators" not in dockerfile:
        health = [a for op, a in ins if op == "HEALTHCHECK"]
        assert health and "CMD [" in health[0], "HEALTHCHECK in exec form"


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_holds_only_the_core_and_itself(service: str) -> None:
    copied = {
        a.split()[0]
        for op, a in instructions(f"services/{service}/Dockerfile")
        if op == "COPY" and not a.startswith("--from")
    }
    code = {c for c in copied if c.startswith(("libs/", "services/", "simulators", "cli"))}
    assert code == {"libs/sortie-core", f"services/{service}"} | {
        c for c in code if c.startswith(f"services/{service}/")
    }
    assert "constraints.txt" in copied
    pip = " ".join(a for op, a in instructions(f"services/{service}/Dockerfile") if op == "RUN")
    assert f"./services/{service}" in pip and "./libs/sortie-core" in pip
    assert "simulators" not in pip and "cli" not in pip.split()


def test_every_service_has_restart_limits_and_a_health_check(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
        limits = service["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"], name
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        if name.startswith("sim-"):
            continue
        if "build" in service:
            ins = instructions(service["build"]["dockerfile"])
            assert any(op == "HEALTHCHECK" for op, _ in ins) or "healthcheck" in service, name
        else:
            assert service["healthcheck"]["test"], name


def test_worker_replicas_can_be_raised() -> None:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("m365-worker", "ent-worker"):
        assert re.fullmatch(
            r"\$\{SORTIE_\w+_REPLICAS:-1\}", raw["services"][name]["deploy"]["replicas"]
        )


def test_bind_mounts_exist_and_secrets_are_declared(compose: dict) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: undeclared secret {secret}"
            assert compose["secrets"][secret]["file"].startswith("./deploy/secrets/")
    ignored = (ROOT / "deploy" / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignored, "secret files must never be committed"


def test_prometheus_and_grafana_are_provisioned(compose: dict) -> None:
    services = compose["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana
    assert all(
        s.get("profiles") is None
        for n, s in services.items()
        if not n.startswith(("sim-", "workstation-agent"))
    )
