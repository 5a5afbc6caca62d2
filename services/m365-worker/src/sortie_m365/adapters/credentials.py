"""Credentials for Graph and Exchange Online, chosen from the settings.

A real tenant uses an app registration with a client secret or a certificate
(azure-identity, https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
A fixed bearer token serves the local simulators and tests: azure-identity refuses a
non-https authority, so there is no token endpoint to fake.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from pydantic import SecretStr

if TYPE_CHECKING:
    from ..settings import M365Settings


class StaticTokenCredential(AsyncTokenCredential):
    """Hands out one fixed token, whatever the scopes (for simulators and tests)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token.get_secret_value(), int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=**********)"


def credential_from(settings: M365Settings) -> AsyncTokenCredential:
    """Client secret, else certificate, else the static token (empty: Graph answers 401)."""
    secret = settings.client_secret.get_secret_value()
    cert_data = settings.certificate_pem.get_secret_value()
    wants_app = bool(secret or cert_data or settings.certificate_path)
    if wants_app and not (settings.tenant_id and settings.client_id):
        raise ValueError("SORTIE_M365_TENANT_ID and SORTIE_M365_CLIENT_ID are required")
    if secret:
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(settings.tenant_id, settings.client_id, secret)
    if cert_data or settings.certificate_path:
        from azure.identity.aio import CertificateCredential

        password = settings.certificate_password.get_secret_value() or None
        if cert_data:
            return CertificateCredential(
                settings.tenant_id,
                settings.client_id,
                certificate_data=cert_data.encode(),
                password=password,
            )
        return CertificateCredential(
            settings.tenant_id,
            settings.client_id,
            certificate_path=settings.certificate_path,
            password=password,
        )
    return StaticTokenCredential(settings.graph_token)
