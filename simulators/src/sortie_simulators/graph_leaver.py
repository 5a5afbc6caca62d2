"""The Graph simulator's leaver endpoints: licences, groups, authentication methods,
registered devices, mailbox settings, the manager and Temporary Access Passes.

Shapes and permissions follow Microsoft's Graph v1.0 reference (each route names its page):
a call answers 403 `Authorization_RequestDenied` naming the least privileged application
permission when the app holds none of the accepted ones. The app's permissions are the
`roles` claim of its token when the token is a JWT (`app_token` makes one, unsigned, as
the simulator does not check signatures), otherwise every permission but the simulator's
`missing_permissions`. Writes take from the app's throttle bucket like the user writes.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .graph_auth_methods import auth_methods, collection, method_type
from .graph_drive import FILES_READ, Drive, drive_route, user_drive
from .graph_exchange_mailbox import Mailbox
from .graph_model import GRAPH_METADATA, Reply, bad_request, graph_error, not_found

if TYPE_CHECKING:
    from .graph import GraphSimulator

# Accepted application permissions, least privileged first (each API page's table).
READ_USER = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All")
# user-assignlicense: Application User.ReadWrite.All (Directory.ReadWrite.All higher);
# LicenseAssignment.ReadWrite.All is accepted too.
LICENSE_WRITE = ("User.ReadWrite.All", "Directory.ReadWrite.All", "LicenseAssignment.ReadWrite.All")
# user-list-memberof, user-list-ownedobjects
READ_MEMBERSHIP = ("GroupMember.Read.All", "Directory.Read.All", "Group.Read.All")
# group-delete-members, group-post-members: GroupMember.ReadWrite.All
MEMBER_WRITE = ("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All")
# group-delete-owners, group-post-owners: Group.ReadWrite.All
OWNER_WRITE = ("Group.ReadWrite.All", "Directory.ReadWrite.All")
# user-list-registereddevices: Directory.Read.All; device-update / device-delete:
# Device.ReadWrite.All
DEVICES_READ = ("Directory.Read.All", "Device.Read.All", "Device.ReadWrite.All")
DEVICE_WRITE = ("Device.ReadWrite.All",)
# user-get-mailboxsettings / user-update-mailboxsettings
MAILBOX_SETTINGS_READ = ("MailboxSettings.Read", "MailboxSettings.ReadWrite")
MAILBOX_SETTINGS_WRITE = ("MailboxSettings.ReadWrite",)
AUTO_REPLY_FIELDS = {
    "status": ("disabled", "alwaysEnabled", "scheduled"),
    "externalAudience": ("none", "contactsOnly", "all"),
}


def app_token(roles: list[str], app_id: str = "sortie-test-app") -> str:
    """An unsigned JWT carrying `roles`, as Entra's app-only tokens do."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'appid': app_id, 'roles': roles})}."


def needed_permissions(method: str, revoke: bool, body: Any) -> list[str]:
    """The least application permission for each of the user operations Sortie makes."""
    if method == "GET":
        return ["User.Read.All"]
    if revoke:
        return ["User.RevokeSessions.All"]
    names = body.keys() if isinstance(body, dict) else ()
    needed = []
    if "accountEnabled" in names:
        needed.append("User.EnableDisableAccount.All")
    if "passwordProfile" in names:
        needed.append("User-PasswordProfile.ReadWrite.All")
    return needed


