"""The leaver's OneDrive hand-over, `delegate_onedrive`: the manager (`GET /users/{id}/
manager`) or a named person (option `to: <upn>`) gets direct access to the user's whole
OneDrive (option `role`: `write`, the default, or `read`), as Microsoft's leaver guide
asks (https://learn.microsoft.com/microsoft-365/admin/add-users/remove-former-employee-step-5).

Through Graph's sharing invitation on the drive's root (`POST /drives/{d}/items/root/
invite`, no mail sent: https://learn.microsoft.com/graph/api/driveitem-invite), read back
from the root's permissions (driveitem-list-permissions). Recorded: the drive, the person,
the permission Sortie created, or the roles the person held before when it raised them,
so that a reversal takes back exactly what was granted (reversal.py). A user without a
OneDrive has nothing to hand over: the step succeeds, verified by Graph's 404.
"""

from __future__ import annotations

from typing import Any

from sortie_core.errors import PermanentError
from sortie_core.events import Evidence, M365Action
from sortie_core.steps import Contradicted

from .adapters import M365User
from .leaver_plan import LeaverOps, Plan, evidence, graph_of, planner

ROLES = ("read", "write")


def roles_of(permissions: list[dict[str, Any]], person: str, email: str) -> list[str] | None:
    """The roles of the person's direct permission (not the owner's), None without one."""
    for perm in permissions:
        roles = [str(r) for r in perm.get("roles") or []]
        if "owner" in roles:
            continue
        for facet in ("grantedToV2", "grantedTo"):
            who = (perm.get(facet) or {}).get("user") or {}
            if who.get("id") == person or str(who.get("email") or "").lower() == email:
                return roles
    return None


def permission_of(permissions: list[dict[str, Any]], person: str, email: str) -> str | None:
    for perm in permissions:
        if roles_of([perm], person, email) is not None:
            return str(perm.get("id"))
    return None


def grants(roles: list[str] | None, role: str) -> bool:
    return roles is not None and (role in roles or "write" in roles)


@planner(M365Action.DELEGATE_ONEDRIVE)
def _onedrive(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    to = options.get("to", "manager")
    role = options.get("role", "write")
    plan = Plan()

    async def body() -> str | None:
        if role not in ROLES:
            raise PermanentError(f"role must be one of {ROLES}", code="bad_option")
        graph = graph_of(ops)
        if not plan.record:
            name = await graph.manager(user.id) if to == "manager" else to
            person = await graph.person(name) if isinstance(name, str) and "@" in name else None
            if person is None:
                raise PermanentError("no manager (or person) to hand over to", code="no_delegate")
            drive = await graph.drive(user.id)
            held = roles_of(await graph.drive_permissions(drive), *person) if drive else None
            plan.record.update(
                drive=drive, to=person[1], to_id=person[0], role=role, prior_roles=held
            )
        drive = plan.record["drive"]
        if drive is None:
            return "no OneDrive provisioned: nothing to hand over"
        person = (plan.record["to_id"], plan.record["to"])
        permissions = await graph.drive_permissions(drive)
        if not grants(roles_of(permissions, *person), role):
            made = await graph.share_drive(drive, person[1], role)
            if plan.record["prior_roles"] is None:
                plan.record.setdefault("permission", made.get("id"))
        return f"OneDrive shared with {person[1]} ({role})"

    async def verify() -> Evidence:
        drive = plan.record.get("drive")
        if drive is None:
            return evidence("graph GET /users/{id}/drive", drive="none")
        found = roles_of(
            await graph_of(ops).drive_permissions(drive), plan.record["to_id"], plan.record["to"]
        )
        proof = evidence(
            "graph GET /drives/{id}/items/root/permissions", roles=",".join(found or [])
        )
        if not grants(found, role):
            raise Contradicted("Graph does not list the person's access to the OneDrive", proof)
        return proof

    return plan.set(body, verify)
