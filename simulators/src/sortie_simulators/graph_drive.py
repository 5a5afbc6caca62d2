"""The Graph simulator's OneDrive sharing: a user's drive and the permissions on its root,
which the leaver's `delegate_onedrive` grants to the manager (or a named person).

Shapes, codes and permissions follow the Graph v1.0 pages (checked against Microsoft's
reference, https://learn.microsoft.com/graph/api/<page>, and OneDrive/onedrive-api-docs):

- `GET /users/{id}/drive` (drive-get; application Files.Read.All): 404 `ResourceNotFound`
  "User's mysite not found." when the user has no OneDrive provisioned;
- `POST /drives/{drive-id}/items/{item-id}/invite` (driveitem-invite; Files.ReadWrite.All):
  `recipients` (`email` or `objectId`), `roles` `read`/`write`, `requireSignIn`,
  `sendInvitation`; 200 with the permission collection. A recipient who already holds a
  direct permission keeps it (same id), its roles raised to the ones asked (SharePoint
  keeps one permission per person; the page does not say it: the worker reads the list
  first and never relies on it). App-only calls cannot invite new guests: an unknown
  recipient is a 400 `invalidRequest`;
- `GET /drives/{drive-id}/items/{item-id}/permissions` (driveitem-list-permissions;
  Files.Read.All): the owner's permission and every one granted;
- `DELETE /drives/{drive-id}/items/{item-id}/permissions/{perm-id}` (permission-delete;
  Files.ReadWrite.All): 204; `PATCH` of its `roles` (permission-update): 200 with it;
  the owner's permission cannot be removed or changed (403 `accessDenied`).
`{item-id}` is `root` or the root item's id; writes take from the app's throttle bucket.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .graph_model import GRAPH_METADATA, Reply, bad_request, graph_error

if TYPE_CHECKING:
    from .graph import GraphSimulator
    from .graph_leaver import TenantState
    from .graph_model import GraphUser

FILES_READ = ("Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All")
FILES_WRITE = ("Files.ReadWrite.All", "Sites.ReadWrite.All")
ROLES = ("read", "write")


@dataclass
class Grant:
    id: str
    user: str  # object id
    roles: list[str]
    owner: bool = False


@dataclass
class Drive:
    id: str
    owner: str
    root_id: str
    grants: list[Grant] = field(default_factory=list)


def _drive_not_found(message: str = "Item not found") -> Reply:
    return graph_error(404, "itemNotFound", message)


def _identity(user: GraphUser) -> dict[str, Any]:
    return {"id": user.id, "displayName": user.display_name, "email": user.mail}


def permission_view(sim: GraphSimulator, grant: Grant, invited: bool = False) -> dict[str, Any]:
    user = sim.users.get(grant.user)
    who = _identity(user) if user else {"id": grant.user}
    login = f"i:0#.f|membership|{user.user_principal_name}" if user else ""
    view: dict[str, Any] = {
        "id": grant.id,
        "roles": list(grant.roles),
        "grantedTo": {"user": who},
        "grantedToV2": {"user": who, "siteUser": {**who, "loginName": login}},
    }
    if invited and user is not None:
        view["invitation"] = {"email": user.mail or user.user_principal_name,
                              "signInRequired": True}  # fmt: skip
    return view


def drive_of(tenant: TenantState, user: str) -> Drive | None:
    """The user's OneDrive, provisioned on first use unless the user has none."""
    if user in tenant.no_drive:
        return None
    found = tenant.drives.get(user)
    if found is None:
        raw = uuid.uuid5(uuid.NAMESPACE_URL, f"drive:{user}").bytes * 2
        drive_id = "b!" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        root = "01" + uuid.uuid5(uuid.NAMESPACE_URL, f"root:{user}").hex.upper()[:32]
        found = Drive(drive_id, user, root, [Grant(f"owner-{user}", user, ["owner"], True)])
        tenant.drives[user] = found
    return found


