"""Mailbox protocols through Exchange Online's admin REST endpoint.

Graph has no API for CAS mailbox settings. Exchange Online PowerShell (EXO V3) runs its
cmdlets as `POST /adminapi/beta/{tenant}/InvokeCommand` with
`{"CmdletInput": {"CmdletName": "Set-CASMailbox", "Parameters": {...}}}` and an app-only
token for `https://outlook.office365.com/.default` (application permission
`Exchange.ManageAsApp` plus an Exchange administrator role). The endpoint is not documented
as a public API: this adapter is off unless `SORTIE_M365_EXCHANGE_URL` is set.
Cmdlet reference: https://learn.microsoft.com/powershell/module/exchange/set-casmailbox;
the read-back runs `Get-CASMailbox -Identity` the same way and reads the switches from the
one object in `value` (https://learn.microsoft.com/powershell/module/exchange/get-casmailbox).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from sortie_core.errors import NotFoundError, TransientError
from sortie_core.http import transport_error

from . import MAIL_PROTOCOLS
from .graph_errors import error_for

# Every client protocol Set-CASMailbox can switch off for one mailbox.
PROTOCOLS_OFF: dict[str, bool] = dict.fromkeys(MAIL_PROTOCOLS, False)
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
        await self._invoke("Set-CASMailbox", {"Identity": upn, **PROTOCOLS_OFF})

    async def read(self, upn: str) -> dict[str, bool]:
        """The mailbox's protocol switches; a switch Exchange did not return reads True
        (not proven off)."""
        answer = await self._invoke("Get-CASMailbox", {"Identity": upn})
        found = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], dict):
            raise NotFoundError("mailbox not found in Exchange Online")
        return {name: found[0].get(name) is not False for name in MAIL_PROTOCOLS}

    async def invoke(self, cmdlet: str, parameters: dict[str, Any]) -> Any:
        """Any cmdlet (the leaver's mailbox ones, exchange_leaver.py)."""
        return await self._invoke(cmdlet, parameters)

    async def _invoke(self, what: str, parameters: dict[str, Any]) -> Any:
        token = await self._credential.get_token(self._scope)
        body: dict[str, Any] = {"CmdletInput": {"CmdletName": what, "Parameters": parameters}}
        headers = {"Authorization": f"Bearer {token.token}"} if token.token else {}
        try:
            response = await self._client.post(self._path, json=body, headers=headers)
        except httpx.TransportError as err:
            raise transport_error(err, f"Exchange ({what})", "exchange") from err
        if response.is_success:
            try:
                return response.json() if response.content else None
            except ValueError as err:
                raise TransientError(
                    f"Exchange sent unreadable JSON for {what}", code="exchange_bad_json"
                ) from err
        code: object = None
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            pass
        raise error_for(response.status_code, code, response.headers, what, permission=PERMISSION)
