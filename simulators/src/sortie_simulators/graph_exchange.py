"""Exchange Online's admin REST endpoint, the part Sortie uses, beside the Graph simulator.

`POST /adminapi/beta/{tenant}/InvokeCommand` with
`{"CmdletInput": {"CmdletName": "Set-CASMailbox", "Parameters": {"Identity": …, …}}}` is how
Exchange Online PowerShell (EXO V3) runs a cmdlet. Every Graph user has a mailbox here, so
one simulator serves both. Parameters follow
https://learn.microsoft.com/powershell/module/exchange/set-casmailbox (only the protocol
switches are accepted; anything else is refused as the cmdlet would refuse an unknown one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .common import bearer_token, sleep_ms
from .graph_model import MAILBOX_PROTOCOLS

if TYPE_CHECKING:
    from .graph import GraphSimulator


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _check(payload: Any) -> tuple[str, dict[str, bool]] | str:
    """(identity, switches) or the reason the command is refused."""
    cmdlet = payload.get("CmdletInput") if isinstance(payload, dict) else None
    if not isinstance(cmdlet, dict) or cmdlet.get("CmdletName") != "Set-CASMailbox":
        return "Only Set-CASMailbox is available here."
    params = cmdlet.get("Parameters")
    if not isinstance(params, dict):
        return "Parameters must be an object."
    identity = params.get("Identity")
    if not isinstance(identity, str) or not identity:
        return "Cannot process argument because the value of argument 'Identity' is null."
    switches: dict[str, bool] = {}
    for name, value in params.items():
        if name == "Identity":
            continue
        if name not in MAILBOX_PROTOCOLS:
            return f"A parameter cannot be found that matches parameter name '{name[:80]}'."
        if not isinstance(value, bool):
            return f"Cannot convert value to type System.Boolean for '{name}'."
        switches[name] = value
    return identity, switches


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
        user.cas_mailbox.update(switches)
        sim.stats.requests += 1
        return {"@odata.context": "InvokeCommand", "value": []}