def user_drive(tenant: TenantState, sim: GraphSimulator, user: str) -> Reply:
    drive = drive_of(tenant, user)
    if drive is None:
        return graph_error(404, "ResourceNotFound", "User's mysite not found.")
    owner = sim.users[user]
    return Reply(
        200,
        {
            "@odata.context": f"{GRAPH_METADATA}#drives/$entity",
            "id": drive.id,
            "driveType": "business",
            "owner": {"user": _identity(owner)},
        },
    )


def drive_route(
    tenant: TenantState, sim: GraphSimulator, method: str, segments: list[str], body: Any, app: str
) -> Reply:
    """`drives/{d}/items/{i}/invite|permissions[/{p}]`."""
    if len(segments) < 5 or segments[2] != "items" or segments[4] not in ("invite", "permissions"):
        return bad_request("Resource not found for the segment.", "BadRequest")
    write = method != "GET"
    denied = tenant.guard(sim, app, FILES_WRITE if write else FILES_READ, write, None, "")
    if denied is not None:
        return denied
    drive = next((d for d in tenant.drives.values() if d.id == segments[1]), None)
    if drive is None or segments[3] not in ("root", drive.root_id):
        return _drive_not_found()
    if segments[4] == "invite" and method == "POST" and len(segments) == 5:
        return _invite(sim, drive, body)
    if segments[4] == "permissions" and method == "GET" and len(segments) == 5:
        items = [permission_view(sim, g) for g in drive.grants]
        context = f"{GRAPH_METADATA}#drives('{drive.id}')/items('{drive.root_id}')/permissions"
        return Reply(200, {"@odata.context": context, "value": items})
    if segments[4] == "permissions" and method in ("DELETE", "PATCH") and len(segments) == 6:
        return _permission(sim, drive, segments[5], method, body)
    return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")


def _permission(sim: GraphSimulator, drive: Drive, perm: str, method: str, body: Any) -> Reply:
    grant = next((g for g in drive.grants if g.id == perm), None)
    if grant is None:
        return _drive_not_found("Permission not found")
    if grant.owner:
        return graph_error(403, "accessDenied", "The owner's permission cannot be changed.")
    if method == "DELETE":
        drive.grants.remove(grant)
        return Reply(204)
    roles = body.get("roles") if isinstance(body, dict) else None
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        return bad_request("roles must be read or write.", "invalidRequest")
    grant.roles = list(roles)
    return Reply(200, permission_view(sim, grant))


def _invite(sim: GraphSimulator, drive: Drive, body: Any) -> Reply:
    recipients = body.get("recipients") if isinstance(body, dict) else None
    roles = body.get("roles") if isinstance(body, dict) else None
    if not isinstance(recipients, list) or not recipients:
        return bad_request("recipients is required.", "invalidRequest")
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        return bad_request("roles must be read or write.", "invalidRequest")
    users = []
    for recipient in recipients:
        key = _recipient_key(recipient)
        user = sim.find(key) if key else None
        if user is None:
            return bad_request("One or more users could not be resolved.", "invalidRequest")
        users.append(user)
    granted = []
    for user in users:
        grant = next((g for g in drive.grants if g.user == user.id and not g.owner), None)
        if grant is None:
            grant = Grant(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                          user.id, [])  # fmt: skip
            drive.grants.append(grant)
        grant.roles = ["write"] if "write" in [*grant.roles, *roles] else ["read"]
        granted.append(permission_view(sim, grant, invited=True))
    return Reply(200, {"@odata.context": f"{GRAPH_METADATA}#Collection(permission)",
                       "value": granted})  # fmt: skip


def _recipient_key(recipient: Any) -> str | None:
    """A driveRecipient's `objectId` or `email` (its `alias` is not for app-only calls)."""
    if not isinstance(recipient, dict):
        return None
    key = recipient.get("objectId") or recipient.get("email")
    return key if isinstance(key, str) and key else None
