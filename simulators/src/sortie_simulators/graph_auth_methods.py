"""The Graph simulator's authentication methods of a user and its Temporary Access Pass.

https://learn.microsoft.com/graph/api/resources/authenticationmethods-overview: every
method is listed at `GET /users/{id}/authentication/methods` (`@odata.type` tells its
kind) and deleted at its per-type collection, `DELETE /users/{id}/authentication/
{kind}Methods/{id}` (the password method cannot be deleted). A Temporary Access Pass is
created with `POST …/temporaryAccessPassMethods`
(https://learn.microsoft.com/graph/api/authentication-post-temporaryaccesspassmethods):
201 with the pass in clear, the only time it is shown; a user holds one at most.
"""

from __future__ import annotations

import secrets
import string
from typing import TYPE_CHECKING, Any

from .common import iso_s, utc_now
from .graph_model import GRAPH_METADATA, Reply, bad_request, graph_error, not_found

if TYPE_CHECKING:
    from .graph import GraphSimulator
    from .graph_leaver import TenantState

METHOD_COLLECTIONS = (
    "fido2Methods", "microsoftAuthenticatorMethods", "phoneMethods", "emailMethods",
    "softwareOathMethods", "windowsHelloForBusinessMethods", "temporaryAccessPassMethods",
    "passwordMethods",
)  # fmt: skip
TAP = "temporaryAccessPassMethods"
# authentication-list-methods / *-delete: UserAuthenticationMethod.Read(Write).All;
# the TAP: UserAuthMethod-TAP.ReadWrite.All (or UserAuthenticationMethod.ReadWrite.All).
METHODS_READ = ("UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All")
METHODS_WRITE = ("UserAuthenticationMethod.ReadWrite.All",)
TAP_WRITE = ("UserAuthMethod-TAP.ReadWrite.All", "UserAuthenticationMethod.ReadWrite.All")


def method_type(collection: str) -> str:
    """`fido2Methods` -> `#microsoft.graph.fido2AuthenticationMethod`."""
    return f"#microsoft.graph.{collection.removesuffix('Methods')}AuthenticationMethod"


def collection(items: list[dict[str, Any]], context: str) -> Reply:
    return Reply(200, {"@odata.context": f"{GRAPH_METADATA}#{context}", "value": items})


def _public(method: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in method.items() if k != "temporaryAccessPass"}

    # -- authentication methods and TAP ---------------------------------------------------


def auth_methods(
    tenant: TenantState,
    sim: GraphSimulator,
    method: str,
    who: tuple[Any, str],
    rest: list[str],
    body: Any,
    app: str,
) -> Reply:
    user, path_key = who
    key = user.id if user else ""
    if rest == ["methods"] and method == "GET":
        return tenant.guard(sim, app, METHODS_READ, False, user, path_key) or collection(
            [
                {k: v for k, v in m.items() if k != "temporaryAccessPass"}
                for m in tenant.methods.get(key, [])
            ],
            f"users('{key}')/authentication/methods",
        )
    if not rest or rest[0] not in METHOD_COLLECTIONS:
        return bad_request("Resource not found for the segment 'authentication'.", "BadRequest")
    kind = method_type(rest[0])
    tap = rest[0] == TAP
    write = method != "GET"
    needs = (TAP_WRITE if tap else METHODS_WRITE) if write else METHODS_READ
    denied = tenant.guard(sim, app, needs, write, user, path_key)
    if denied is not None:
        return denied
    held = tenant.methods.setdefault(key, [])
    if method == "GET" and len(rest) == 1:
        found = [
            {k: v for k, v in m.items() if k != "temporaryAccessPass"}
            for m in held
            if m["@odata.type"] == kind
        ]
        return collection(found, f"users('{key}')/authentication/{rest[0]}")
    if method == "POST" and tap and len(rest) == 1:
        return _issue_pass(tenant, key, body)
    if method == "DELETE" and len(rest) == 2:
        if rest[0] == "passwordMethods":
            return bad_request("The password method cannot be deleted.")
        target = next((m for m in held if m["id"] == rest[1] and m["@odata.type"] == kind), None)
        if target is None:
            return not_found(rest[1])
        held.remove(target)
        return Reply(204)
    return graph_error(405, "Request_BadRequest", f"Method {method} is not allowed here.")


def _issue_pass(tenant: TenantState, user: str, body: Any) -> Reply:
    """authentication-post-temporaryaccesspassmethods: one TAP per user (a new one
    replaces the old); 201 with the pass in clear, the only time it is shown."""
    body = body if isinstance(body, dict) else {}
    lifetime = body.get("lifetimeInMinutes", 60)
    if not isinstance(lifetime, int) or not 10 <= lifetime <= 43200:
        return bad_request("lifetimeInMinutes must be between 10 and 43200.")
    kind = method_type(TAP)
    tenant.methods[user] = [m for m in tenant.methods.get(user, []) if m["@odata.type"] != kind]
    alphabet = string.ascii_letters + string.digits + "#$%&*+-=?@^_"
    value = "".join(secrets.choice(alphabet) for _ in range(16))
    tenant.issued_passes.append(value)
    now = iso_s(utc_now())
    method = tenant.add_method(
        user, "temporaryAccessPassMethods",
        createdDateTime=now, startDateTime=now, lifetimeInMinutes=lifetime,
        isUsableOnce=bool(body.get("isUsableOnce", False)), isUsable=True,
        methodUsabilityReason="EnabledByPolicy",
    )  # fmt: skip
    return Reply(201, {**method, "temporaryAccessPass": value})
