"""`M365Directory` on msgraph-sdk (https://github.com/microsoftgraph/msgraph-sdk-python).

Calls: `GET /users/{id}` (lookups and read-backs, `$select`), `GET /users?$filter=… eq '…'`
(lookups by mail, employeeId, onPremisesSamAccountName: advanced queries carry
`ConsistencyLevel: eventual` and `$count=true`), `PATCH /users/{id}` (`accountEnabled`,
`passwordProfile`), `POST /users/{id}/revokeSignInSessions`. Throttling is avoided up
front by a per-tenant rate limiter shared through Redis, and calls in flight are bounded.

The SDK's request adapter sends every request, on an httpx client without kiota's
middleware (graph_http.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from pydantic import SecretStr

from sortie_core.errors import NotFoundError, PermanentError, TransientError
from sortie_core.events import M365Action, SkipReason
from sortie_core.http import transport_error
from sortie_core.steps import StepSkipped

from . import FILTER_PROPERTIES, FILTER_TOP, READ_BACK, M365User
from .apps import as_app
from .graph_batch import GraphBatcher, ReadBacks
from .graph_errors import error_for
from .graph_http import Redirected
from .graph_urls import USER_TYPE, GraphCall, prepared, user_url, wire

T = TypeVar("T")
_FIELDS = ["id", "userPrincipalName", "userType", "mail"]
_ERRORS: dict[str, Any] = {"XXX": ODataError}

# Application permissions per call (https://learn.microsoft.com/graph/permissions-reference).
PERMISSION_READ = "User.Read.All"
PERMISSION_REVOKE = "User.RevokeSessions.All"
PERMISSION_ENABLE = "User.EnableDisableAccount.All"
PERMISSION_PASSWORD = "User-PasswordProfile.ReadWrite.All"


class WriteLimiter(Protocol):
    """Returns when a write may go: with the index of the app registration to send it as
    (None: the only one)."""

    async def acquire(self, cost: float = 1.0) -> int | None: ...


class MailboxProtocols(Protocol):
    async def disable(self, upn: str) -> None: ...

    async def invoke(self, cmdlet: str, parameters: dict[str, Any]) -> Any: ...

    async def read(self, upn: str) -> dict[str, bool]: ...

    async def aclose(self) -> None: ...


class GraphSdkDirectory:
    def __init__(
        self,
        client: GraphServiceClient,
        *,
        credential: AsyncTokenCredential | list[AsyncTokenCredential] | None = None,
        limiter: WriteLimiter | None = None,
        concurrency: int = 32,
        mailbox: MailboxProtocols | None = None,
        batch_linger_s: float | None = None,
    ) -> None:
        """`batch_linger_s`: requests of concurrent users wait that long to share a
        `$batch` (0: only those already waiting; None: every request is its own)."""
        self._client = client
        self._credentials = credential if isinstance(credential, list) else [credential]
        # Reads go as each app registration in turn.
        self._turns = itertools.cycle(range(len(self._credentials) if credential else 1))
        self._limiter = limiter
        self._slots = asyncio.Semaphore(concurrency)
        self._mailbox = mailbox
        self.batcher: GraphBatcher | None = None
        self._read_backs = ReadBacks()
        if batch_linger_s is not None:
            self.batcher = GraphBatcher(
                client.request_adapter.base_url, self._send_batch, linger_s=batch_linger_s
            )

    async def aclose(self) -> None:
        http = getattr(self._client.request_adapter, "_http_client", None)
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()  # and its transport's aiohttp session
        if self._mailbox is not None:
            await self._mailbox.aclose()
        close = getattr(self._limiter, "aclose", None)
        if close is not None:
            await close()
        for credential in self._credentials:
            if credential is not None:
                await credential.close()

    async def _call(
        self,
        what: str,
        permission: str,
        call: Callable[[], Awaitable[T]],
        *,
        write: bool = True,
        app: int | None = None,
    ) -> T:
        if write and self._limiter is not None:
            app = await self._limiter.acquire()
        try:
            async with self._slots:
                with as_app(next(self._turns) if app is None else app):
                    return await call()
        except ODataError as err:
            code = err.error.code if err.error is not None else None
            raise error_for(
                err.response_status_code or 0,
                code,
                err.response_headers,
                what,
                permission=permission,
            ) from err
        except APIError as err:
            raise error_for(
                err.response_status_code or 0,
                None,
                err.response_headers,
                what,
                permission=permission,
            ) from err
        except Redirected as err:
            raise error_for(err.status, None, err.headers, what, permission=permission) from err
        except httpx.TransportError as err:
            raise transport_error(err, f"Graph ({what})", "graph") from err

    async def _send_batch(
        self, info: RequestInformation, what: str, app: int | None
    ) -> bytes | None:
        """A `$batch` POST (its writes were counted item by item), as the app given."""
        return await self._send_raw(info, what, app=app)

    async def _send_raw(
        self,
        info: RequestInformation,
        what: str,
        permission: str = PERMISSION_READ,
        *,
        write: bool = False,
        app: int | None = None,
    ) -> bytes | None:
        adapter = self._client.request_adapter
        prepared(info, adapter.base_url)
        raw: bytes | None = await self._call(
            what,
            permission,
            lambda: adapter.send_primitive_async(info, "bytes", _ERRORS),  # type: ignore[func-returns-value]
            write=write,
            app=app,
        )
        return raw

    def _direct(
        self, call: GraphCall, info: Callable[[], RequestInformation]
    ) -> RequestInformation:
        """The SDK's request for `call`, its URL set as built (not expanded again)."""
        request = info()
        request.url = self._client.request_adapter.base_url + wire(call.url)
        return request

    async def _write(
        self,
        user: str,
        what: str,
        permission: str,
        call: GraphCall,
        info: Callable[[], RequestInformation],
        read_back: str | None = None,
    ) -> None:
        """`call` in a `$batch` if others wait, else alone as the SDK's `info()` (the body
        of each is only made then) or, with the property its step reads back, with that
        read (graph_batch.py), kept for `read_user`."""
        if self.batcher is None:
            await self._send_raw(self._direct(call, info), what, permission, write=True)
            return
        app = await self._limiter.acquire() if self._limiter is not None else None

        async def alone() -> None:
            await self._send_raw(self._direct(call, info), what, permission, app=app)

        if read_back is None:
            await self.batcher.submit(user, call, what, permission, alone, app=app)
            return
        fields = (read_back,)
        call = replace(call, then=GraphCall(Method.GET, user_url(user, select=fields)))

        def read(body: Any) -> None:
            self._read_backs.put(user, fields, body)

        await self.batcher.submit(user, call, what, permission, alone, app=app, read=read)

    @property
    def client(self) -> GraphServiceClient:
        return self._client

    @property
    def mailbox(self) -> MailboxProtocols | None:
        return self._mailbox

    async def send(
        self, info: RequestInformation, what: str, permission: str, *, write: bool
    ) -> Any:
        """One request built by the SDK's request builders, its answer read as JSON (None
        when empty); writes take from the tenant's budget (graph_leaver.py)."""
        return await self._get_json(info, what, permission, write=write)

    def _user(self, user: str) -> UserItemRequestBuilder:
        if not user:
            raise PermanentError("empty user id", code="invalid_user")
        return self._client.users.by_user_id(user)

    async def _get_json(
        self,
        info: RequestInformation,
        what: str,
        permission: str = PERMISSION_READ,
        *,
        write: bool = False,
    ) -> Any:
        """GET through the SDK's pipeline, read as plain JSON: the SDK's `User` model costs
        tens of milliseconds of CPU per parse, which caps a worker at a few dozen users/s."""
        raw = await self._send_raw(info, what, permission, write=write)
        try:
            return json.loads(raw or b"null")
        except ValueError as err:
            raise TransientError(
                f"Graph sent unreadable JSON for {what}", code="graph_bad_json"
            ) from err

    async def _get_user_json(self, key: str, fields: Sequence[str], what: str) -> Any:
        item = self._user(key)
        call = GraphCall(Method.GET, user_url(key, select=fields))

        def info() -> RequestInformation:
            query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                select=list(fields)
            )
            return item.to_get_request_information(RequestConfiguration(query_parameters=query))

        if self.batcher is None:
            return await self._get_json(self._direct(call, info), what)
        return await self.batcher.submit(
            key, call, what, PERMISSION_READ, lambda: self._get_json(self._direct(call, info), what)
        )

    async def get_user(self, key: str) -> M365User:
        found = _user_from(await self._get_user_json(key, _FIELDS, "the user lookup"))
        if found is None:
            raise NotFoundError("user not found in Microsoft 365")
        return found

    async def find_users(self, prop: str, value: str) -> list[M365User]:
        if prop not in FILTER_PROPERTIES:
            raise PermanentError(f"cannot look users up by {prop!r}", code="invalid_lookup")
        advanced = FILTER_PROPERTIES[prop]
        # OData string literals double their single quotes.
        literal = value.replace("'", "''")
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            filter=f"{prop} eq '{literal}'",
            select=_FIELDS,
            top=FILTER_TOP,
            count=True if advanced else None,
        )
        config: Any = RequestConfiguration(query_parameters=query)
        if advanced:
            config.headers.add("ConsistencyLevel", "eventual")
        info = self._client.users.to_get_request_information(config)
        page = await self._get_json(info, f"the user lookup by {prop}")
        users = page.get("value") if isinstance(page, dict) else None
        if not isinstance(users, list):
            raise TransientError(
                f"Graph sent no user list for the lookup by {prop}", code="graph_bad_json"
            )
        return [u for u in map(_user_from, users) if u is not None]

    async def read_user(self, user: str, fields: Sequence[str]) -> dict[str, Any]:
        found = self._read_backs.take(user, tuple(fields))
        if found is None:
            found = await self._get_user_json(user, fields, "the read-back")
        if not isinstance(found, dict):
            raise TransientError("Graph sent no user for the read-back", code="graph_bad_json")
        # `@odata.context` and other annotations are not properties.
        return {k: v for k, v in found.items() if not k.startswith("@odata.")}

    async def read_mail_protocols(self, user: str) -> dict[str, bool]:
        if self._mailbox is None:
            raise StepSkipped(
                "mailbox protocols adapter not configured",
                SkipReason.DISABLED_BY_CONFIGURATION,
            )
        async with self._slots:
            return await self._mailbox.read(user)

    async def revoke_sessions(self, user: str) -> None:
        item = self._user(user).revoke_sign_in_sessions
        call = GraphCall(Method.POST, user_url(user, "/revokeSignInSessions"))
        await self._write(
            user,
            "revokeSignInSessions",
            PERMISSION_REVOKE,
            call,
            item.to_post_request_information,
            READ_BACK[M365Action.REVOKE_SESSIONS],
        )

    async def block_sign_in(self, user: str) -> None:
        item = self._user(user)
        call = GraphCall(
            Method.PATCH, user_url(user), lambda: {**USER_TYPE, "accountEnabled": False}
        )
        await self._write(
            user,
            "blocking sign-in",
            PERMISSION_ENABLE,
            call,
            lambda: item.to_patch_request_information(User(account_enabled=False)),
            READ_BACK[M365Action.BLOCK_SIGN_IN],
        )

    async def reset_password(self, user: str, password: SecretStr) -> None:
        item = self._user(user)

        # Each body is built at the last moment, dropped with the request.
        def body() -> User:
            profile = PasswordProfile(
                password=password.get_secret_value(), force_change_password_next_sign_in=True
            )
            return User(password_profile=profile)

        def entry() -> dict[str, Any]:
            profile = {
                "forceChangePasswordNextSignIn": True,
                "password": password.get_secret_value(),
            }
            return {**USER_TYPE, "passwordProfile": profile}

        await self._write(
            user,
            "the password reset",
            PERMISSION_PASSWORD,
            GraphCall(Method.PATCH, user_url(user), entry),
            lambda: item.to_patch_request_information(body()),
            READ_BACK[M365Action.RESET_PASSWORD],
        )

    async def disable_mail_protocols(self, user: str) -> None:
        if self._mailbox is None:
            raise StepSkipped(
                "mailbox protocols adapter not configured",
                SkipReason.DISABLED_BY_CONFIGURATION,
            )
        # Exchange Online throttles apart from Graph: only the concurrency bound applies.
        async with self._slots:
            await self._mailbox.disable(user)


def _user_from(found: Any) -> M365User | None:
    if not isinstance(found, dict) or not isinstance(found.get("id"), str):
        return None
    upn = found.get("userPrincipalName")
    return M365User(
        id=found["id"],
        upn=upn if isinstance(upn, str) and upn else found["id"],
        guest=str(found.get("userType") or "").lower() == "guest",
    )
