"""SCIM 2.0 (RFC 7643/7644) under `/scim/v2` for HR and IAM systems, on scim2-models:
discovery, Users and Groups, filters, PATCH, ETags. What a user's lifecycle starts
(offboardings) is in scim_lifecycle; the answer does not wait for it (header
`Sortie-Offboarding` points to the request)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    InvalidSyntaxException,
    ListResponse,
    Meta,
    NotFoundException,
    PatchOp,
    PreconditionFailedException,
    Schema,
    SCIMException,
    SearchRequest,
)

from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.scim_store import GROUPS, USERS, ScimStore, Stale, Stored, Taken
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.scim import lifecycle
from sortie_orchestrator.http.scim.lifecycle import Kind
from sortie_orchestrator.http.scim.model import (
    CONFIG,
    MAX_RESULTS,
    POLICY,
    PROVIDER,
    ScimGroup,
    ScimUser,
)
from sortie_orchestrator.http.scim.schema import (
    GROUP_BODY,
    PATCH_BODY,
    SEARCH_BODY,
    USER_BODY,
    body_doc,
)
from sortie_orchestrator.http.scim.search import search

SCIM_JSON = "application/scim+json"


def scim_error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Error(status=status, detail=detail, scim_type=scim_type).model_dump()
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


def _from_validation(exc: ValidationError) -> JSONResponse:
    errors = exc.errors()
    error = Error.from_validation_error(errors[0]) if errors else Error(status=400)
    return scim_error(error.status or 400, error.detail or "invalid", error.scim_type)


class ScimRoute(APIRoute):
    """Errors in SCIM's own format (RFC 7644 section 3.12), whatever raised them; every
    call runs under Sortie's SCIM provider and its tolerances (scim_model.POLICY)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                with PROVIDER:
                    return await handler(request)
            except SCIMException as exc:
                error = exc.to_error()
                return scim_error(error.status or 400, error.detail or "", error.scim_type)
            except ValidationError as exc:
                return _from_validation(exc)
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


def _stores(request: Request) -> tuple[ScimStore, ScimStore]:
    stores: tuple[ScimStore, ScimStore] | None = getattr(request.app.state, "scim_stores", None)
    if stores is None:
        deps: handlers.Deps = request.app.state.deps
        stores = (ScimStore(deps.store.redis, USERS), ScimStore(deps.store.redis, GROUPS))
        request.app.state.scim_stores = stores
    return stores


def _kind(request: Request, endpoint: str) -> Kind:
    users, groups = _stores(request)
    if endpoint == "Users":
        return Kind(ScimUser, users, "Users", groups)
    return Kind(ScimGroup, groups, "Groups", users)


