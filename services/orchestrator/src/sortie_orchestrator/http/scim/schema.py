"""The request bodies the SCIM routes read themselves, as OpenAPI documents them (for
docs/openapi.json and the fuzzer). The SCIM schemas themselves come from scim2-models
(model.PROVIDER)."""

from __future__ import annotations

from typing import Any

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SORTIE = "urn:sortie:params:scim:schemas:extension:sortie:2.0:User"


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
        "title": _str(),
        "locale": _str(32),
        "timezone": _str(64),
        "password": {"type": "string", "writeOnly": True},
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
        ENTERPRISE: {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "employeeNumber": _str(),
                "department": _str(),
                "manager": {"type": "object", "properties": {"value": _str()}},
            },
        },
        SORTIE: {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "casUsername": _str(),
                "windowsAccount": _str(),
                "site": _str(100),
                "offboardAt": {"type": "string", "format": "date-time"},
            },
        },
    },
}
GROUP_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["displayName"],
    "additionalProperties": False,
    "properties": {
        "schemas": {"type": "array", "items": _str(200), "maxItems": 5},
        "displayName": {"type": "string", "minLength": 1, "maxLength": 256},
        "externalId": _str(),
        "members": {
            "type": "array",
            "maxItems": 100,
            "items": {
                "type": "object",
                "required": ["value"],
                "additionalProperties": False,
                "properties": {"value": _str(64), "display": _str()},
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
                    "op": {"enum": ["add", "replace", "remove", "Add", "Replace", "Remove"]},
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
