"""The Graph HTTP adapter against a small in-test Graph, and one contract suite run
against both that adapter and the fake, so the fake cannot drift."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sortie_core.errors import (
    NotFoundError,
    PermanentError,
    SortieError,
    ThrottledError,
    TransientError,
)
from sortie_core.events import Outcome
from sortie_core.steps import RetryPolicy, StepSkipped, run_step
from sortie_m365.adapters import M365Directory
from sortie_m365.adapters.fake import FakeDirectory
from sortie_m365.adapters.graph_http import GraphHttpDirectory, parse_retry_after
from tests.redis_server import free_port
from tests.workers.stub_http import Reply, Seen, StubHttp

TOKEN = "graph-test-token"
KNOWN = "alice@example.org"


def graph_stub(users: set[str]) -> StubHttp:
    """Enough of Graph: known users answer, unknown ones get Graph's 404 body."""

    def default(seen: Seen) -> Reply:
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "x"}})
        parts = seen.path.split("/")  # '', 'v1.0', 'users', '<id>', ...
        if len(parts) < 4 or parts[1:3] != ["v1.0", "users"]:
            return Reply(400, {"error": {"code": "BadRequest", "message": "no route"}})
        if parts[3] not in users:
            return Reply(
                404,
                {"error": {"code": "Request_ResourceNotFound", "message": "Resource not found"}},
            )
        if seen.method == "POST" and parts[4:] == ["revokeSignInSessions"]:
            return Reply(200, {"value": True})
        if seen.method == "PATCH" and len(parts) == 4:
            return Reply(204)
        return Reply(405, {"error": {"code": "Request_BadRequest", "message": "method"}})

    return StubHttp(default)


@pytest.fixture
def graph(serve: Callable[[Any], str]) -> tuple[StubHttp, str]:
    stub = graph_stub({KNOWN})
    return stub, serve(stub)


@pytest.fixture
async def adapter(graph: tuple[StubHttp, str]) -> AsyncIterator[GraphHttpDirectory]:
    directory = GraphHttpDirectory(graph[1], SecretStr(TOKEN), timeout_s=2)
    yield directory
    await directory.aclose()


# -- the contract, for the real adapter and the fake ------------------------------------
@pytest.fixture(params=["graph_http", "fake"])
async def any_directory(
    request: pytest.FixtureRequest, serve: Callable[[Any], str]
) -> AsyncIterator[M365Directory]:
    directory: M365Directory
    if request.param == "fake":
        directory = FakeDirectory.with_users([KNOWN])
    else:
        directory = GraphHttpDirectory(serve(graph_stub({KNOWN})), SecretStr(TOKEN))
    yield directory
    await directory.aclose()


async def test_contract_known_user_calls_succeed(any_directory: M365Directory) -> None:
    await any_directory.revoke_sessions(KNOWN)
    await any_directory.block_sign_in(KNOWN)
    await any_directory.reset_password(KNOWN, SecretStr("x" * 40))


@pytest.mark.parametrize("call", ["revoke_sessions", "block_sign_in", "reset_password"])
async def test_contract_unknown_user_is_not_found(any_directory: M365Directory, call: str) -> None:
    method = getattr(any_directory, call)
    args = (
        ("nobody@example.org", SecretStr("y" * 40))
        if call == "reset_password"
        else ("nobody@example.org",)
    )
    with pytest.raises(NotFoundError):
        await method(*args)


async def test_contract_mail_protocols_not_configured(any_directory: M365Directory) -> None:
    with pytest.raises(StepSkipped, match="mailbox protocols adapter not configured"):
        await any_directory.disable_mail_protocols(KNOWN)


# -- what goes on the wire ---------------------------------------------------------------
async def test_revoke_posts_to_revoke_sign_in_sessions_with_bearer(
    graph: tuple[StubHttp, str], adapter: GraphHttpDirectory
) -> None:
    await adapter.revoke_sessions(KNOWN)
    [seen] = graph[0].seen
    assert seen.method == "POST"
    assert seen.path == f"/v1.0/users/{KNOWN}/revokeSignInSessions"
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"


async def test_block_and_reset_patch_the_user(
    graph: tuple[StubHttp, str], adapter: GraphHttpDirectory
) -> None:
    await adapter.block_sign_in(KNOWN)
    await adapter.reset_password(KNOWN, SecretStr("S3cret!" * 6))
    block, reset = graph[0].seen
    assert (block.method, block.path) == ("PATCH", f"/v1.0/users/{KNOWN}")
    assert block.json() == {"accountEnabled": False}
    assert reset.json() == {
        "passwordProfile": {"password": "S3cret!" * 6, "forceChangePasswordNextSignIn": True}
    }


async def test_user_id_is_one_escaped_path_segment(
    graph: tuple[StubHttp, str], adapter: GraphHttpDirectory
) -> None:
    with pytest.raises(NotFoundError):
        await adapter.revoke_sessions("eve/../../admin?x=1#y")
    [seen] = graph[0].seen
    assert seen.raw_path.startswith("/v1.0/users/eve%2F..%2F..%2Fadmin%3Fx%3D1%23y/")


async def test_no_token_means_no_authorization_header(serve: Callable[[Any], str]) -> None:
    stub = graph_stub({KNOWN})
    directory = GraphHttpDirectory(serve(stub), SecretStr(""))
    try:
        with pytest.raises(PermanentError) as info:
            await directory.revoke_sessions(KNOWN)
    finally:
        await directory.aclose()
    assert "authorization" not in stub.seen[0].headers
    assert info.value.code == "graph_unauthorized"
    assert "InvalidAuthenticationToken" in info.value.message


