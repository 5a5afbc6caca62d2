"""SCIM Users and Groups (RFC 7644 section 3): create, read, list and search, replace,
patch and delete, the same six routes for each; what a change of a user's `active` starts is
in lifecycle.py."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query, Request, Response
from scim2_models import (
    Context,
    InvalidSyntaxException,
    ListResponse,
    Meta,
    PatchOp,
    PreconditionFailedException,
    SearchRequest,
)

from sortie_orchestrator.adapters.scim_store import Stale, Stored, Taken
from sortie_orchestrator.http.auth import Principal
from sortie_orchestrator.http.scim import lifecycle
from sortie_orchestrator.http.scim.lifecycle import Kind
from sortie_orchestrator.http.scim.model import MAX_RESULTS, POLICY, ScimGroup, ScimUser
from sortie_orchestrator.http.scim.protocol import (
    Scim,
    base_url,
    check_if_match,
    json_body,
    kind_of,
    load,
    ok,
    render,
    resource_body,
    response_params,
    scim_router,
    utcnow,
)
from sortie_orchestrator.http.scim.schema import (
    GROUP_BODY,
    PATCH_BODY,
    SEARCH_BODY,
    USER_BODY,
    body_doc,
)
from sortie_orchestrator.http.scim.search import search

router = scim_router()


Attrs = Annotated[str | None, Query(max_length=1000)]
Filter = Annotated[str | None, Query(max_length=600)]
Index = Annotated[int, Query(ge=-(2**31), le=2**31)]


async def _create(request: Request, principal: Principal, endpoint: str) -> Response:
    kind = kind_of(request, endpoint)
    response_params(request, kind)
    body = resource_body(await json_body(request))
    resource = kind.model.model_validate(
        body, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=POLICY
    )
    now = utcnow()
    resource.id = str(uuid.uuid4())
    resource.meta = Meta(resource_type=kind.endpoint[:-1], created=now, last_modified=now)
    await lifecycle.check_members(kind, resource)
    doc = lifecycle.to_doc(resource)
    try:
        version = await kind.store.put(doc, None, int(now.timestamp() * 1e6))
    except Taken as exc:
        raise lifecycle.taken(kind, doc) from exc
    return await render(
        request, kind, Stored(doc, version), Context.RESOURCE_CREATION_RESPONSE, 201
    )


async def _write(
    request: Request, principal: Principal, kind: Kind, before: Stored, resource: Any, ctx: Context
) -> Response:
    resource.id = before.id
    resource.meta = Meta.model_validate({**before.doc["meta"], "lastModified": utcnow()})
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
    response = await render(request, kind, Stored(doc, version), ctx)
    response.headers.update(headers)
    return response


async def _replace(request: Request, principal: Principal, endpoint: str, rid: str) -> Response:
    kind = kind_of(request, endpoint)
    response_params(request, kind)
    body = resource_body(await json_body(request))
    before = await load(kind, rid)
    check_if_match(request, before)
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
    kind = kind_of(request, endpoint)
    response_params(request, kind)
    body = await json_body(request)
    before = await load(kind, rid)
    check_if_match(request, before)
    patch = PatchOp[kind.model].model_validate(  # type: ignore[name-defined]
        body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=POLICY
    )
    resource = lifecycle.from_doc(kind, before.doc)
    patch.patch(resource, scim_policy=POLICY)
    # Revalidate what the operations built, as a creation would.
    resource = kind.model.model_validate(resource.model_dump(scim_ctx=None, by_alias=True))
    return await _write(request, principal, kind, before, resource, Context.RESOURCE_PATCH_RESPONSE)


async def _delete(request: Request, principal: Principal, endpoint: str, rid: str) -> Response:
    kind = kind_of(request, endpoint)
    before = await load(kind, rid)
    check_if_match(request, before)
    headers = await lifecycle.on_delete(request, principal, kind, before)
    try:
        await kind.store.delete(before)
    except Stale as exc:
        raise PreconditionFailedException(detail="the resource changed meanwhile") from exc
    await lifecycle.forget_member(kind, before.id)
    return Response(status_code=204, headers=headers)


async def _get(request: Request, endpoint: str, rid: str) -> Response:
    kind = kind_of(request, endpoint)
    return await render(request, kind, await load(kind, rid), Context.RESOURCE_QUERY_RESPONSE)


async def _list(request: Request, kinds: list[Kind], params: dict[str, Any]) -> Response:
    model: Any = kinds[0].model if len(kinds) == 1 else ScimUser | ScimGroup
    params.setdefault("count", MAX_RESULTS)
    count = params.get("count")
    if isinstance(count, int) and not isinstance(count, bool):
        params["count"] = max(0, min(count, MAX_RESULTS))
    req = SearchRequest[model].model_validate(params)  # type: ignore[valid-type]
    total, page = await search(kinds, req, base_url(request))
    response = ListResponse[model](  # type: ignore[valid-type]
        total_results=total,
        start_index=req.start_index or 1,
        items_per_page=len(page),
        resources=page,
    )
    return ok(
        response.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=req)
    )


def _get_params(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


async def _search_body(request: Request) -> dict[str, Any]:
    body = await json_body(request)
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
        return await _list(request, [kind_of(request, endpoint)], params)

    @router.post(
        f"/{endpoint}/.search", openapi_extra=body_doc(SEARCH_BODY), name=f"search_{endpoint}"
    )
    async def searching(request: Request, _p: Scim) -> Response:
        return await _list(request, [kind_of(request, endpoint)], await _search_body(request))

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
    kinds = [kind_of(request, "Users"), kind_of(request, "Groups")]
    return await _list(request, kinds, await _search_body(request))