def token_roles(token: str) -> frozenset[str] | None:
    """The `roles` of a JWT bearer token, None for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else None


@dataclass
class Group:
    id: str
    display_name: str
    members: set[str] = field(default_factory=set)
    owners: set[str] = field(default_factory=set)

    def view(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.group",
            "id": self.id,
            "displayName": self.display_name,
        }


@dataclass
class Device:
    id: str
    display_name: str
    account_enabled: bool = True
    owners: set[str] = field(default_factory=set)

    def view(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.device",
            "id": self.id,
            "displayName": self.display_name,
            "accountEnabled": self.account_enabled,
        }


def _ref_id(body: Any) -> str | None:
    """The object id of a `{"@odata.id": ".../directoryObjects/{id}"}` reference."""
    ref = body.get("@odata.id") if isinstance(body, dict) else None
    return ref.rstrip("/").rsplit("/", 1)[-1] if isinstance(ref, str) and ref else None


@dataclass
class TenantState:
    """What the leaver endpoints change, beside the users of GraphSimulator."""

    skus: set[str] = field(default_factory=set)
    licenses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    methods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    mailbox_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    managers: dict[str, str] = field(default_factory=dict)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)  # Exchange, by user id
    # OneDrive (graph_drive.py), by owner id: provisioned on first use but for `no_drive`.
    drives: dict[str, Drive] = field(default_factory=dict)
    no_drive: set[str] = field(default_factory=set)
    # Every TAP value issued, for tests that look for it where it must not be.
    issued_passes: list[str] = field(default_factory=list)

    def add_method(self, user: str, collection: str, **props: Any) -> dict[str, Any]:
        method = {"@odata.type": method_type(collection), "id": str(uuid.uuid4()), **props}
        self.methods.setdefault(user, []).append(method)
        return method

    # -- seeding (tests, /_sim) ---------------------------------------------------------
    def add_group(
        self, name: str, members: tuple[str, ...] = (), owners: tuple[str, ...] = ()
    ) -> Group:
        group_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"group:{name}"))
        group = Group(group_id, name, set(members), set(owners))
        self.groups[group.id] = group
        return group

    def add_device(self, user: str, name: str) -> Device:
        device = Device(str(uuid.uuid4()), name, owners={user})
        self.devices[device.id] = device
        return device

    def seed(
        self, users: list[str], licenses: int, groups: int, devices: int, methods: Sequence[str]
    ) -> int:
        """Give each of `users` (object ids) licences, memberships of shared groups,
        devices and authentication methods (the admin API, for benchmarks)."""
        skus = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"sku:{n}")) for n in range(licenses)]
        self.skus |= set(skus)
        shared = [self.add_group(f"bench-group-{n}") for n in range(groups)]
        for user in users:
            self.licenses[user] = [{"disabledPlans": [], "skuId": s} for s in skus]
            for group in shared:
                group.members.add(user)
            for n in range(devices):
                self.add_device(user, f"{user[:8]}-device-{n}")
            for kind in methods:
                self.add_method(user, kind)
        return len(users)

    def auto_reply(self, user: str) -> dict[str, Any]:
        return self.mailbox_settings.setdefault(
            user,
            {"status": "disabled", "externalAudience": "all", "internalReplyMessage": "",
             "externalReplyMessage": ""},
        )  # fmt: skip

    def user_view(self, user: str) -> dict[str, Any]:
        """Properties of GET /users/{id} kept here (user resource: assignedLicenses)."""
        return {"assignedLicenses": [dict(x) for x in self.licenses.get(user, [])]}

    # -- routing ------------------------------------------------------------------------
    def route(
        self,
        sim: GraphSimulator,
        method: str,
        segments: list[str],
        body: Any,
        query: dict[str, str],
        app: str,
    ) -> Reply | None:
        """The reply of a leaver endpoint, None when the path is not one."""
        head = segments[0] if segments else ""
        if head == "devices" and len(segments) == 2:
            return self._device(sim, method, segments[1], body, app)
        if head == "groups" and len(segments) in (4, 5) and segments[-1] == "$ref":
            return self._group_ref(sim, method, segments, body, app)
        if head == "drives":
            return drive_route(self, sim, method, segments, body, app)
        if head != "users" or len(segments) < 3 or segments[2] == "revokeSignInSessions":
            return None
        user = sim.by_path(segments[1])
        rest = segments[2:]
        if rest[0] == "authentication":
            return auth_methods(self, sim, method, (user, segments[1]), rest[1:], body, app)
        handlers: dict[str, tuple[str, tuple[str, ...], Any]] = {
            "assignLicense": ("POST", LICENSE_WRITE, self._assign_license),
            "memberOf": ("GET", READ_MEMBERSHIP, self._member_of),
            "ownedObjects": ("GET", READ_MEMBERSHIP, self._owned),
            "registeredDevices": ("GET", DEVICES_READ, self._registered_devices),
            "manager": ("GET", READ_USER, self._manager),
        }
        if rest == ["drive"] and method == "GET":
            denied = self.guard(sim, app, FILES_READ, False, user, segments[1])
            return denied or user_drive(self, sim, user.id if user else "")
        if len(rest) == 1 and rest[0] == "mailboxSettings":
            write = method == "PATCH"
            needs: tuple[str, ...] = MAILBOX_SETTINGS_WRITE if write else MAILBOX_SETTINGS_READ
            return self.guard(sim, app, needs, write, user, segments[1]) or self._mailbox(
                user.id if user else "", method, body
            )
        if len(rest) != 1 or rest[0] not in handlers:
            return bad_request(f"Resource not found for the segment '{rest[0]}'.", "BadRequest")
        verb, needs, handler = handlers[rest[0]]
        if method != verb:
            return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")
        return self.guard(sim, app, needs, verb != "GET", user, segments[1]) or handler(
            sim, user.id if user else "", body
        )

    def guard(
        self,
        sim: GraphSimulator,
        app: str,
        needs: tuple[str, ...],
        write: bool,
        user: Any,
        key: str,
    ) -> Reply | None:
        """Permissions, then the write budget, then the user (a refused call spends none)."""
        roles = token_roles(app)
        granted = (
            bool(roles & set(needs))
            if roles is not None
            else not (sim.missing_permissions & set(needs))
        )
        if not granted:
            return graph_error(
                403,
                "Authorization_RequestDenied",
                f"Insufficient privileges to complete the operation. Missing application "
                f"permission: {needs[0]}.",
            )
        if write:
            throttled = sim.throttled(app)
            if throttled is not None:
                return throttled
        if user is None and key:
            return not_found(key)
        if write:
            sim.stats.writes += 1
        return None

    # -- licences (user-assignlicense) ---------------------------------------------------
    def _assign_license(self, sim: GraphSimulator, user: str, body: Any) -> Reply:
        add = body.get("addLicenses") if isinstance(body, dict) else None
        remove = body.get("removeLicenses") if isinstance(body, dict) else None
        if not isinstance(add, list) or not isinstance(remove, list):
            return bad_request("addLicenses and removeLicenses are required.")
        held = self.licenses.setdefault(user, [])
        for sku in remove:
            if not any(x["skuId"] == sku for x in held):
                return bad_request(f"User does not have a license for sku '{sku}'.")
        for item in add:
            if not isinstance(item, dict) or item.get("skuId") not in self.skus:
                return bad_request("License assignment failed: the subscription does not exist.")
        held[:] = [x for x in held if x["skuId"] not in remove]
        for item in add:
            held[:] = [x for x in held if x["skuId"] != item["skuId"]]
            held.append(
                {"disabledPlans": list(item.get("disabledPlans") or []), "skuId": item["skuId"]}
            )
        return Reply(200, sim.users[user].graph_view() | self.user_view(user))

    # -- groups (user-list-memberof, group-delete-members, group-post-members, owners) ---
    def _member_of(self, sim: GraphSimulator, user: str, body: Any) -> Reply:
        found = [g.view() for g in self.groups.values() if user in g.members]
        return collection(found, "directoryObjects")

    def _owned(self, sim: GraphSimulator, user: str, body: Any) -> Reply:
        found = [g.view() for g in self.groups.values() if user in g.owners]
        return collection(found, "directoryObjects")

    def _group_ref(
        self, sim: GraphSimulator, method: str, segments: list[str], body: Any, app: str
    ) -> Reply:
        relation = segments[2]
        if relation not in ("members", "owners"):
            return bad_request(f"Resource not found for the segment '{relation}'.", "BadRequest")
        needs = MEMBER_WRITE if relation == "members" else OWNER_WRITE
        denied = self.guard(sim, app, needs, True, None, "")
        if denied is not None:
            return denied
        group = self.groups.get(segments[1])
        if group is None:
            return not_found(segments[1])
        held = group.members if relation == "members" else group.owners
        if method == "DELETE" and len(segments) == 5:
            if segments[3] not in held:
                return not_found(segments[3])
            held.discard(segments[3])
            return Reply(204)
        if method == "POST" and len(segments) == 4:
            member = _ref_id(body)
            if member is None or member not in sim.users:
                return bad_request("Invalid object identifier in '@odata.id'.")
            if member in held:
                return bad_request(
                    "One or more added object references already exist for the following "
                    f"modified properties: '{relation}'."
                )
            held.add(member)
            return Reply(204)
        return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")

    # -- devices (user-list-registereddevices, device-update, device-delete) ------------
    def _registered_devices(self, sim: GraphSimulator, user: str, body: Any) -> Reply:
        found = [d.view() for d in self.devices.values() if user in d.owners]
        return collection(found, "directoryObjects")

    def _device(
        self, sim: GraphSimulator, method: str, device_id: str, body: Any, app: str
    ) -> Reply:
        write = method != "GET"
        denied = self.guard(sim, app, DEVICE_WRITE if write else DEVICES_READ, write, None, "")
        if denied is not None:
            return denied
        device = self.devices.get(device_id)
        if device is None:
            return not_found(device_id)
        if method == "GET":
            return Reply(200, device.view())
        if method == "DELETE":
            del self.devices[device_id]
            return Reply(204)
        if method != "PATCH":
            return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")
        enabled = body.get("accountEnabled") if isinstance(body, dict) else None
        if not isinstance(enabled, bool):
            return bad_request(
                "Invalid value specified for property 'accountEnabled' of resource 'Device'."
            )
        device.account_enabled = enabled
        return Reply(204)

    # -- mailbox settings (user-update-mailboxsettings: automaticRepliesSetting) --------
    def _mailbox(self, user: str, method: str, body: Any) -> Reply:
        setting = self.auto_reply(user)
        if method == "GET":
            context = f"{GRAPH_METADATA}#users('{user}')/mailboxSettings"
            return Reply(200, {"@odata.context": context, "automaticRepliesSetting": dict(setting)})
        if method != "PATCH":
            return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")
        change = body.get("automaticRepliesSetting") if isinstance(body, dict) else None
        if not isinstance(change, dict):
            return bad_request("automaticRepliesSetting is required.", "ErrorInvalidRequest")
        change = {k: v for k, v in change.items() if not k.startswith("@odata.")}
        for name, allowed in AUTO_REPLY_FIELDS.items():
            if name in change and change[name] not in allowed:
                return bad_request(f"Invalid value for '{name}'.", "ErrorInvalidRequest")
        setting.update(change)
        return Reply(200, {"automaticRepliesSetting": dict(setting)})

    def _manager(self, sim: GraphSimulator, user: str, body: Any) -> Reply:
        manager = sim.users.get(self.managers.get(user, ""))
        if manager is None:
            return not_found("manager")
        return Reply(200, {"@odata.type": "#microsoft.graph.user", **manager.graph_view()})