# -- status -> error mapping, on the wire -------------------------------------------------
@pytest.mark.parametrize(
    ("status", "headers", "cls", "code", "retry_after"),
    [
        (429, {"Retry-After": "7"}, ThrottledError, "graph_throttled", 7.0),
        (429, {}, ThrottledError, "graph_throttled", None),
        (503, {"Retry-After": "3"}, ThrottledError, "graph_unavailable", 3.0),
        (503, {}, TransientError, "graph_unavailable", None),
        (504, {"Retry-After": "2"}, ThrottledError, "graph_unavailable", 2.0),
        (500, {}, TransientError, "graph_server_error", None),
        (502, {}, TransientError, "graph_server_error", None),
        (400, {}, PermanentError, "graph_bad_request", None),
        (401, {}, PermanentError, "graph_unauthorized", None),
        (403, {}, PermanentError, "graph_forbidden", None),
        (404, {}, NotFoundError, "not_found", None),
        (409, {}, PermanentError, "graph_http_409", None),
    ],
)
async def test_status_is_translated(
    graph: tuple[StubHttp, str],
    adapter: GraphHttpDirectory,
    status: int,
    headers: dict[str, str],
    cls: type[SortieError],
    code: str,
    retry_after: float | None,
) -> None:
    body = {"error": {"code": "Authorization_RequestDenied", "message": "free text"}}
    graph[0].script(
        "POST", f"/v1.0/users/{KNOWN}/revokeSignInSessions", Reply(status, body, headers)
    )
    with pytest.raises(SortieError) as info:
        await adapter.revoke_sessions(KNOWN)
    assert type(info.value) is cls
    assert info.value.code == code
    if isinstance(info.value, TransientError):
        assert info.value.retry_after == retry_after
    else:
        assert not isinstance(info.value, TransientError)
    assert "Authorization_RequestDenied" in info.value.message
    assert "free text" not in info.value.message


async def test_error_message_never_echoes_the_password(
    graph: tuple[StubHttp, str], adapter: GraphHttpDirectory
) -> None:
    password = "Tr0ub4dor&3-correct-horse-battery-staple"
    graph[0].script(
        "PATCH",
        f"/v1.0/users/{KNOWN}",
        Reply(400, {"error": {"code": "Request_BadRequest", "message": f"weak: {password}"}}),
    )
    with pytest.raises(PermanentError) as info:
        await adapter.reset_password(KNOWN, SecretStr(password))
    assert info.value.code == "graph_bad_request"
    assert "Request_BadRequest" in str(info.value)
    assert password not in str(info.value)


async def test_odd_error_code_is_not_copied(
    graph: tuple[StubHttp, str], adapter: GraphHttpDirectory
) -> None:
    graph[0].script(
        "POST",
        f"/v1.0/users/{KNOWN}/revokeSignInSessions",
        Reply(403, {"error": {"code": "<script>secret token abc</script>"}}),
    )
    with pytest.raises(PermanentError) as info:
        await adapter.revoke_sessions(KNOWN)
    assert "secret" not in info.value.message
    assert "no error code" in info.value.message


async def test_unreachable_graph_is_transient() -> None:
    directory = GraphHttpDirectory(f"http://127.0.0.1:{free_port()}", SecretStr(TOKEN))
    try:
        with pytest.raises(TransientError) as info:
            await directory.revoke_sessions(KNOWN)
    finally:
        await directory.aclose()
    assert info.value.code == "graph_unreachable"


async def test_slow_graph_times_out_as_transient(graph: tuple[StubHttp, str]) -> None:
    graph[0].script(
        "POST", f"/v1.0/users/{KNOWN}/revokeSignInSessions", Reply(200, {"value": True}, delay_s=2)
    )
    directory = GraphHttpDirectory(graph[1], SecretStr(TOKEN), timeout_s=0.2)
    try:
        with pytest.raises(TransientError) as info:
            await directory.revoke_sessions(KNOWN)
    finally:
        await directory.aclose()
    assert info.value.code == "graph_timeout"


async def test_run_step_honours_retry_after(
    graph: tuple[StubHttp, str], adapter: GraphHttpDirectory
) -> None:
    path = f"/v1.0/users/{KNOWN}/revokeSignInSessions"
    graph[0].script(
        "POST", path, Reply(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "1"})
    )

    async def body() -> None:
        await adapter.revoke_sessions(KNOWN)

    # The back-off alone would wait at most 10 ms: only Retry-After explains a second.
    policy = RetryPolicy(max_attempts=3, base_s=0.005, max_s=0.01)
    started = time.monotonic()
    step = await run_step("m365", "revoke_sessions", body, policy)
    elapsed = time.monotonic() - started
    assert step.outcome is Outcome.SUCCEEDED
    assert step.attempts == 2
    assert elapsed >= 0.95
    first, second = graph[0].calls("POST", path)
    assert first.path == second.path


# -- Retry-After parsing, and the same mapping through MockTransport --------------------
def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    value = parse_retry_after(later)
    assert value is not None and 25 <= value <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0


async def test_http_date_retry_after_reaches_the_error() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": when})

    directory = GraphHttpDirectory(
        "http://graph.test", SecretStr(TOKEN), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ThrottledError) as info:
        await directory.block_sign_in(KNOWN)
    await directory.aclose()
    assert info.value.retry_after is not None and 15 <= info.value.retry_after <= 21
    assert "no error code" in info.value.message


async def test_transport_error_mapping_with_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    directory = GraphHttpDirectory(
        "http://graph.test", SecretStr(TOKEN), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(TransientError) as info:
        await directory.revoke_sessions(KNOWN)
    await directory.aclose()
    assert info.value.code == "graph_timeout"
