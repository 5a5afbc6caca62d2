"""The SCIM resources Sortie keeps, on scim2-models (RFC 7643/7644): Users with the core,
enterprise and Sortie schemas, Groups, and the service's description of itself.

What stays hand-written here, and why:
- the enterprise `manager` without a required `$ref`: Entra ID sends only its `value`, and
  as a bare string in PATCH (`"value": "<manager id>"`), see
  https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
- the Sortie extension schema (only Sortie needs those attributes);
- the tolerances Entra relies on, set through scim2-models' own `ScimPolicy`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, field_validator
from scim2_models import (
    URN,
    AnyExtension,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    EnterpriseUser,
    ETag,
    Extension,
    External,
    Filter,
    Group,
    Mutability,
    Patch,
    Reference,
    ResourceType,
    Returned,
    SchemaExtension,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models import (
    Email as BaseEmail,
)

SORTIE_USER = "urn:sortie:params:scim:schemas:extension:sortie:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_RESULTS = 200


class Manager(ComplexAttribute):
    value: Annotated[str | None, CaseExact.true] = None
    """The id of the SCIM resource representing the User's manager."""

    ref: Reference[User] | None = Field(  # type: ignore[type-arg]
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display_name: Annotated[str | None, Mutability.read_only] = None


class Enterprise(EnterpriseUser):
    manager: Manager | None = None  # type: ignore[assignment]

    @field_validator("manager", mode="before")
    @classmethod
    def _bare_id(cls, value: Any) -> Any:
        # Entra ID: {"op": "Add", "path": "…:manager", "value": "26118915-6090-4610-87e4-…"}
        if isinstance(value, str):
            return {"value": value} if value else None
        return value


class Email(BaseEmail):
    # RFC 7643 section 4.1.2 types `emails.value` as a string; the IdPs' own samples use
    # reserved domains (Okta: test.user@okta.local), which an RFC 5321 validator refuses.
    value: Annotated[str | None, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] = None  # type: ignore[assignment]


_NO_CTRL = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")


def _name(value: Any) -> Any:
    """userName and displayName key the uniqueness index: not empty, one short line."""
    if isinstance(value, str) and not _NO_CTRL.match(value):
        raise ValueError("must be 1 to 256 characters without control characters")
    return value


class CoreUser(User[AnyExtension]):
    emails: list[Email] | None = None  # type: ignore[assignment]

    @field_validator("user_name")
    @classmethod
    def _user_name(cls, value: Any) -> Any:
        return _name(value)


class ScimGroup(Group):
    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: Any) -> Any:
        return _name(value)


class SortieUser(Extension):
    """What only Sortie needs to reach the user's accounts, and what it did."""

    __schema__ = URN(SORTIE_USER)

    cas_username: Annotated[str | None, Field(max_length=256)] = None
    """The user's CAS (ENT single sign-on) username, when it is not the userName."""

    windows_account: Annotated[str | None, Field(max_length=256)] = None
    """The account the user opens school workstation sessions with."""

    site: Annotated[str | None, Field(max_length=100)] = None
    """The user's site or school: picks the site's identifier templates."""

    offboard_at: datetime | None = None
    """When set, deactivating or deleting the user schedules the offboarding for then."""

    # What Sortie did: read-only, and returned only when asked for (`attributes=`), so that
    # an IdP comparing its PATCH with the answer sees only what it wrote.
    offboarding: Annotated[str | None, Mutability.read_only, Returned.request] = None
    """The last offboarding request Sortie started for this user."""

    reactivation_requested_at: Annotated[
        datetime | None, Mutability.read_only, Returned.request
    ] = None
    """When the user was last set active again after an offboarding."""


ScimUser = CoreUser[Enterprise | SortieUser]

USER_TYPE = ResourceType.from_resource(ScimUser).model_copy(
    update={
        "schema_extensions": [
            SchemaExtension.model_validate({"schema": ENTERPRISE_USER, "required": False}),
            SchemaExtension.model_validate({"schema": SORTIE_USER, "required": False}),
        ]
    }
)

CONFIG = ServiceProviderConfig(
    documentation_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc7644"),
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=False),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken,
            name="Bearer token",
            description="A Sortie API token with the scope `scim`, or an OAuth 2.0 "
            "access token from the configured issuer.",
            primary=True,
        )
    ],
)

# Entra ID removes a member with {"op": "Remove", "path": "members", "value": [{"value": id}]}
# and adds an entry through a value filter that matches none yet
# (emails[type eq "work"].value): both are tolerances scim2-models names.
POLICY = ScimPolicy(
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

PROVIDER = ScimProvider(
    models=[CoreUser, Enterprise, SortieUser, ScimGroup],
    resource_types=[USER_TYPE, ResourceType.from_resource(ScimGroup)],
    config=CONFIG,
    policy=POLICY,
)
