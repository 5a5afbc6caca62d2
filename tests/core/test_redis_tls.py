"""TLS to Redis: a real redis-server that accepts only TLS with a client
certificate; the services' Redis client and broker reach it with `rediss://` and the CA,
certificate and key paths of their settings; without the client certificate, or over
plain `redis://`, they get nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError

from sortie_core.broker import publish
from sortie_core.events import DeadLettered
from sortie_core.runtime import make_broker, redis_client
from sortie_core.settings import ServiceSettings
from sortie_testkit.redis_server import free_port
from sortie_testkit.waiting import wait_until


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer[0])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sortie test CA")])
    ca = (
        _cert("sortie test CA", ca_key, (ca_name, ca_key))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(folder / "ca", ca_key, ca)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _cert(name, key, (ca_name, ca_key))
        if name == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        _write(folder / name, key, builder.sign(ca_key, hashes.SHA256()))


@pytest.fixture
def tls_redis() -> Iterator[tuple[int, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="sortie-tls-"))
    make_pki(folder)
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--dir", str(folder),
            "--tls-cert-file", str(folder / "server.crt"),
            "--tls-key-file", str(folder / "server.key"),
            "--tls-ca-cert-file", str(folder / "ca.crt"),
            "--tls-auth-clients", "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    wait_until(listening, 10, 0.05, f"TLS redis-server on {port}")
    yield port, folder
    proc.terminate()
    proc.wait(5)


def settings(url: str, folder: Path, *, client_cert: bool = True) -> ServiceSettings:
    return ServiceSettings(
        redis_url=url,  # type: ignore[arg-type]
        redis_ca_path=str(folder / "ca.crt"),
        redis_cert_path=str(folder / "client.crt") if client_cert else None,
        redis_key_path=str(folder / "client.key") if client_cert else None,
    )


async def test_client_and_broker_speak_tls_with_the_configured_certificates(
    tls_redis: tuple[int, Path],
) -> None:
    port, folder = tls_redis
    good = settings(f"rediss://127.0.0.1:{port}/0", folder)
    redis = redis_client(good)
    try:
        assert await redis.ping()
        record = DeadLettered(
            stream="s", group="g", entry_id="1-0", reason="r", detail="d", deliveries=1, data=""
        )
        await publish(redis, "tls.test", record)
        assert await redis.xlen("tls.test") == 1
    finally:
        await redis.aclose()
    broker = make_broker(good)
    await asyncio.wait_for(broker.connect(), 10)
    assert await broker.ping(5)
    await broker.stop()

    # Without its client certificate the server refuses; plain redis:// cannot talk TLS.
    for bad in (
        settings(f"rediss://127.0.0.1:{port}/0", folder, client_cert=False),
        settings(f"redis://127.0.0.1:{port}/0", folder),
    ):
        client = redis_client(bad)
        with pytest.raises((RedisConnectionError, ConnectionError, OSError)):
            await asyncio.wait_for(client.ping(), 5)
        await client.aclose()
