"""One contract, two implementations: the in-memory FakeDirectory and msgraph-sdk against
the Graph simulator answer every lookup and read-back alike, so the handler tests that use
the fake say something about the real adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from pydantic import SecretStr

from sortie_core.errors import NotFoundError, PermanentError
from sortie_core.events import SkipReason, utcnow
from sortie_core.steps import StepSkipped
from sortie_m365.adapters import M365Directory
from sortie_m365.adapters.fake import FakeDirectory
from tests.m365.conftest import GraphSim, make_directory, make_mailbox

UPN = "erin@example.org"
MAIL = "erin.petit@example.org"
OBJECT_ID = "e7170000-0000-4000-8000-000000000005"
GUEST = "guest_partner.example#EXT#@example.org"
READ = ["accountEnabled", "signInSessionsValidFromDateTime", "lastPasswordChangeDateTime"]


@dataclass
class Subject:
    directory: M365Directory
    # Writes to accept without applying, as /_sim/drop-writes does.
    drop: Callable[[set[str]], None]


@pytest.fixture(params=["fake", "graph"])
async def contract(request: pytest.FixtureRequest, graph_sim: GraphSim) -> AsyncIterator[Subject]:
    if request.param == "fake":
        fake = FakeDirectory(mail_protocols_supported=True)
        fake.add(UPN, id=OBJECT_ID, mail=MAIL, employee_id="E5", sam_account_name="epetit")
        fake.add("twin@example.org", sam_account_name="twin")
        fake.add("twin2@example.org", sam_account_name="twin")
        fake.add(GUEST, mail="guest@partner.example", guest=True)
        yield Subject(fake, lambda names: setattr(fake, "drop", names))
        return
    sim = graph_sim.sim
    old = utcnow() - timedelta(days=1)
    sim.add_user(
        UPN,
        mail=MAIL,
        object_id=OBJECT_ID,
        employee_id="E5",
        on_premises_sam_account_name="epetit",
        created_at=old,
    )
    sim.add_user("twin@example.org", on_premises_sam_account_name="twin")
    sim.add_user("twin2@example.org", on_premises_sam_account_name="twin")
    # graph_sim holds GUEST already.
    real = make_directory(graph_sim.url, mailbox=make_mailbox(graph_sim.url))

    def drop(names: set[str]) -> None:
        sim.dropped_writes = frozenset(names)

    yield Subject(real, drop)
    await real.aclose()


async def test_get_user_by_object_id_or_upn_not_mail(contract: Subject) -> None:
    d = contract.directory
    assert (await d.get_user(OBJECT_ID)).upn == UPN
    assert (await d.get_user(UPN.upper())).id == OBJECT_ID
    with pytest.raises(NotFoundError):
        await d.get_user(MAIL)


async def test_find_users_by_each_filter_property(contract: Subject) -> None:
    d = contract.directory
    for prop, value in (
        ("mail", MAIL.upper()),
        ("userPrincipalName", UPN),
        ("employeeId", "e5"),
        ("onPremisesSamAccountName", "epetit"),
    ):
        assert [u.id for u in await d.find_users(prop, value)] == [OBJECT_ID], prop
    assert await d.find_users("employeeId", "nobody") == []
    assert len(await d.find_users("onPremisesSamAccountName", "twin")) == 2
    with pytest.raises(PermanentError):
        await d.find_users("displayName", "Erin")


async def test_read_backs_follow_the_writes(contract: Subject) -> None:
    d = contract.directory
    before = await d.read_user(OBJECT_ID, READ)
    assert set(before) == set(READ) and before["accountEnabled"] is True
    await d.block_sign_in(OBJECT_ID)
    await d.reset_password(OBJECT_ID, SecretStr("Zq9!" * 10))
    await d.revoke_sessions(OBJECT_ID)
    await d.disable_mail_protocols(UPN)
    after = await d.read_user(OBJECT_ID, READ)
    assert after["accountEnabled"] is False
    for prop in READ[1:]:
        assert after[prop] > before[prop], prop
    assert set((await d.read_mail_protocols(UPN)).values()) == {False}


async def test_dropped_writes_change_nothing_read_back(contract: Subject) -> None:
    d = contract.directory
    contract.drop({"accountEnabled", "passwordProfile", "revokeSignInSessions", "Set-CASMailbox"})
    before = await d.read_user(OBJECT_ID, READ)
    await d.block_sign_in(OBJECT_ID)
    await d.reset_password(OBJECT_ID, SecretStr("Zq9!" * 10))
    await d.revoke_sessions(OBJECT_ID)
    await d.disable_mail_protocols(UPN)
    assert await d.read_user(OBJECT_ID, READ) == before
    assert set((await d.read_mail_protocols(UPN)).values()) == {True}


async def test_an_unknown_user_is_not_found_everywhere(contract: Subject) -> None:
    d = contract.directory
    nobody = "nobody@example.org"
    for call in (
        d.get_user(nobody),
        d.read_user(nobody, READ),
        d.revoke_sessions(nobody),
        d.block_sign_in(nobody),
        d.reset_password(nobody, SecretStr("Zq9!" * 10)),
        d.read_mail_protocols(nobody),
        d.disable_mail_protocols(nobody),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_a_guest_is_told_apart(contract: Subject) -> None:
    found = await contract.directory.find_users("mail", "guest@partner.example")
    assert [(u.upn, u.guest) for u in found] == [(GUEST, True)]
    assert (await contract.directory.get_user(OBJECT_ID)).guest is False


@pytest.mark.parametrize("kind", ["fake", "graph"])
async def test_without_exchange_mailbox_protocols_are_skipped(
    kind: str, graph_sim: GraphSim
) -> None:
    d: M365Directory
    if kind == "fake":
        d = FakeDirectory.with_users([UPN])
    else:
        graph_sim.sim.add_user(UPN, object_id=OBJECT_ID)
        d = make_directory(graph_sim.url)
    for call in (d.read_mail_protocols(UPN), d.disable_mail_protocols(UPN)):
        with pytest.raises(StepSkipped) as info:
            await call
        assert info.value.why is SkipReason.DISABLED_BY_CONFIGURATION
    await d.aclose()
