"""SCIM's wire under `/scim/v2` (RFC 7644): its media type, its errors (section 3.12) for
whatever raised them, ETags and If-Match, JSON bodies, and a resource's rendering."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    InvalidSyntaxException,
    NotFoundException,
    PreconditionFailedException,
    SCIMException,
    SearchRequest,
)

from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.scim_store import Stored
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.scim import lifecycle
from sortie_orchestrator.http.scim.lifecycle import Kind
from sortie_orchestrator.http.scim.model import PROVIDER, ScimGroup, ScimUser

SCIM_JSON = "application/scim+json"


def scim_error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = Error(status=status, detail=detail, scim_type=scim_type).model_dump()
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


def from_validation(exc: ValidationError) -> JSONResponse:
    errors = exc.errors()
    error = Error.from_validation_error(errors[0]) if errors else Error(status=400)
    return scim_error(error.status or 400, error.detail or "invalid", error.scim_type)


class ScimRoute(APIRoute):
    """Errors in SCIM's own format (RFC 7644 section 3.12), whatever raised them; every
    call runs under Sortie's SCIM provider and its tolerances (model.POLICY)."""

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
                return from_validation(exc)
            except Problem as exc:
                return scim_error(exc.status, exc.detail, headers=exc.headers)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return scim_error(400, f"{where}: {first.get('msg', 'invalid')}", "invalidValue")

        return route


def scim_router() -> APIRouter:
    """A router whose every route answers errors the SCIM way."""
    return APIRouter(route_class=ScimRoute)


Scim = Annotated[Principal, Depends(require("scim"))]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/scim/v2"


def kind_of(request: Request, endpoint: str) -> Kind:
    scim = _deps(request).scim
    if endpoint == "Users":
        return Kind(ScimUser, scim.users, "Users", scim.groups)
    return Kind(ScimGroup, scim.groups, "Groups", scim.users)


def _deps(request: Request) -> handlers.Deps:
    deps: handlers.Deps = request.app.state.deps
    return deps


def ok(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, media_type=SCIM_JSON, headers=headers)


async def json_body(request: Request) -> dict[str, Any]:
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


def resource_body(body: dict[str, Any]) -> dict[str, Any]:
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def etag(version: int) -> str:
    return f'W/"{version}"'


def check_if_match(request: Request, stored: Stored) -> None:
    wanted = request.headers.get("if-match")
    if not wanted or wanted.strip() == "*":
        return
    if etag(stored.version) not in [t.strip() for t in wanted.split(",")]:
        raise PreconditionFailedException(
            detail=f"the resource is at version {etag(stored.version)}; read it again"
        )


async def load(kind: Kind, rid: str) -> Stored:
    found = await kind.store.get(rid)
    if found is None:
        raise NotFoundException(detail=f"no {kind.endpoint[:-1].lower()} {rid[:64]!r}")
    return found


def query_params(request: Request) -> dict[str, str]:
    keep = ("attributes", "excludedAttributes")
    return {k: v for k, v in request.query_params.items() if k in keep}


def response_params(request: Request, kind: Kind) -> Any:
    """`attributes` / `excludedAttributes`; a write checks them before it changes anything."""
    return SearchRequest[kind.model].model_validate(query_params(request))  # type: ignore[name-defined]


async def render(
    request: Request, kind: Kind, stored: Stored, ctx: Context, status: int = 200
) -> Response:
    resource = await lifecycle.hydrate(kind, stored, base_url(request))
    params = response_params(request, kind)
    body = resource.model_dump(scim_ctx=ctx, response_parameters=params)
    headers = {"ETag": etag(stored.version)}
    if status == 201:
        headers["Location"] = f"{base_url(request)}/{kind.endpoint}/{stored.id}"
    return ok(body, status, headers)
