"""SCIM 2.0 (RFC 7643/7644) under `/scim/v2` for HR and IAM systems: discovery endpoints
and Users. Setting `active` to false, or deleting an active user, starts the user's
offboarding; the SCIM answer does not wait for it (header `Sortie-Offboarding` points to
the request)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from sortie_core.events import Subject

from . import handlers
from .auth import Principal, require
from .problems import Problem
from .scim_model import ScimError, apply_patch, parse_filter, select, validate_user
from .scim_schema import (
    ERROR,
    LIST_RESPONSE,
    MAX_RESULTS,
    PATCH_BODY,
    SEARCH_BODY,
    SEARCH_REQUEST,
    USER_BODY,
    USER_SCHEMA,
    body_doc,
    service_provider_config,
    user_resource_type,
    user_schema,
)
from .scim_store import ScimStore, Stale, StoredUser, Taken

log = logging.getLogger(__name__)

SCIM_JSON = "application/scim+json"


def scim_error(status: int, detail: str, scim_type: str | None = None, **kw: Any) -> JSONResponse:
    body: dict[str, Any] = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, **kw)


class ScimRoute(APIRoute):
    """Errors in SCIM's own format (RFC 7644 section 3.12), whatever raised them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ScimError as exc:
                return scim_error(exc.status, exc.detail, exc.scim_type)
            except Problem as exc:
                return scim_error(exc.status, exc.detail, headers=exc.headers)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return scim_error(400, f"{where}: {first.get('msg', 'invalid')}", "invalidValue")

        return route


router = APIRouter(prefix="/scim/v2", route_class=ScimRoute, tags=["SCIM 2.0"])
Scim = Annotated[Principal, Depends(require("scim"))]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/scim/v2"


def _store(request: Request) -> ScimStore:
    store: ScimStore | None = getattr(request.app.state, "scim_store", None)
    if store is None:
        deps: handlers.Deps = request.app.state.deps
        store = request.app.state.scim_store = ScimStore(deps.store.redis)
    return store


def _ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (SCIM_JSON, "application/json"):
        raise ScimError(415, "send the body as application/scim+json")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScimError(400, "the body is not valid JSON", "invalidSyntax") from exc
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    return body


def _resource(stored: StoredUser, base: str) -> dict[str, Any]:
    doc = dict(stored.doc)
    doc["meta"] = {**doc["meta"], "version": f'W/"{stored.version}"'}
    doc["meta"]["location"] = f"{base}/Users/{doc['id']}"
    return doc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _subject(doc: dict[str, Any]) -> Subject:
    name = doc["userName"]
    emails = doc.get("emails") or []
    primary = next((e["value"] for e in emails if e.get("primary")), None)
    upn = name if _EMAIL.match(name) else primary or (emails[0]["value"] if emails else None)
    plain = name if re.match(r"^\S+$", name) else None
    return Subject(
        user_id=name,
        upn=upn if upn and _EMAIL.match(upn) else None,
        cas_username=plain,
        windows_account=plain,
    )


async def _offboard(
    request: Request, principal: Principal, before: StoredUser, why: str
) -> uuid.UUID:
    """Same user, same version, same key: a retried or racing call gets the same request."""
    deps: handlers.Deps = request.app.state.deps
    _, rid = await handlers.accept_offboard(
        deps,
        subject=_subject(before.doc),
        reason=why,
        requested_by=principal.name,
        actions=[],
        effective_at=None,
        idempotency_key=f"scim:{before.doc['id']}:{before.version}",
        principal=principal.name,
    )
    log.info("SCIM %s of user %s: offboarding %s", why, before.doc["id"], rid)
    return rid


def _offboard_header(rid: uuid.UUID | None) -> dict[str, str]:
    return {"Sortie-Offboarding": f"/v1/requests/{rid}"} if rid else {}


# Discovery ---------------------------------------------------------------------------


