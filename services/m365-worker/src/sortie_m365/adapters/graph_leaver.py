"""The leaver procedure's Graph calls, built by msgraph-sdk's request builders and sent
through `GraphSdkDirectory.send` (its error translation, rate limiter and bounds).

Each call names the least privileged application permission of its v1.0 page
(https://learn.microsoft.com/graph/api/<page>, the page in the comment); services/
m365-worker/README.md lists them per action. Answers are read as plain JSON.
"""

from __future__ import annotations

import uuid
from typing import Any

from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.drives.item.items.item.invite.invite_post_request_body import (
    InvitePostRequestBody,
)
from msgraph.generated.models.assigned_license import AssignedLicense
from msgraph.generated.models.automatic_replies_setting import AutomaticRepliesSetting
from msgraph.generated.models.automatic_replies_status import AutomaticRepliesStatus
from msgraph.generated.models.device import Device
from msgraph.generated.models.drive_recipient import DriveRecipient
from msgraph.generated.models.external_audience_scope import ExternalAudienceScope
from msgraph.generated.models.mailbox_settings import MailboxSettings
from msgraph.generated.models.permission import Permission
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.temporary_access_pass_authentication_method import (
    TemporaryAccessPassAuthenticationMethod,
)
from msgraph.generated.models.user import User
from msgraph.generated.users.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody,
)

from sortie_core.errors import NotFoundError, TransientError

from .graph_sdk import PERMISSION_ENABLE, GraphSdkDirectory

# Least privileged application permissions (Graph v1.0 pages).
PERMISSION_LICENSES = "User.ReadWrite.All"  # user-assignlicense
PERMISSION_READ_GROUPS = "GroupMember.Read.All"  # user-list-memberof, user-list-ownedobjects
PERMISSION_MEMBERS = "GroupMember.ReadWrite.All"  # group-delete-members, group-post-members
PERMISSION_OWNERS = "Group.ReadWrite.All"  # group-delete-owners, group-post-owners
PERMISSION_METHODS = "UserAuthenticationMethod.ReadWrite.All"  # *authenticationmethod-delete
PERMISSION_READ_METHODS = "UserAuthenticationMethod.Read.All"  # authentication-list-methods
PERMISSION_TAP = "UserAuthMethod-TAP.ReadWrite.All"  # authentication-post-temporaryaccesspass…
PERMISSION_READ_DEVICES = "Directory.Read.All"  # user-list-registereddevices
PERMISSION_DEVICES = "Device.ReadWrite.All"  # device-update, device-delete
PERMISSION_MAILBOX_SETTINGS = "MailboxSettings.ReadWrite"  # user-update-mailboxsettings
PERMISSION_READ_USER = "User.Read.All"  # user-list-manager
PERMISSION_READ_FILES = "Files.Read.All"  # drive-get, driveitem-list-permissions
PERMISSION_FILES = "Files.ReadWrite.All"  # driveitem-invite, permission-delete
_DIRECTORY_OBJECTS = "https://graph.microsoft.com/v1.0/directoryObjects/"
_GROUP = "#microsoft.graph.group"
# @odata.type of a method -> its msgraph-sdk collection (authenticationmethods-overview).
METHOD_KINDS = {
    "#microsoft.graph.fido2AuthenticationMethod": "fido2",
    "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod": "microsoft_authenticator",
    "#microsoft.graph.phoneAuthenticationMethod": "phone",
    "#microsoft.graph.emailAuthenticationMethod": "email",
    "#microsoft.graph.softwareOathAuthenticationMethod": "software_oath",
    "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod": "windows_hello_for_business",
    "#microsoft.graph.temporaryAccessPassAuthenticationMethod": "temporary_access_pass",
}
_MAX_PAGES = 50