def _ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (SCIM_JSON, "application/json"):
        raise Problem(415, "send the body as application/scim+json")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSyntaxException(detail="the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="the body must be a JSON object")
    return body


def _resource_body(body: dict[str, Any]) -> dict[str, Any]:
    """Entra ID lists a schema of its own that names no attribute in its Group creates
    ("http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group", in
    https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups#create-group):
    such a schema is dropped; one that carries attributes is still refused."""
    schemas = body.get("schemas")
    if isinstance(schemas, list):
        body["schemas"] = [
            s for s in schemas if not isinstance(s, str) or s in body or PROVIDER.model_for(s)
        ]
    return body


def _now() -> datetime:
    return datetime.now(UTC)


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _check_if_match(request: Request, stored: Stored) -> None:
    wanted = request.headers.get("if-match")
    if not wanted or wanted.strip() == "*":
        return
    if _etag(stored.version) not in [t.strip() for t in wanted.split(",")]:
        raise PreconditionFailedException(
            detail=f"the resource is at version {_etag(stored.version)}; read it again"
        )


async def _load(kind: Kind, rid: str) -> Stored:
    found = await kind.store.get(rid)
    if found is None:
        raise NotFoundException(detail=f"no {kind.endpoint[:-1].lower()} {rid[:64]!r}")
    return found


def _query_params(request: Request) -> dict[str, str]:
    keep = ("attributes", "excludedAttributes")
    return {k: v for k, v in request.query_params.items() if k in keep}


def _response_params(request: Request, kind: Kind) -> Any:
    """`attributes` / `excludedAttributes`; a write checks them before it changes anything."""
    return SearchRequest[kind.model].model_validate(_query_params(request))  # type: ignore[name-defined]


async def _render(
    request: Request, kind: Kind, stored: Stored, ctx: Context, status: int = 200
) -> Response:
    resource = await lifecycle.hydrate(kind, stored, _base(request))
    params = _response_params(request, kind)
    body = resource.model_dump(scim_ctx=ctx, response_parameters=params)
    headers = {"ETag": _etag(stored.version)}
    if status == 201:
        headers["Location"] = f"{_base(request)}/{kind.endpoint}/{stored.id}"
    return _ok(body, status, headers)


# Discovery ---------------------------------------------------------------------------


def _described(items: list[Any], base: str, endpoint: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        body = item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        resource_type = "Schema" if endpoint == "Schemas" else "ResourceType"
        body["meta"] = {"resourceType": resource_type, "location": f"{base}/{endpoint}/{item.id}"}
        out.append(body)
    return out


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(items),
        "startIndex": 1,
        "itemsPerPage": len(items),
        "Resources": items,
    }


@router.get("/ServiceProviderConfig")
async def get_spc(request: Request, _p: Scim) -> Response:
    body = CONFIG.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {
        "resourceType": "ServiceProviderConfig",
        "location": f"{_base(request)}/ServiceProviderConfig",
    }
    return _ok(body)


@router.get("/ResourceTypes")
async def list_resource_types(request: Request, _p: Scim) -> Response:
    return _ok(_listing(_described(list(PROVIDER.resource_types), _base(request), "ResourceTypes")))


@router.get("/ResourceTypes/{rtid}")
async def get_resource_type(rtid: str, request: Request, _p: Scim) -> Response:
    found = [r for r in PROVIDER.resource_types if r.id == rtid]
    if not found:
        raise NotFoundException(detail=f"no resource type {rtid[:100]!r}")
    return _ok(_described(found, _base(request), "ResourceTypes")[0])


@router.get("/Schemas")
async def list_schemas(request: Request, _p: Scim) -> Response:
    return _ok(_listing(_described(list(PROVIDER.schemas), _base(request), "Schemas")))


@router.get("/Schemas/{sid}")
async def get_schema(sid: str, request: Request, _p: Scim) -> Response:
    found: list[Schema] = [s for s in PROVIDER.schemas if s.id == sid]
    if not found:
        raise NotFoundException(detail=f"no schema {sid[:200]!r}")
    return _ok(_described(found, _base(request), "Schemas")[0])


# Users and Groups --------------------------------------------------------------------

Attrs = Annotated[str | None, Query(max_length=1000)]
Filter = Annotated[str | None, Query(max_length=600)]
Index = Annotated[int, Query(ge=-(2**31), le=2**31)]


async def _create(request: Request, principal: Principal, endpoint: str) -> Response:
    kind = _kind(request, endpoint)
    _response_params(request, kind)
    body = _resource_body(await _json_body(request))
    resource = kind.model.model_validate(
        body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=POLICY
    )
    now = _now()
    resource.id = str(uuid.uuid4())
    resource.meta = Meta(resource_type=kind.endpoint[:-1], created=now, last_modified=now)
    await lifecycle.check_members(kind, resource)
    doc = lifecycle.to_doc(resource)
    try:
        version = await kind.store.put(doc, None, int(now.timestamp() * 1e6))
    except Taken as exc:
        raise lifecycle.taken(kind, doc) from exc
    return await _render(
        request, kind, Stored(doc, version), Context.RESOURCE_CREATION_RESPONSE, 201
    )


async def _write(
    request: Request, principal: Principal, kind: Kind, before: Stored, resource: Any, ctx: Context
) -> Response:
    resource.id = before.id
    resource.meta = Meta.model_validate({**before.doc["meta"], "lastModified": _now()})
    await lifecycle.check_members(kind, resource)
    doc = lifecycle.to_doc(resource)
    owner = await kind.store.by_name(str(doc[kind.store.kind.name]))
    if owner and owner[0] != before.id:
        raise lifecycle.taken(kind, doc)  # before anything starts
    headers = await lifecycle.on_change(request, principal, kind, before, doc)
    try:
        version = await kind.store.put(doc, before, 0)
    except Taken as exc:
        raise lifecycle.taken(kind, doc) from exc
    except Stale as exc:
        raise PreconditionFailedException(detail="the resource changed meanwhile") from exc
    response = await _render(request, kind, Stored(doc, version), ctx)
    response.headers.update(headers)
    return response


async def _replace(request: Request, principal: Principal, endpoint: str, rid: str) -> Response:
    kind = _kind(request, endpoint)
    _response_params(request, kind)
    body = _resource_body(await _json_body(request))
    before = await _load(kind, rid)
    _check_if_match(request, before)
    replacement = kind.model.model_validate(
        body, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST, scim_policy=POLICY
    )
    original = lifecycle.from_doc(kind, before.doc)
    replacement.replace(original)
    lifecycle.keep_read_only(original, replacement)
    return await _write(
        request, principal, kind, before, replacement, Context.RESOURCE_REPLACEMENT_RESPONSE
    )


async def _patch(request: Request, principal: Principal, endpoint: str, rid: str) -> Response:
    kind = _kind(request, endpoint)
    _response_params(request, kind)
    body = await _json_body(request)
    before = await _load(kind, rid)
    _check_if_match(request, before)
    patch = PatchOp[kind.model].model_validate(  # type: ignore[name-defined]
        body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY
    )
    resource = lifecycle.from_doc(kind, before.doc)
    patch.patch(resource, scim_policy=POLICY)
    # Revalidate what the operations built, as a creation would.
    resource = kind.model.model_validate(resource.model_dump(scim_ctx=None, by_alias=True))
    return await _write(request, principal, kind, before, resource, Context.RESOURCE_PATCH_RESPONSE)


async def _delete(request: Request, principal: Principal, endpoint: str, rid: str) -> Response:
    kind = _kind(request, endpoint)
    before = await _load(kind, rid)
    _check_if_match(request, before)
    headers = await lifecycle.on_delete(request, principal, kind, before)
    try:
        await kind.store.delete(before)
    except Stale as exc:
        raise PreconditionFailedException(detail="the resource changed meanwhile") from exc
    await lifecycle.forget_member(kind, before.id)
    return Response(status_code=204, headers=headers)


async def _get(request: Request, endpoint: str, rid: str) -> Response:
    kind = _kind(request, endpoint)
    return await _render(request, kind, await _load(kind, rid), Context.RESOURCE_QUERY_RESPONSE)


async def _list(request: Request, kinds: list[Kind], params: dict[str, Any]) -> Response:
    model: Any = kinds[0].model if len(kinds) == 1 else ScimUser | ScimGroup
    params.setdefault("count", MAX_RESULTS)
    count = params.get("count")
    if isinstance(count, int) and not isinstance(count, bool):
        params["count"] = max(0, min(count, MAX_RESULTS))
    req = SearchRequest[model].model_validate(params)  # type: ignore[valid-type]
    total, page = await search(kinds, req, _base(request))
    response = ListResponse[model](  # type: ignore[valid-type]
        total_results=total,
        start_index=req.start_index or 1,
        items_per_page=len(page),
        resources=page,
    )
    return _ok(
        response.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=req)
    )