@router.get("/ServiceProviderConfig")
async def get_spc(request: Request, _p: Scim) -> Response:
    return _ok(service_provider_config(_base(request)))


@router.get("/ResourceTypes")
async def list_resource_types(request: Request, _p: Scim) -> Response:
    items = [user_resource_type(_base(request))]
    return _ok(_list(items, 1, len(items)))


@router.get("/ResourceTypes/{rtid}")
async def get_resource_type(rtid: str, request: Request, _p: Scim) -> Response:
    if rtid != "User":
        raise ScimError(404, f"no resource type {rtid[:100]!r}")
    return _ok(user_resource_type(_base(request)))


@router.get("/Schemas")
async def list_schemas(request: Request, _p: Scim) -> Response:
    items = [user_schema(_base(request))]
    return _ok(_list(items, 1, len(items)))


@router.get("/Schemas/{sid}")
async def get_schema(sid: str, request: Request, _p: Scim) -> Response:
    if sid != USER_SCHEMA:
        raise ScimError(404, f"no schema {sid[:200]!r}")
    return _ok(user_schema(_base(request)))


def _list(items: list[dict[str, Any]], start: int, total: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(items),
        "Resources": items,
    }


# Users -------------------------------------------------------------------------------


@router.post("/Users", status_code=201, openapi_extra=body_doc(USER_BODY))
async def create_user(request: Request, principal: Scim) -> Response:
    doc = validate_user(await _json_body(request))
    now = _now()
    doc = {
        "schemas": [USER_SCHEMA],
        "id": str(uuid.uuid4()),
        **doc,
        "meta": {"resourceType": "User", "created": now, "lastModified": now},
    }
    try:
        version = await _store(request).put(doc, None, int(datetime.now(UTC).timestamp() * 1e6))
    except Taken as exc:
        raise ScimError(409, f"userName {doc['userName']!r} is taken", "uniqueness") from exc
    body = _resource(StoredUser(doc, version), _base(request))
    return _ok(body, 201, {"Location": body["meta"]["location"]})


async def _load(request: Request, uid: str) -> StoredUser:
    found = await _store(request).get(uid) if len(uid) <= 64 else None
    if found is None:
        raise ScimError(404, f"no user {uid[:64]!r}")
    return found


Attrs = Annotated[str | None, Query(max_length=1000)]


@router.get("/Users/{uid}")
async def get_user(
    uid: str,
    request: Request,
    _p: Scim,
    attributes: Attrs = None,
    excludedAttributes: Attrs = None,
) -> Response:
    stored = await _load(request, uid)
    return _ok(select(_resource(stored, _base(request)), attributes, excludedAttributes))


async def _search(
    request: Request,
    filter_: str | None,
    start: int,
    count: int,
    attributes: str | None,
    excluded: str | None,
) -> Response:
    store = _store(request)
    start = max(start, 1)
    count = max(0, min(count, MAX_RESULTS))
    if filter_:
        attr, value = parse_filter(filter_)
        if attr == "username":
            ids = await store.by_name(value)
        elif attr == "externalid":
            ids = await store.by_external_id(value)
        else:
            ids = [value] if len(value) <= 64 else []
        users = await store.many(ids)
        total = len(users)
        users = users[start - 1 : start - 1 + count]
    else:
        ids, total = await store.page(start - 1, count)
        users = await store.many(ids)
    base = _base(request)
    items = [select(_resource(u, base), attributes, excluded) for u in users]
    return _ok(_list(items, start, total))


@router.get("/Users")
async def list_users(
    request: Request,
    _p: Scim,
    filter: Annotated[str | None, Query(max_length=600)] = None,
    startIndex: Annotated[int, Query(ge=-(2**31), le=2**31)] = 1,
    count: Annotated[int, Query(ge=-(2**31), le=2**31)] = 100,
    attributes: Attrs = None,
    excludedAttributes: Attrs = None,
) -> Response:
    return await _search(request, filter, startIndex, count, attributes, excludedAttributes)


