"""The msgraph-sdk adapter over HTTP against the Graph simulator: every call, every error
class, Retry-After, and no SDK retries behind run_step's back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from sortie_core.errors import NotFoundError, PermanentError, ThrottledError, TransientError
from sortie_core.events import Outcome
from sortie_core.steps import RetryPolicy, StepSkipped, run_step
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory
from sortie_testkit.redis_server import free_port
from tests.m365.conftest import (
    ALICE,
    ALICE_MAIL,
    GUEST,
    GraphSim,
    make_directory,
    make_mailbox,
)
from tests.support.stub_http import Reply, StubHttp

ALICE_ID = "0a11ce00-0000-4000-8000-000000000001"


async def test_get_user_by_upn_and_object_id(directory: GraphSdkDirectory) -> None:
    for key in (ALICE, ALICE_ID, ALICE.upper()):
        user = await directory.get_user(key)
        assert (user.id, user.upn, user.guest) == (ALICE_ID, ALICE, False)


async def test_get_user_reports_guests(directory: GraphSdkDirectory) -> None:
    user = await directory.get_user(GUEST)
    assert user.guest is True and user.upn == GUEST


async def test_get_unknown_user_is_not_found(directory: GraphSdkDirectory) -> None:
    # Real Graph resolves /users/{id} by object id or UPN only, not by mail.
    for key in ("nobody@example.org", "00000000-0000-4000-8000-00000000dead", ALICE_MAIL):
        with pytest.raises(NotFoundError):
            await directory.get_user(key)


async def test_find_users_by_mail_and_employee_id(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    [found] = await directory.find_users("mail", ALICE_MAIL)
    assert found.id == ALICE_ID
    assert await directory.find_users("mail", "o'brien@example.org") == []
    graph_sim.sim.users[ALICE_ID].employee_id = "E42"
    assert [u.id for u in await directory.find_users("employeeId", "e42")] == [ALICE_ID]


async def test_find_users_by_sam_account_name_is_an_advanced_query(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    graph_sim.sim.users[ALICE_ID].on_premises_sam_account_name = "amartin"
    [found] = await directory.find_users("onPremisesSamAccountName", "amartin")
    assert found.upn == ALICE
    # Graph refuses that filter without `ConsistencyLevel: eventual` and `$count=true`:
    # the simulator does too (tests/m365/test_simulator_fidelity.py), so the adapter sent
    # both.
    guest = graph_sim.sim.find(GUEST)
    assert guest is not None
    guest.on_premises_sam_account_name = "amartin"
    assert len(await directory.find_users("onPremisesSamAccountName", "amartin")) == 2
    with pytest.raises(PermanentError):
        await directory.find_users("displayName", "Alice")


async def test_read_user_and_mailbox_read_back(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    fields = ["accountEnabled", "signInSessionsValidFromDateTime", "lastPasswordChangeDateTime"]
    read = await directory.read_user(ALICE_ID, fields)
    assert read["accountEnabled"] is True
    assert read["signInSessionsValidFromDateTime"].endswith("Z")
    assert "mail" not in read  # $select was sent
    assert set((await directory.read_mail_protocols(ALICE)).values()) == {True}
    await directory.disable_mail_protocols(ALICE)
    assert set((await directory.read_mail_protocols(ALICE)).values()) == {False}
    with pytest.raises(NotFoundError):
        await directory.read_mail_protocols("nobody@example.org")


async def test_block_reset_revoke_change_the_user(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    before = graph_sim.sim.users[ALICE_ID].sign_in_sessions_valid_from
    password = SecretStr("Xy7!" * 10)
    await directory.block_sign_in(ALICE_ID)
    await directory.reset_password(ALICE_ID, password)
    await directory.revoke_sessions(ALICE_ID)
    user = graph_sim.sim.users[ALICE_ID]
    assert user.account_enabled is False
    assert user.password_matches(password.get_secret_value())
    assert user.force_change is True
    assert user.revocation_count == 1
    assert user.sign_in_sessions_valid_from >= before
    # What the SDK sent, as Graph documents it.
    bodies = [b for b in graph_sim.recorder.json_bodies() if isinstance(b, dict)]
    assert {"accountEnabled": False} == {k: v for k, v in bodies[0].items() if k[0] != "@"}
    assert bodies[1]["passwordProfile"]["forceChangePasswordNextSignIn"] is True


async def test_mail_protocols_through_exchange_invoke_command(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    await directory.disable_mail_protocols(ALICE)
    mailbox = graph_sim.sim.users[ALICE_ID].cas_mailbox
    assert mailbox and set(mailbox.values()) == {False}
    [sent] = [b for b in graph_sim.recorder.json_bodies() if "CmdletInput" in b]
    assert sent["CmdletInput"]["CmdletName"] == "Set-CASMailbox"
    with pytest.raises(NotFoundError):
        await directory.disable_mail_protocols("nobody@example.org")


async def test_mail_protocols_off_by_default(graph_sim: GraphSim) -> None:
    plain = make_directory(graph_sim.url)
    try:
        with pytest.raises(StepSkipped, match="not configured"):
            await plain.disable_mail_protocols(ALICE)
    finally:
        await plain.aclose()


async def test_exchange_without_token_is_unauthorized(graph_sim: GraphSim) -> None:
    d = make_directory(graph_sim.url, mailbox=make_mailbox(graph_sim.url, token=""))
    try:
        with pytest.raises(PermanentError) as caught:
            await d.disable_mail_protocols(ALICE)
        assert caught.value.code == "graph_unauthorized"
    finally:
        await d.aclose()


async def test_unknown_user_writes_are_not_found(directory: GraphSdkDirectory) -> None:
    for call in (directory.block_sign_in, directory.revoke_sessions):
        with pytest.raises(NotFoundError):
            await call("nobody@example.org")


async def test_no_token_is_unauthorized(graph_sim: GraphSim) -> None:
    d = make_directory(graph_sim.url, token="")
    try:
        with pytest.raises(PermanentError) as caught:
            await d.revoke_sessions(ALICE_ID)
        assert caught.value.code == "graph_unauthorized"
        assert "InvalidAuthenticationToken" in caught.value.message
    finally:
        await d.aclose()


@pytest.mark.parametrize(
    ("call", "permission"),
    [
        ("revoke_sessions", "User.RevokeSessions.All"),
        ("block_sign_in", "User.EnableDisableAccount.All"),
        ("reset_password", "User-PasswordProfile.ReadWrite.All"),
    ],
)
async def test_missing_permission_is_named(
    graph_sim: GraphSim, directory: GraphSdkDirectory, call: str, permission: str
) -> None:
    graph_sim.sim.missing_permissions = frozenset({permission})
    args: tuple[Any, ...] = (ALICE_ID,)
    if call == "reset_password":
        args += (SecretStr("Ab1!" * 10),)
    with pytest.raises(PermanentError) as caught:
        await getattr(directory, call)(*args)
    assert caught.value.code == "graph_forbidden"
    assert permission in caught.value.message
    assert "Authorization_RequestDenied" in caught.value.message


async def test_invalid_body_is_a_bad_request_without_the_password(
    directory: GraphSdkDirectory,
) -> None:
    short = "Sh0rt!"  # under the simulator's complexity rule
    with pytest.raises(PermanentError) as caught:
        await directory.reset_password(ALICE_ID, SecretStr(short))
    assert caught.value.code == "graph_bad_request"
    assert short not in str(caught.value)


async def test_throttled_write_carries_retry_after_and_sdk_does_not_retry(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    graph_sim.sim.configure(throttle_writes_per_s=1)
    await directory.revoke_sessions(ALICE_ID)
    with pytest.raises(ThrottledError) as caught:
        await directory.revoke_sessions(ALICE_ID)
    assert caught.value.code == "graph_throttled"
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    # One 429, one attempt: the SDK's retry middleware is not in the pipeline.
    assert graph_sim.sim.stats.throttled == 1
    assert graph_sim.sim.stats.requests == 2


async def test_run_step_honours_retry_after(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    graph_sim.sim.configure(throttle_writes_per_s=1)
    await directory.revoke_sessions(ALICE_ID)
    policy = RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.002)
    started = time.monotonic()
    step = await run_step("m365", "revoke_sessions", lambda: _none(directory), policy)
    elapsed = time.monotonic() - started
    assert (step.outcome, step.attempts) == (Outcome.SUCCEEDED, 2)
    # The backoff alone would be milliseconds: the wait is Graph's Retry-After (1 s).
    assert elapsed >= 0.95
    assert graph_sim.sim.users[ALICE_ID].revocation_count == 2


async def _none(directory: GraphSdkDirectory) -> None:
    await directory.revoke_sessions(ALICE_ID)


async def test_unavailable_is_transient_with_retry_after(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    graph_sim.sim.configure(error_rate=1.0)
    with pytest.raises(ThrottledError) as caught:
        await directory.block_sign_in(ALICE_ID)
    assert caught.value.code == "graph_unavailable" and caught.value.retry_after == 1


@pytest.mark.parametrize(
    ("status", "headers", "error", "code", "retry_after"),
    [
        (500, {}, TransientError, "graph_server_error", None),
        (502, {}, TransientError, "graph_server_error", None),
        (504, {}, TransientError, "graph_unavailable", None),
        (504, {"Retry-After": "3"}, ThrottledError, "graph_unavailable", 3.0),
        (409, {}, PermanentError, "graph_http_409", None),
    ],
)
async def test_other_statuses_are_translated(
    serve: Callable[[Any], str],
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    code: str,
    retry_after: float | None,
) -> None:
    body = {"error": {"code": "SomethingWrong", "message": "secret-echo"}}
    stub = StubHttp(lambda _seen: Reply(status, body, headers))
    d = make_directory(serve(stub))
    try:
        with pytest.raises(error) as caught:
            await d.revoke_sessions(ALICE_ID)
    finally:
        await d.aclose()
    assert getattr(caught.value, "code", None) == code
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert "secret-echo" not in str(caught.value)
    assert len(stub.seen) == 1  # no hidden retry


async def test_gateway_page_that_is_not_json_is_still_translated(
    serve: Callable[[Any], str],
) -> None:
    stub = StubHttp(lambda _seen: Reply(502, None, {"Content-Type": "text/html"}))
    d = make_directory(serve(stub))
    try:
        with pytest.raises(TransientError) as caught:
            await d.block_sign_in(ALICE_ID)
    finally:
        await d.aclose()
    assert caught.value.code == "graph_server_error"


async def test_unreachable_graph_is_transient() -> None:
    d = make_directory(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientError) as caught:
            await d.revoke_sessions(ALICE_ID)
    finally:
        await d.aclose()
    assert caught.value.code == "graph_unreachable"


async def test_slow_graph_times_out_as_transient(serve: Callable[[Any], str]) -> None:
    stub = StubHttp(lambda _seen: Reply(200, {"value": True}, delay_s=2))
    d = make_directory(serve(stub), timeout_s=0.3)
    try:
        with pytest.raises(TransientError) as caught:
            await d.revoke_sessions(ALICE_ID)
    finally:
        await d.aclose()
    assert caught.value.code == "graph_timeout"
