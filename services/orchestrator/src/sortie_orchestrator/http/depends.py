"""What every API route depends on: the adapters (bootstrap.py builds them), a JSON body
from an authenticated caller, and what an order's route is handed beside its body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response

from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import authenticate
from sortie_orchestrator.http.bodies import IdemKey
from sortie_orchestrator.http.problems import Problem

Route = TypeVar("Route", bound=Callable[..., Any])


async def get_deps(request: Request) -> handlers.Deps:
    # Async: FastAPI runs a sync dependency in its thread pool, once per request.
    deps: handlers.Deps = request.app.state.deps
    return deps


async def require_json(request: Request) -> None:
    # Authenticated first: an anonymous caller learns nothing, not even the media type.
    await authenticate(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise Problem(415, "send the body as application/json", slug="unsupported-media-type")


@dataclass(frozen=True, slots=True)
class Order:
    """An order's exchange: the adapters, the HTTP request and response, and the
    Idempotency-Key that makes a retry a replay."""

    deps: handlers.Deps
    request: Request
    response: Response
    idempotency_key: str | None


async def take_order(
    request: Request,
    response: Response,
    deps: Annotated[handlers.Deps, Depends(get_deps)],
    idempotency_key: IdemKey = None,
) -> Order:
    return Order(deps, request, response, idempotency_key)


OrderDep = Annotated[Order, Depends(take_order)]
DepsDep = Annotated[handlers.Deps, Depends(get_deps)]


def accepts(
    router: APIRouter, path: str, model: type[Any], summary: str
) -> Callable[[Route], Route]:
    """A POST of a JSON order, answered 202 Accepted with `model`."""
    return router.post(
        path,
        status_code=202,
        response_model=model,
        dependencies=[Depends(require_json)],
        summary=summary,
    )