def _get_params(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


async def _search_body(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or str(SearchRequest.__schema__) not in schemas:
        raise InvalidSyntaxException(
            detail=f"the body must carry the schema {SearchRequest.__schema__}"
        )
    return body


def _routes(endpoint: str, body: dict[str, Any]) -> None:
    """The same six routes for Users and Groups."""

    @router.post(
        f"/{endpoint}", status_code=201, openapi_extra=body_doc(body), name=f"create_{endpoint}"
    )
    async def create(request: Request, principal: Scim) -> Response:
        return await _create(request, principal, endpoint)

    @router.get(f"/{endpoint}/{{rid}}", name=f"get_{endpoint}")
    async def get(
        rid: str,
        request: Request,
        _p: Scim,
        attributes: Attrs = None,
        excludedAttributes: Attrs = None,
    ) -> Response:
        return await _get(request, endpoint, rid)

    @router.get(f"/{endpoint}", name=f"list_{endpoint}")
    async def listing(
        request: Request,
        _p: Scim,
        filter: Filter = None,
        startIndex: Index = 1,
        count: Index = 100,
        attributes: Attrs = None,
        excludedAttributes: Attrs = None,
    ) -> Response:
        params = _get_params(
            filter=filter,
            startIndex=startIndex,
            count=count,
            attributes=attributes,
            excludedAttributes=excludedAttributes,
        )
        return await _list(request, [_kind(request, endpoint)], params)

    @router.post(
        f"/{endpoint}/.search", openapi_extra=body_doc(SEARCH_BODY), name=f"search_{endpoint}"
    )
    async def searching(request: Request, _p: Scim) -> Response:
        return await _list(request, [_kind(request, endpoint)], await _search_body(request))

    @router.put(f"/{endpoint}/{{rid}}", openapi_extra=body_doc(body), name=f"replace_{endpoint}")
    async def replace(rid: str, request: Request, principal: Scim) -> Response:
        return await _replace(request, principal, endpoint, rid)

    @router.patch(
        f"/{endpoint}/{{rid}}", openapi_extra=body_doc(PATCH_BODY), name=f"patch_{endpoint}"
    )
    async def patch(rid: str, request: Request, principal: Scim) -> Response:
        return await _patch(request, principal, endpoint, rid)

    @router.delete(f"/{endpoint}/{{rid}}", status_code=204, name=f"delete_{endpoint}")
    async def delete(rid: str, request: Request, principal: Scim) -> Response:
        return await _delete(request, principal, endpoint, rid)


_routes("Users", USER_BODY)
_routes("Groups", GROUP_BODY)


@router.post("/.search", openapi_extra=body_doc(SEARCH_BODY))
async def search_all(request: Request, _p: Scim) -> Response:
    kinds = [_kind(request, "Users"), _kind(request, "Groups")]
    return await _list(request, kinds, await _search_body(request))


# Everything else: SCIM errors, not the API's problem+json --------------------------------

_READ_ONLY_PATHS = ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas")
_COLLECTIONS = ("/Users", "/Groups")


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def not_here(rest: str, request: Request, _p: Scim) -> Response:
    path = "/" + rest
    if request.method != "GET" and path.startswith(_READ_ONLY_PATHS):
        return scim_error(405, f"{request.method} is not allowed on {path[:100]}")
    if path.rstrip("/") in _COLLECTIONS or (
        path.startswith(tuple(c + "/" for c in _COLLECTIONS)) and request.method == "POST"
    ):
        return scim_error(405, f"{request.method} is not allowed on {path[:100]}")
    return scim_error(404, f"no SCIM endpoint {path[:100]}")
