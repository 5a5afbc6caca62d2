"""Several app registrations of one tenant, each with its own credential and write budget.

Graph counts writes per application and tenant (https://learn.microsoft.com/graph/throttling-limits):
a tenant with more app registrations gets more writes, up to the tenant's own limit. Every
registration has its credential (a client secret, from the settings or a file, or a
certificate; a fixed token for the simulators); one msgraph-sdk client serves them all, its
authentication provider signing each request as the registration the write quota granted
(`APP`, set for the current task by the directory).

kiota's provider (kiota-authentication-azure) checks the URL and asks the credential for
the token on every request: ~4 % of the worker's CPU (py-spy, bench/e2e.py). The header it
made is kept per registration and origin, until 5 minutes before the token expires (when
azure-identity would refresh it); a CAE claims challenge always goes to the provider.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.authentication import AuthenticationProvider
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .credentials import StaticTokenCredential

# The index of the app registration the current task's Graph request goes as.
APP: ContextVar[int] = ContextVar("sortie_m365_app", default=0)


@contextlib.contextmanager
def as_app(index: int) -> Iterator[None]:
    token = APP.set(index)
    try:
        yield
    finally:
        APP.reset(token)


class AppRegistration(BaseModel):
    """One entry of `SORTIE_M365_APP_REGISTRATIONS` (a JSON list, or `…_FILE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr = SecretStr("")
    # A file holding the secret (a compose or Kubernetes secret): wins over client_secret.
    client_secret_file: str = ""
    certificate_path: str = ""
    certificate_password: SecretStr = SecretStr("")
    # A fixed bearer token, for the simulators only.
    graph_token: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _one_credential(self) -> AppRegistration:
        given = [
            bool(self.client_secret.get_secret_value() or self.client_secret_file),
            bool(self.certificate_path),
            bool(self.graph_token.get_secret_value()),
        ]
        if sum(given) != 1:
            raise ValueError(
                f"app registration {self.client_id}: give exactly one of client_secret "
                "(or client_secret_file), certificate_path, graph_token"
            )
        return self

    def secret(self) -> str:
        if self.client_secret_file:
            text = Path(self.client_secret_file).read_text(encoding="utf-8")
            return text.removesuffix("\n").removesuffix("\r")
        return self.client_secret.get_secret_value()

    def credential(self, tenant_id: str) -> AsyncTokenCredential:
        if self.graph_token.get_secret_value():
            return StaticTokenCredential(self.graph_token)
        if not tenant_id:
            raise ValueError("SORTIE_M365_TENANT_ID is required with app registrations")
        if self.certificate_path:
            from azure.identity.aio import CertificateCredential

            password = self.certificate_password.get_secret_value() or None
            return CertificateCredential(
                tenant_id, self.client_id, certificate_path=self.certificate_path, password=password
            )
        from azure.identity.aio import ClientSecretCredential

        return ClientSecretCredential(tenant_id, self.client_id, self.secret())


# azure-identity refreshes a token this long before it expires (azure-core's default).
_REFRESH_S = 300
_AUTHORIZATION = "Authorization"
_CLAIMS = "claims"  # kiota's key for a CAE challenge's claims


class _Remembering(AsyncTokenCredential):
    """A credential keeping the last token it handed out (kiota keeps only its text)."""

    def __init__(self, inner: AsyncTokenCredential) -> None:
        self.inner = inner
        self.last: AccessToken | None = None

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.last = await self.inner.get_token(*scopes, **kwargs)
        return self.last

    async def close(self) -> None:
        await self.inner.close()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class SpreadAuthentication(AuthenticationProvider):
    """Signs each request as the app registration `APP` names."""

    def __init__(self, credentials: list[AsyncTokenCredential], scope: str) -> None:
        if not credentials:
            raise ValueError("at least one credential")
        self._credentials = [_Remembering(c) for c in credentials]
        self._providers = [
            AzureIdentityAuthenticationProvider(c, scopes=[scope]) for c in self._credentials
        ]
        # (registration, origin) -> (the header kiota's provider made, until when).
        self._headers: dict[tuple[int, str], tuple[str, float]] = {}

    async def authenticate_request(
        self,
        request: RequestInformation,
        additional_authentication_context: dict[str, Any] | None = None,
    ) -> None:
        index = APP.get() % len(self._providers)
        context = additional_authentication_context or {}
        key = (index, "/".join(str(request.url).split("/", 3)[:3]))
        challenged = bool(context.get(_CLAIMS))
        if not challenged and not request.headers.contains(_AUTHORIZATION):
            known = self._headers.get(key)
            if known is not None and known[1] > time.time():
                request.headers.try_add(_AUTHORIZATION, known[0])
                return
        credential = self._credentials[index]
        credential.last = None
        await self._providers[index].authenticate_request(request, context)
        token = credential.last
        if token is not None and not challenged and request.headers.contains(_AUTHORIZATION):
            self._headers[key] = (f"Bearer {token.token}", token.expires_on - _REFRESH_S)
