"""The compose stack's TLS proxy for real: Debian's `caddy` runs deploy/caddy/Caddyfile in
front of an orchestrator process (with a redis-server), with a certificate from a test CA
made here. HTTPS only, HSTS, `Secure` cookies on the status page's login, and forwarded
headers believed from the proxy's address only (uvicorn's `forwarded_allow_ips`, set by
SORTIE_ORCHESTRATOR_TRUSTED_PROXIES)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
TOKEN = "helpdesk-token-for-the-proxy-test-0123456789"
# A peer that is not the proxy: Linux answers on the whole 127.0.0.0/8.
OTHER_PEER = "127.0.0.2"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a `localhost` server certificate it signed: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Sortie test CA"))
        .issuer_name(_name("Sortie test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, timeout, 0.1, url)


@dataclass
class Stack:
    https: str
    http: str
    direct: str
    ca: ssl.SSLContext


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SORTIE_", "REDIS_"))}


def start_orchestrator(
    tmp: Path, redis_url: str, port: int, **settings: str
) -> subprocess.Popen[bytes]:
    """The orchestrator process, its API token from a file, believing X-Forwarded-* from
    127.0.0.1 only (where Caddy connects from)."""
    tokens = tmp / "tokens.json"
    tokens.write_text(
        json.dumps([{"name": "helpdesk", "token": TOKEN, "scopes": ["requests:read"]}])
    )
    env = {
        "SORTIE_REDIS_URL": redis_url,
        "SORTIE_ORCHESTRATOR_HTTP_HOST": "127.0.0.1",
        "SORTIE_ORCHESTRATOR_HTTP_PORT": str(port),
        "SORTIE_ORCHESTRATOR_TOKENS_FILE": str(tokens),
        "SORTIE_ORCHESTRATOR_TRUSTED_PROXIES": '["127.0.0.1"]',
        **{f"SORTIE_ORCHESTRATOR_{k.upper()}": v for k, v in settings.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sortie_orchestrator"], env={**clean_env(), **env}
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    caddy = shutil.which("caddy")
    assert caddy, "caddy is not installed: run scripts/bootstrap-test.sh"
    tmp = tmp_path_factory.mktemp("caddy")
    ca_pem, cert_pem, key_pem = make_test_ca(tmp)
    redis = RedisServer().start()
    api_port, http_port, https_port, health_port = (free_port() for _ in range(4))
    base = clean_env()
    orchestrator = start_orchestrator(tmp, redis.url, api_port)
    proxy = subprocess.Popen(
        [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env={
            **base,
            "HOME": str(tmp),
            "XDG_DATA_HOME": str(tmp / "data"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "SORTIE_CADDY_DATA": str(tmp / "data"),
            "SORTIE_DOMAIN": "localhost",
            "SORTIE_TLS": f"{cert_pem} {key_pem}",
            "SORTIE_HTTP_PORT": str(http_port),
            "SORTIE_HTTPS_PORT": str(https_port),
            "SORTIE_PROXY_HEALTH_PORT": str(health_port),
            "SORTIE_UPSTREAM_HOST": "127.0.0.1",
            "SORTIE_UPSTREAM_PORT": str(api_port),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{api_port}/readyz", orchestrator)
        wait_for(f"http://127.0.0.1:{health_port}/healthz", proxy)
        yield Stack(
            https=f"https://localhost:{https_port}",
            http=f"http://localhost:{http_port}",
            direct=f"http://127.0.0.1:{api_port}",
            ca=ssl.create_default_context(cafile=str(ca_pem)),
        )
    finally:
        stop(proxy)
        stop(orchestrator)
        redis.cleanup()


def login(client: httpx.Client, origin: str) -> httpx.Response:
    return client.post(
        "/ui/login",
        data={"token": TOKEN, "next": "/ui/"},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
    )


def test_plain_http_is_redirected_to_https_and_never_proxied(stack: Stack) -> None:
    with httpx.Client(base_url=stack.http) as client:
        resp = client.get("/v1/requests?limit=1")
    assert resp.status_code == 308
    # Caddy 2.6 names no port when redirecting (production listens on 443).
    location = httpx.URL(resp.headers["location"])
    assert (location.scheme, location.host) == ("https", "localhost")
    assert location.raw_path == b"/v1/requests?limit=1"
    assert "problem+json" not in resp.headers.get("content-type", "")


def test_https_carries_hsts_and_the_test_ca_is_the_only_trust(stack: Stack) -> None:
    with httpx.Client(base_url=stack.https, verify=stack.ca) as client:
        resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert resp.headers.get_list("strict-transport-security") == [
        "max-age=31536000; includeSubDomains"
    ]
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=stack.https) as untrusting:
        untrusting.get("/healthz")  # the system's CAs do not know the test CA


def test_metrics_are_not_served_through_the_proxy(stack: Stack) -> None:
    with httpx.Client(base_url=stack.https, verify=stack.ca) as client:
        assert client.get("/metrics").status_code == 404
    assert httpx.get(f"{stack.direct}/metrics").status_code == 200


def test_login_through_the_proxy_sets_a_secure_cookie(stack: Stack) -> None:
    with httpx.Client(base_url=stack.https, verify=stack.ca) as client:
        # A client's own X-Forwarded-Proto is replaced by the proxy's.
        client.headers["X-Forwarded-Proto"] = "http"
        resp = login(client, stack.https)
    assert resp.status_code == 303, resp.text
    cookie = resp.headers["set-cookie"]
    assert "sortie_session=" in cookie
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_forwarded_headers_from_another_peer_are_ignored(stack: Stack) -> None:
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    transport = httpx.HTTPTransport(local_address=OTHER_PEER)
    with httpx.Client(base_url=stack.direct, transport=transport, headers=forged) as client:
        resp = login(client, stack.direct)
        health = client.get("/healthz")
    assert resp.status_code == 303, resp.text
    assert "Secure" not in resp.headers["set-cookie"]
    assert "strict-transport-security" not in health.headers
    # The same forged header from the proxy's address is believed: the setting decides.
    with httpx.Client(base_url=stack.direct, headers=forged) as client:
        trusted = client.get("/healthz")
    assert "strict-transport-security" in trusted.headers


@pytest.mark.parametrize("tls", ["admin@ac-exemple.fr", "internal", "provided"])
def test_the_caddyfile_is_valid_in_each_certificate_mode(tls: str, tmp_path: Path) -> None:
    """SORTIE_TLS as docs/install-compose.md offers it: ACME, Caddy's CA, a provided one."""
    caddy = shutil.which("caddy")
    assert caddy
    if tls == "provided":
        _, cert, key = make_test_ca(tmp_path)
        tls = f"{cert} {key}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "SORTIE_CADDY_DATA": str(tmp_path / "data"),
        "SORTIE_DOMAIN": "sortie.ac-exemple.fr",
        "SORTIE_TLS": tls,
    }
    out = subprocess.run(
        [caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Valid configuration" in out.stdout + out.stderr


def test_force_secure_marks_cookies_and_sends_hsts_whatever_the_peer(
    tmp_path: Path,
) -> None:
    """For a TLS proxy whose address cannot be pinned: SORTIE_ORCHESTRATOR_FORCE_SECURE."""
    redis = RedisServer().start()
    port = free_port()
    proc = start_orchestrator(tmp_path, redis.url, port, force_secure="true")
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", proc)
        transport = httpx.HTTPTransport(local_address=OTHER_PEER)
        direct = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=direct, transport=transport) as client:
            resp = login(client, direct)
            health = client.get("/healthz")
        assert resp.status_code == 303 and "Secure" in resp.headers["set-cookie"]
        assert health.headers["strict-transport-security"] == "max-age=31536000"
    finally:
        stop(proc)
        redis.cleanup()