class GraphLeaver:
    def __init__(self, directory: GraphSdkDirectory) -> None:
        self._d = directory
        self._client = directory.client

    def _user(self, user: str) -> Any:
        return self._client.users.by_user_id(user)

    async def _list(self, info: RequestInformation, what: str, permission: str) -> list[Any]:
        """Every item of a collection, following `@odata.nextLink`."""
        items: list[Any] = []
        for _ in range(_MAX_PAGES):
            page = await self._d.send(info, what, permission, write=False)
            value = page.get("value") if isinstance(page, dict) else None
            if not isinstance(value, list):
                raise TransientError(f"Graph sent no list for {what}", code="graph_bad_json")
            items += [v for v in value if isinstance(v, dict)]
            link = page.get("@odata.nextLink")
            if not isinstance(link, str):
                return items
            info = RequestInformation(info.http_method, link)
        raise TransientError(f"Graph sent too many pages for {what}", code="graph_too_many_pages")

    async def set_account_enabled(self, user: str, enabled: bool) -> None:
        """`PATCH /users/{id}` accountEnabled (user-update: User.EnableDisableAccount.All)."""
        info = self._user(user).to_patch_request_information(User(account_enabled=enabled))
        await self._d.send(info, "enabling sign-in", PERMISSION_ENABLE, write=True)

    # -- licences ----------------------------------------------------------------------
    async def licenses(self, user: str) -> list[dict[str, Any]]:
        found = (await self._d.read_user(user, ["assignedLicenses"])).get("assignedLicenses")
        return [x for x in found if isinstance(x, dict)] if isinstance(found, list) else []

    async def assign_licenses(
        self, user: str, add: list[dict[str, Any]], remove: list[str]
    ) -> None:
        body = AssignLicensePostRequestBody(
            add_licenses=[
                AssignedLicense(
                    sku_id=uuid.UUID(x["skuId"]),
                    disabled_plans=[uuid.UUID(p) for p in x.get("disabledPlans") or []],
                )
                for x in add
            ],
            remove_licenses=[uuid.UUID(s) for s in remove],
        )
        info = self._user(user).assign_license.to_post_request_information(body)
        await self._d.send(info, "assignLicense", PERMISSION_LICENSES, write=True)

    # -- groups ------------------------------------------------------------------------
    async def groups(self, user: str) -> list[str]:
        info = self._user(user).member_of.to_get_request_information()
        found = await self._list(info, "memberOf", PERMISSION_READ_GROUPS)
        return [g["id"] for g in found if g.get("@odata.type") == _GROUP and "id" in g]

    async def owned_groups(self, user: str) -> list[str]:
        info = self._user(user).owned_objects.to_get_request_information()
        found = await self._list(info, "ownedObjects", PERMISSION_READ_GROUPS)
        return [g["id"] for g in found if g.get("@odata.type") == _GROUP and "id" in g]

    async def set_membership(self, group: str, user: str, *, owner: bool, present: bool) -> bool:
        """Add or remove `user` as member (or owner) of `group`; False when it already was
        (or was not): a 404 to a removal, a 400 'already exist' to an addition is no change
        only after a read-back, so the caller reads back either way."""
        item = self._client.groups.by_group_id(group)
        relation = item.owners if owner else item.members
        permission = PERMISSION_OWNERS if owner else PERMISSION_MEMBERS
        if present:
            ref = ReferenceCreate(odata_id=f"{_DIRECTORY_OBJECTS}{user}")
            info = relation.ref.to_post_request_information(ref)
        else:
            info = relation.by_directory_object_id(user).ref.to_delete_request_information()
        what = f"{'owners' if owner else 'members'}/$ref of a group"
        try:
            await self._d.send(info, what, permission, write=True)
        except NotFoundError:
            if present:
                raise
            return False
        return True

    # -- authentication methods --------------------------------------------------------
    async def auth_methods(self, user: str) -> list[dict[str, Any]]:
        info = self._user(user).authentication.methods.to_get_request_information()
        return await self._list(info, "authentication/methods", PERMISSION_READ_METHODS)

    async def delete_auth_method(self, user: str, odata_type: str, method: str) -> None:
        kind = METHOD_KINDS[odata_type]
        collection = getattr(self._user(user).authentication, f"{kind}_methods")
        item = getattr(collection, f"by_{kind}_authentication_method_id")(method)
        try:
            await self._d.send(
                item.to_delete_request_information(),
                f"deleting a {kind} method",
                PERMISSION_METHODS,
                write=True,
            )
        except NotFoundError:
            return  # already gone: the read-back says so

    async def issue_temporary_access_pass(
        self, user: str, lifetime_minutes: int, usable_once: bool
    ) -> dict[str, Any]:
        """The new method as Graph answered it, `temporaryAccessPass` included: the caller
        seals it at once and drops it."""
        body = TemporaryAccessPassAuthenticationMethod(
            lifetime_in_minutes=lifetime_minutes, is_usable_once=usable_once
        )
        methods = self._user(user).authentication.temporary_access_pass_methods
        found = await self._d.send(
            methods.to_post_request_information(body),
            "issuing a Temporary Access Pass",
            PERMISSION_TAP,
            write=True,
        )
        if not isinstance(found, dict) or not isinstance(found.get("temporaryAccessPass"), str):
            raise TransientError("Graph sent no Temporary Access Pass", code="graph_bad_json")
        return found

    async def temporary_access_passes(self, user: str) -> list[dict[str, Any]]:
        methods = self._user(user).authentication.temporary_access_pass_methods
        info = methods.to_get_request_information()
        return await self._list(info, "temporaryAccessPassMethods", PERMISSION_READ_METHODS)

    # -- devices -----------------------------------------------------------------------
    async def devices(self, user: str) -> list[dict[str, Any]]:
        info = self._user(user).registered_devices.to_get_request_information()
        found = await self._list(info, "registeredDevices", PERMISSION_READ_DEVICES)
        return [d for d in found if d.get("@odata.type") == "#microsoft.graph.device"]

    async def device(self, device: str) -> dict[str, Any] | None:
        info = self._client.devices.by_device_id(device).to_get_request_information()
        try:
            found = await self._d.send(
                info, "the device read-back", PERMISSION_READ_DEVICES, write=False
            )
        except NotFoundError:
            return None
        return found if isinstance(found, dict) else None

    async def set_device(self, device: str, *, enabled: bool | None) -> None:
        """`enabled` None deletes the device."""
        item = self._client.devices.by_device_id(device)
        info = (
            item.to_delete_request_information()
            if enabled is None
            else item.to_patch_request_information(Device(account_enabled=enabled))
        )
        await self._d.send(info, "updating a device", PERMISSION_DEVICES, write=True)

    # -- mailbox settings, manager -----------------------------------------------------
    async def auto_reply(self, user: str) -> dict[str, Any]:
        info = self._user(user).mailbox_settings.to_get_request_information()
        found = await self._d.send(
            info, "mailboxSettings", PERMISSION_MAILBOX_SETTINGS, write=False
        )
        setting = found.get("automaticRepliesSetting") if isinstance(found, dict) else None
        return setting if isinstance(setting, dict) else {}

    async def set_auto_reply(self, user: str, setting: dict[str, Any]) -> None:
        body = MailboxSettings(
            automatic_replies_setting=AutomaticRepliesSetting(
                status=AutomaticRepliesStatus(setting.get("status", "disabled")),
                external_audience=ExternalAudienceScope(setting.get("externalAudience", "all")),
                internal_reply_message=setting.get("internalReplyMessage"),
                external_reply_message=setting.get("externalReplyMessage"),
            )
        )
        info = self._user(user).mailbox_settings.to_patch_request_information(body)
        await self._d.send(info, "the automatic reply", PERMISSION_MAILBOX_SETTINGS, write=True)

    async def person(self, key: str) -> tuple[str, str] | None:
        """(object id, lower-cased UPN) of the user `key` names, None if Graph has none."""
        try:
            found = await self._d.get_user(key)
        except NotFoundError:
            return None
        return found.id, found.upn.lower()

    async def manager(self, user: str) -> str | None:
        """The manager's UPN, None when the user has none."""
        info = self._user(user).manager.to_get_request_information()
        try:
            found = await self._d.send(info, "the manager", PERMISSION_READ_USER, write=False)
        except NotFoundError:
            return None
        upn = found.get("userPrincipalName") if isinstance(found, dict) else None
        return upn if isinstance(upn, str) and upn else None

    # -- OneDrive (drive-get, driveitem-invite, driveitem-list-permissions, permission-delete)
    async def drive(self, user: str) -> str | None:
        """The id of the user's OneDrive, None when none is provisioned (a 404)."""
        info = self._user(user).drive.to_get_request_information()
        try:
            found = await self._d.send(info, "the OneDrive", PERMISSION_READ_FILES, write=False)
        except NotFoundError:
            return None
        drive = found.get("id") if isinstance(found, dict) else None
        if not isinstance(drive, str) or not drive:
            raise TransientError("Graph sent no drive id", code="graph_bad_json")
        return drive

    def _root(self, drive: str) -> Any:
        # msgraph-sdk has no /users/{id}/drive/root builder: the drive's items/root.
        return self._client.drives.by_drive_id(drive).items.by_drive_item_id("root")

    async def drive_permissions(self, drive: str) -> list[dict[str, Any]]:
        info = self._root(drive).permissions.to_get_request_information()
        return await self._list(info, "the OneDrive's permissions", PERMISSION_READ_FILES)

    async def share_drive(self, drive: str, email: str, role: str) -> dict[str, Any]:
        """A direct permission on the drive's root for `email` (no mail sent); the
        permission Graph answered."""
        body = InvitePostRequestBody(
            recipients=[DriveRecipient(email=email)],
            roles=[role],
            require_sign_in=True,
            send_invitation=False,
        )
        info = self._root(drive).invite.to_post_request_information(body)
        found = await self._d.send(info, "sharing the OneDrive", PERMISSION_FILES, write=True)
        value = found.get("value") if isinstance(found, dict) else None
        if not isinstance(value, list) or not value or not isinstance(value[0], dict):
            raise TransientError("Graph sent no permission", code="graph_bad_json")
        return value[0]

    async def set_drive_roles(self, drive: str, permission: str, roles: list[str]) -> None:
        """`PATCH …/permissions/{id}` roles (permission-update: Files.ReadWrite.All)."""
        item = self._root(drive).permissions.by_permission_id(permission)
        info = item.to_patch_request_information(Permission(roles=roles))
        await self._d.send(info, "a OneDrive permission", PERMISSION_FILES, write=True)

    async def unshare_drive(self, drive: str, permission: str) -> None:
        item = self._root(drive).permissions.by_permission_id(permission)
        try:
            await self._d.send(
                item.to_delete_request_information(),
                "removing a OneDrive permission",
                PERMISSION_FILES,
                write=True,
            )
        except NotFoundError:
            return  # already gone: the read-back says so
