"""What the SCIM service publishes about itself (RFC 7643 sections 5-7): its configuration,
its one resource type (User) and the attributes of the User schema it keeps."""

from __future__ import annotations

from typing import Any

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RT_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
MAX_RESULTS = 200


def _attr(name: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    attr: dict[str, Any] = {
        "name": name,
        "type": kind,
        "multiValued": False,
        "required": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
        "description": extra.pop("description", name),
    }
    if kind == "string":
        attr["caseExact"] = False
    attr.update(extra)
    return attr


USER_ATTRIBUTES: list[dict[str, Any]] = [
    _attr(
        "userName",
        required=True,
        uniqueness="server",
        description="Unique identifier of the user: the ENT, CAS and Windows account name.",
    ),
    _attr(
        "name",
        "complex",
        subAttributes=[_attr("formatted"), _attr("familyName"), _attr("givenName")],
    ),
    _attr("displayName"),
    _attr(
        "emails",
        "complex",
        multiValued=True,
        description="Email addresses; the primary one is the Microsoft 365 UPN.",
        subAttributes=[
            _attr("value"),
            _attr("type", canonicalValues=["work", "home", "other"]),
            _attr("primary", "boolean"),
        ],
    ),
    _attr(
        "active",
        "boolean",
        description="Setting it to false starts the user's offboarding.",
    ),
]


def user_schema(base: str) -> dict[str, Any]:
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User account",
        "attributes": USER_ATTRIBUTES,
        "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{USER_SCHEMA}"},
    }


def user_resource_type(base: str) -> dict[str, Any]:
    return {
        "schemas": [RT_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [],
        "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"},
    }


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A Sortie API token with the scope `scim`.",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base}/ServiceProviderConfig",
        },
    }


def _str(max_length: int = 256) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


USER_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["userName"],
    "additionalProperties": False,
    "properties": {
        "schemas": {"type": "array", "items": _str(200), "maxItems": 5},
        "userName": {"type": "string", "minLength": 1, "maxLength": 256},
        "externalId": _str(),
        "displayName": _str(),
        "active": {"type": "boolean"},
        "name": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"formatted": _str(), "familyName": _str(), "givenName": _str()},
        },
        "emails": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "required": ["value"],
                "additionalProperties": False,
                "properties": {
                    "value": _str(320),
                    "type": _str(32),
                    "primary": {"type": "boolean"},
                },
            },
        },
    },
}
PATCH_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["schemas", "Operations"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": PATCH_OP}},
        "Operations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["op"],
                "properties": {
                    "op": {"enum": ["add", "replace", "remove"]},
                    "path": _str(200),
                    "value": {},
                },
            },
        },
    },
}
SEARCH_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["schemas"],
    "properties": {
        "schemas": {"type": "array", "items": {"const": SEARCH_REQUEST}},
        "filter": _str(600),
        "startIndex": {"type": "integer"},
        "count": {"type": "integer"},
        "attributes": {"type": "array", "items": _str(200)},
        "excludedAttributes": {"type": "array", "items": _str(200)},
    },
}


def body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its SCIM body itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/scim+json": {"schema": schema}},
        }
    }
