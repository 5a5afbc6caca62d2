"""Which credential the settings give, and that none of them shows its secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.identity.aio import CertificateCredential, ClientSecretCredential

from sortie_m365.adapters.credentials import StaticTokenCredential, credential_from
from sortie_m365.bootstrap import graph_directory
from sortie_m365.settings import M365Settings
from sortie_testkit.redis_server import RedisServer

APP = {"tenant_id": "11111111-2222-3333-4444-555555555555", "client_id": "app-id"}


async def test_client_secret_wins() -> None:
    settings = M365Settings(**APP, client_secret="s3cr3t-value", graph_token="tok")
    credential = credential_from(settings)
    assert isinstance(credential, ClientSecretCredential)
    await credential.close()
    assert "s3cr3t-value" not in repr(settings)


async def test_certificate_from_path(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sortie-test")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    for settings in (
        M365Settings(**APP, certificate_path=str(path)),
        M365Settings(**APP, certificate_pem=pem.decode()),
    ):
        credential = credential_from(settings)
        assert isinstance(credential, CertificateCredential)
        await credential.close()
    assert "PRIVATE KEY" not in repr(M365Settings(**APP, certificate_pem=pem.decode()))


def test_app_credentials_need_tenant_and_client() -> None:
    with pytest.raises(ValueError, match="TENANT_ID"):
        credential_from(M365Settings(client_secret="x"))


async def test_static_token_for_the_simulator() -> None:
    credential = credential_from(M365Settings(graph_token="simulator-token"))
    assert isinstance(credential, StaticTokenCredential)
    token = await credential.get_token("https://graph.microsoft.com/.default")
    assert token.token == "simulator-token"
    assert "simulator-token" not in repr(credential)


async def test_bootstrap_wires_the_sdk_with_env(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    from redis.asyncio import Redis

    monkeypatch.setenv("SORTIE_M365_GRAPH_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("SORTIE_M365_GRAPH_TOKEN", "simulator-token")
    monkeypatch.setenv("SORTIE_M365_TENANT_WRITES_PER_S", "7.5")
    settings = M365Settings()
    redis = Redis.from_url(redis_server.url)
    directory = graph_directory(settings, redis)
    try:
        assert directory._client.request_adapter.base_url == "http://127.0.0.1:9/v1.0"
        assert directory._limiter is not None
        assert directory._limiter.limiter.rate == pytest.approx(7.5 * 0.98)  # type: ignore[attr-defined]
        assert directory._mailbox is None  # Exchange is off unless configured
    finally:
        await directory.aclose()
        await redis.aclose()
