"""Exchange Online's admin REST endpoint, the part Sortie uses, beside the Graph simulator.

`POST /adminapi/beta/{tenant}/InvokeCommand` with
`{"CmdletInput": {"CmdletName": "Set-CASMailbox", "Parameters": {"Identity": …, …}}}` is how
Exchange Online PowerShell (EXO V3) runs a cmdlet. Every Graph user has a mailbox here, so
one simulator serves both. Parameters follow
https://learn.microsoft.com/powershell/module/exchange/set-casmailbox (only the protocol
switches are accepted; anything else is refused as the cmdlet would refuse an unknown one).
`Get-CASMailbox -Identity` (https://learn.microsoft.com/powershell/module/exchange/get-casmailbox)
answers `value` with one object: `Identity` and the same switches, as read back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .common import bearer_token, sleep_ms
from .graph_exchange_mailbox import MAILBOX_CMDLETS, mailbox_command
from .graph_model import MAILBOX_PROTOCOLS

if TYPE_CHECKING:
    from .graph import GraphSimulator


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _check(payload: Any) -> tuple[str, dict[str, bool]] | str:
    """(identity, switches) or the reason the command is refused."""
    cmdlet = payload.get("CmdletInput") if isinstance(payload, dict) else None
    name = cmdlet.get("CmdletName") if isinstance(cmdlet, dict) else None
    if not isinstance(cmdlet, dict) or name not in ("Set-CASMailbox", "Get-CASMailbox"):
        return "Only Set-CASMailbox and Get-CASMailbox are available here."
    params = cmdlet.get("Parameters")
    if not isinstance(params, dict):
        return "Parameters must be an object."
    identity = params.get("Identity")
    if not isinstance(identity, str) or not identity:
        return "Cannot process argument because the value of argument 'Identity' is null."
    switches: dict[str, bool] = {}
    for param, value in params.items():
        if param == "Identity":
            continue
        if name == "Get-CASMailbox" or param not in MAILBOX_PROTOCOLS:
            return f"A parameter cannot be found that matches parameter name '{param[:80]}'."
        if not isinstance(value, bool):
            return f"Cannot convert value to type System.Boolean for '{param}'."
        switches[param] = value
    return identity, switches


def _mailbox(sim: GraphSimulator, cmdlet: dict[str, Any]) -> Any:
    params = cmdlet.get("Parameters")
    identity = params.get("Identity") if isinstance(params, dict) else None
    if not isinstance(params, dict) or not isinstance(identity, str):
        return _error(400, "BadRequest", "Cannot process argument 'Identity'.")
    user = sim.find(identity)
    if user is None:
        return _error(404, "ManagementObjectNotFound", "The object couldn't be found.")
    sim.stats.requests += 1
    name = str(cmdlet["CmdletName"])
    status, body = mailbox_command(sim.tenant.mailboxes, user.id, identity, name, params)
    return JSONResponse(body, status_code=status)


def add_exchange_routes(app: FastAPI, sim: GraphSimulator) -> None:
    @app.post("/adminapi/beta/{tenant}/InvokeCommand")
    async def invoke_command(tenant: str, request: Request) -> Any:
        await sleep_ms(sim.config.latency_ms)
        if bearer_token(request) is None:
            return _error(401, "Unauthorized", "Access token is missing.")
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "BadRequest", "The request body is not JSON.")
        cmdlet = payload.get("CmdletInput") if isinstance(payload, dict) else None
        if isinstance(cmdlet, dict) and cmdlet.get("CmdletName") in MAILBOX_CMDLETS:
            return _mailbox(sim, cmdlet)
        checked = _check(payload)
        if isinstance(checked, str):
            return _error(400, "BadRequest", checked)
        identity, switches = checked
        user = sim.find(identity)
        if user is None:
            return _error(
                404,
                "ManagementObjectNotFound",
                f"The operation couldn't be performed because object '{identity[:256]}' "
                "couldn't be found.",
            )
        sim.stats.requests += 1
        if payload["CmdletInput"]["CmdletName"] == "Get-CASMailbox":
            found = {"Identity": user.user_principal_name, **user.cas_mailbox}
            return {"@odata.context": "InvokeCommand", "value": [found]}
        if "Set-CASMailbox" in sim.dropped_writes:
            sim.stats.dropped += 1
        else:
            user.cas_mailbox.update(switches)
        return {"@odata.context": "InvokeCommand", "value": []}
