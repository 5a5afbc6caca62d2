"""The Graph simulator's admin API under `/_sim` (no auth): users, stats and faults."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from .demo import DEMO_DOMAIN

if TYPE_CHECKING:
    from .graph import GraphSimulator
    from .graph_model import GraphUser

NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    user_principal_name: str = Field(
        alias="userPrincipalName", max_length=256, pattern=r"^[^@\s/]+@[^@\s/]+$"
    )
    mail: str | None = Field(default=None, max_length=256)
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    user_type: Literal["Member", "Guest"] = Field(default="Member", alias="userType")
    display_name: str | None = Field(default=None, alias="displayName", max_length=256)
    account_enabled: bool = Field(default=True, alias="accountEnabled")
    employee_id: str | None = Field(default=None, alias="employeeId", max_length=16)
    on_premises_sam_account_name: str | None = Field(
        default=None, alias="onPremisesSamAccountName", max_length=64
    )
    # Default now; an older value lets a test tell a revocation from no change.
    created_date_time: datetime | None = Field(default=None, alias="createdDateTime")


class BulkUsers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=1_000_000)
    prefix: str = Field(default="user", pattern=NAME_PATTERN)
    domain: str = Field(default=DEMO_DOMAIN, pattern=NAME_PATTERN)
    start: int = Field(default=1, ge=0)


class ConfigUpdate(BaseModel):
    """Only the fields present change; a throttle 0 or null turns that limit off."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0, le=600_000)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    throttle_writes_per_s: float | None = Field(default=None, ge=0)
    throttle_tenant_writes_per_s: float | None = Field(default=None, ge=0)
    missing_permissions: list[Annotated[str, Field(pattern=r"^[A-Za-z.-]{1,80}$")]] | None = Field(
        default=None, max_length=20
    )


class LeaverSeed(BaseModel):
    """Licences, shared groups, devices and methods for every user whose UPN starts with
    `prefix` (graph_leaver.TenantState.seed)."""

    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(default="user", pattern=NAME_PATTERN)
    licenses: int = Field(default=2, ge=0, le=10)
    groups: int = Field(default=3, ge=0, le=50)
    devices: int = Field(default=1, ge=0, le=10)
    methods: tuple[
        Literal["phoneMethods", "microsoftAuthenticatorMethods", "fido2Methods"], ...
    ] = Field(default=("phoneMethods",), max_length=3)


class PasswordCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str


class DropWrites(BaseModel):
    """Writes to accept (204/200) and not apply, so a read-back can catch the lie."""

    model_config = ConfigDict(extra="forbid")

    drop: list[
        Literal["accountEnabled", "passwordProfile", "revokeSignInSessions", "Set-CASMailbox"]
    ] = Field(max_length=4)


class Permissions(BaseModel):
    """Application permissions the app lacks: calls that need one answer 403."""

    model_config = ConfigDict(extra="forbid")

    missing: list[Annotated[str, Field(pattern=r"^[A-Za-z.-]{1,80}$")]] = Field(max_length=20)


def add_admin_routes(app: FastAPI, sim: GraphSimulator) -> None:
    def user_or_404(key: str) -> GraphUser:
        user = sim.find(key)
        if user is None:
            raise HTTPException(404, f"no user {key!r}")
        return user

    @app.get("/_sim/users")
    async def list_users(limit: int = 1000) -> list[dict[str, Any]]:
        return [user.sim_view() for user in list(sim.users.values())[: max(limit, 0)]]

    @app.post("/_sim/users", status_code=201)
    async def create_user(new: NewUser) -> dict[str, Any]:
        try:
            user = sim.add_user(
                new.user_principal_name,
                mail=new.mail,
                object_id=new.id,
                user_type=new.user_type,
                display_name=new.display_name,
                account_enabled=new.account_enabled,
                employee_id=new.employee_id,
                on_premises_sam_account_name=new.on_premises_sam_account_name,
                created_at=new.created_date_time,
            )
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        return user.sim_view()

    @app.post("/_sim/users:bulk", status_code=201)
    async def create_users(bulk: BulkUsers) -> dict[str, Any]:
        """Creates `{prefix}{n:05d}@{domain}` (mail the same); existing ones are kept."""
        created = 0
        upns = [
            f"{bulk.prefix}{n:05d}@{bulk.domain}"
            for n in range(bulk.start, bulk.start + bulk.count)
        ]
        for upn in upns:
            if sim.find(upn) is None:
                sim.add_user(upn, mail=upn)
                created += 1
        return {
            "created": created,
            "existing": bulk.count - created,
            "first": upns[0],
            "last": upns[-1],
        }

    @app.post("/_sim/leaver:seed")
    async def seed_leaver(seed: LeaverSeed) -> dict[str, int]:
        users = [u.id for u in sim.users.values() if u.user_principal_name.startswith(seed.prefix)]
        count = sim.tenant.seed(users, seed.licenses, seed.groups, seed.devices, seed.methods)
        return {"users": count}

    @app.get("/_sim/users/{key}")
    async def get_user(key: str) -> dict[str, Any]:
        return user_or_404(key).sim_view()

    @app.post("/_sim/users/{key}/verify-password")
    async def verify_password(key: str, check: PasswordCheck) -> dict[str, bool]:
        """Whether `password` is the user's current one (a password never leaves)."""
        return {"matches": user_or_404(key).password_matches(check.password)}

    @app.get("/_sim/stats")
    async def stats() -> dict[str, int]:
        return asdict(sim.stats)

    @app.post("/_sim/reset-stats")
    async def reset_stats() -> dict[str, int]:
        sim.stats.requests = sim.stats.writes = sim.stats.throttled = sim.stats.errors = 0
        sim.stats.dropped = 0
        return asdict(sim.stats)

    @app.post("/_sim/permissions")
    async def set_permissions(update: Permissions) -> dict[str, list[str]]:
        sim.missing_permissions = frozenset(update.missing)
        return {"missing": sorted(sim.missing_permissions)}

    @app.post("/_sim/drop-writes")
    async def drop_writes(update: DropWrites) -> dict[str, list[str]]:
        sim.dropped_writes = frozenset(update.drop)
        return {"drop": sorted(sim.dropped_writes)}

    @app.get("/_sim/config")
    async def get_config() -> dict[str, Any]:
        return asdict(sim.config)

    @app.post("/_sim/config")
    async def set_config(update: ConfigUpdate) -> dict[str, Any]:
        sim.configure(
            latency_ms=update.latency_ms,
            error_rate=update.error_rate,
            throttle_writes_per_s=update.throttle_writes_per_s,
            throttle_tenant_writes_per_s=update.throttle_tenant_writes_per_s,
            reset_throttle="throttle_writes_per_s" in update.model_fields_set,
            reset_tenant_throttle="throttle_tenant_writes_per_s" in update.model_fields_set,
        )
        return asdict(sim.config)