@router.post("/Users/.search", openapi_extra=body_doc(SEARCH_BODY))
@router.post(
    "/.search", openapi_extra=body_doc(SEARCH_BODY)
)  # Users are the only resource type: the root search is theirs.
async def search_users(request: Request, _p: Scim) -> Response:
    body = await _json_body(request)
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise ScimError(400, f"the body must carry the schema {SEARCH_REQUEST}", "invalidSyntax")

    def text(key: str) -> str | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str) or len(value) > 1000:
            raise ScimError(400, f"{key} must be a short string or list", "invalidValue")
        return value

    def number(key: str, default: int) -> int:
        value = body.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 2**31:
            raise ScimError(400, f"{key} must be an integer", "invalidValue")
        return value

    return await _search(
        request,
        text("filter"),
        number("startIndex", 1),
        number("count", 100),
        text("attributes"),
        text("excludedAttributes"),
    )


async def _replace(
    request: Request, principal: Scim, before: StoredUser, fields: dict[str, Any]
) -> Response:
    rid = None
    owner = await _store(request).by_name(fields["userName"])
    if owner and owner[0] != before.doc["id"]:
        # Refuse before anything starts (the store checks again atomically).
        raise ScimError(409, f"userName {fields['userName']!r} is taken", "uniqueness")
    if before.doc.get("active", True) and not fields.get("active", True):
        rid = await _offboard(request, principal, before, "scim_deactivated")
    doc = {
        "schemas": [USER_SCHEMA],
        "id": before.doc["id"],
        **fields,
        "meta": {**before.doc["meta"], "lastModified": _now()},
    }
    try:
        version = await _store(request).put(doc, before, 0)
    except Taken as exc:
        raise ScimError(409, f"userName {doc['userName']!r} is taken", "uniqueness") from exc
    except Stale as exc:
        raise ScimError(409, "the user changed meanwhile; read it again", "mutability") from exc
    body = _resource(StoredUser(doc, version), _base(request))
    return _ok(body, headers=_offboard_header(rid))


@router.put("/Users/{uid}", openapi_extra=body_doc(USER_BODY))
async def replace_user(uid: str, request: Request, principal: Scim) -> Response:
    fields = validate_user(await _json_body(request))
    return await _replace(request, principal, await _load(request, uid), fields)


@router.patch("/Users/{uid}", openapi_extra=body_doc(PATCH_BODY))
async def patch_user(uid: str, request: Request, principal: Scim) -> Response:
    body = await _json_body(request)
    before = await _load(request, uid)
    resource = {k: v for k, v in before.doc.items() if k not in ("id", "meta", "schemas")}
    return await _replace(request, principal, before, apply_patch(resource, body))


@router.delete("/Users/{uid}", status_code=204)
async def delete_user(uid: str, request: Request, principal: Scim) -> Response:
    before = await _load(request, uid)
    rid = None
    if before.doc.get("active", True):
        rid = await _offboard(request, principal, before, "scim_deleted")
    try:
        await _store(request).delete(before)
    except Stale as exc:
        raise ScimError(409, "the user changed meanwhile; read it again", "mutability") from exc
    return Response(status_code=204, headers=_offboard_header(rid))


# Everything else: SCIM errors, not the API's problem+json --------------------------------

_READ_ONLY_PATHS = ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas")


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def not_here(rest: str, request: Request, _p: Scim) -> Response:
    path = "/" + rest
    if request.method != "GET" and path.startswith(_READ_ONLY_PATHS):
        return scim_error(405, f"{request.method} is not allowed on {path[:100]}")
    if path.rstrip("/") == "/Users" or (path.startswith("/Users/") and request.method in ("POST",)):
        return scim_error(405, f"{request.method} is not allowed on {path[:100]}")
    return scim_error(404, f"no SCIM endpoint {path[:100]}")
