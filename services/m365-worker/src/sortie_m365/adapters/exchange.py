"""Mailbox protocols through Exchange Online's admin REST endpoint.

Graph has no API for CAS mailbox settings. Exchange Online PowerShell (EXO V3) runs its
cmdlets as `POST /adminapi/beta/{tenant}/InvokeCommand` with
`{"CmdletInput": {"CmdletName": "Set-CASMailbox", "Parameters": {...}}}` and an app-only
token for `https://outlook.office365.com/.default` (application permission
`Exchange.ManageAsApp` plus an Exchange administrator role). The endpoint is not documented
as a public API: this adapter is off unless `SORTIE_M365_EXCHANGE_URL` is set.
Cmdlet reference: https://learn.microsoft.com/powershell/module/exchange/set-casmailbox
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from sortie_core.errors import TransientError

from .graph_errors import error_for

# Every client protocol Set-CASMailbox can switch off for one mailbox.
PROTOCOLS_OFF: dict[str, bool] = {
    "OWAEnabled": False,
    "ActiveSyncEnabled": False,
    "MAPIEnabled": False,
    "EwsEnabled": False,
    "PopEnabled": False,
    "ImapEnabled": False,
    "OutlookMobileEnabled": False,
}
PERMISSION = "Exchange.ManageAsApp (and an Exchange administrator role)"


class ExchangeMailboxProtocols:
    def __init__(
        self,
        exchange_url: str,
        tenant: str,
        credential: AsyncTokenCredential,
        *,
        scope: str,
        timeout_s: float = 30.0,
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._path = f"/adminapi/beta/{quote(tenant, safe='')}/InvokeCommand"
        self._client = httpx.AsyncClient(
            base_url=exchange_url.rstrip("/"), timeout=timeout_s, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def disable(self, upn: str) -> None:
        token = await self._credential.get_token(self._scope)
        body: dict[str, Any] = {
            "CmdletInput": {
                "CmdletName": "Set-CASMailbox",
                "Parameters": {"Identity": upn, **PROTOCOLS_OFF},
            }
        }
        what = "Set-CASMailbox"
        headers = {"Authorization": f"Bearer {token.token}"} if token.token else {}
        try:
            response = await self._client.post(self._path, json=body, headers=headers)
        except httpx.TimeoutException as err:
            raise TransientError(f"Exchange timed out on {what}", code="exchange_timeout") from err
        except httpx.TransportError as err:
            raise TransientError(
                f"Exchange unreachable for {what} ({type(err).__name__})",
                code="exchange_unreachable",
            ) from err
        if response.is_success:
            return
        code: object = None
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            pass
        raise error_for(response.status_code, code, response.headers, what, permission=PERMISSION)
