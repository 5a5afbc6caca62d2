"""What SCIM writes mean beyond the store: a user set inactive or deleted starts the
configured offboarding (policy.py); a user set active again is recorded
(`reactivationRequestedAt` in the Sortie extension, returned when asked for) and a
still-scheduled offboarding of theirs is cancelled. Group memberships are kept both ways
(a group's `members`, a user's read-only `groups`)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from scim2_models import (
    Group,
    GroupMember,
    GroupMembership,
    InvalidValueException,
    UniquenessException,
)

from sortie_orchestrator import handlers, reversal_handlers
from sortie_orchestrator.adapters.scim_store import ScimStore, Stale, Stored
from sortie_orchestrator.http.auth import Principal
from sortie_orchestrator.http.scim.model import SORTIE_USER, CoreUser, ScimUser, SortieUser
from sortie_orchestrator.http.scim.policy import (
    ScimConfig,
    deactivation_profile,
    effective_at,
    subject_of,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Kind:
    """One resource type's endpoint: its model, its store, and the other type's store
    (a user's groups; a group's members)."""

    model: Any
    store: ScimStore
    endpoint: str
    other: ScimStore

    @property
    def groups(self) -> ScimStore:
        return self.other if self.endpoint == "Users" else self.store


def from_doc(kind: Kind, doc: dict[str, Any]) -> Any:
    return kind.model.model_validate(doc)


def to_doc(resource: Any) -> dict[str, Any]:
    """What is stored: never the password, never the computed `groups`."""
    if isinstance(resource, CoreUser):
        resource.password = None
        resource.groups = None
    doc: dict[str, Any] = resource.model_dump()
    return doc


def taken(kind: Kind, doc: dict[str, Any]) -> UniquenessException:
    name = kind.store.kind.name
    return UniquenessException(detail=f"{name} {str(doc[name])[:256]!r} is taken")


async def hydrate_many(kind: Kind, stored: list[Stored], base: str) -> list[Any]:
    """The stored resources as served: version, location, and a user's groups."""
    resources = []
    for item in stored:
        resource = from_doc(kind, item.doc)
        resource.meta.version = f'W/"{item.version}"'
        resource.meta.location = f"{base}/{kind.endpoint}/{item.id}"
        resources.append(resource)
    if kind.endpoint != "Users" or not stored:
        return resources
    memberships = await kind.other.groups_of([s.id for s in stored])
    names = {
        g.id: g.doc.get("displayName")
        for g in await kind.other.many(sorted({gid for ids in memberships for gid in ids}))
    }
    for resource, ids in zip(resources, memberships, strict=True):
        resource.groups = [
            GroupMembership.model_validate(
                {
                    "value": gid,
                    "display": names[gid],
                    "$ref": f"{base}/Groups/{gid}",
                    "type": "direct",
                }
            )
            for gid in ids
            if gid in names
        ] or None
    return resources


async def hydrate(kind: Kind, stored: Stored, base: str) -> Any:
    return (await hydrate_many(kind, [stored], base))[0]


async def group_names(kind: Kind, user_id: str) -> list[str]:
    groups = await kind.groups.many((await kind.groups.groups_of([user_id]))[0])
    return [str(g.doc.get("displayName", "")) for g in groups]


async def check_members(kind: Kind, resource: Any) -> None:
    """A group's members must be known users or groups (the reverse index stays clean)."""
    if not isinstance(resource, Group):
        return
    members: list[GroupMember] = resource.members or []
    values = [str(m.value or "") for m in members]
    known = await kind.other.existing(values) | await kind.store.existing(values)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise InvalidValueException(detail=f"members: no user or group {unknown[0][:64]!r}")


def keep_read_only(original: Any, replacement: Any) -> None:
    if isinstance(original, CoreUser) and original[SortieUser] is not None:
        kept = original[SortieUser]
        ext = replacement[SortieUser] or SortieUser()
        ext.offboarding = kept.offboarding
        ext.reactivation_requested_at = kept.reactivation_requested_at
        replacement[SortieUser] = ext


async def forget_member(kind: Kind, rid: str) -> None:
    """A deleted user or group leaves every group it was a member of."""
    groups = kind.groups
    for gid in (await groups.groups_of([rid]))[0]:
        for _ in range(5):
            group = await groups.get(gid)
            if group is None:
                break
            doc = {**group.doc}
            doc["members"] = [m for m in doc.get("members") or [] if m.get("value") != rid]
            try:
                await groups.put(doc, group, 0)
                break
            except Stale:
                continue
    await groups.forget_memberships(rid)


def _config(request: Request) -> ScimConfig:
    config: ScimConfig = request.app.state.settings.scim
    return config


def _active(doc: dict[str, Any]) -> bool:
    return doc.get("active") is not False


def _ext(doc: dict[str, Any]) -> dict[str, Any]:
    if SORTIE_USER not in doc.get("schemas", []):
        doc["schemas"] = [*doc.get("schemas", []), SORTIE_USER]
    ext: dict[str, Any] = doc.setdefault(SORTIE_USER, {})
    return ext


async def _offboard(
    request: Request,
    principal: Principal,
    kind: Kind,
    before: Stored,
    user: ScimUser,
    event: str,
) -> uuid.UUID:
    """Same user, same version, same key: a retried or racing call gets the same request."""
    config = _config(request)
    if event == "deactivated":
        profile = deactivation_profile(config, user, await group_names(kind, before.id))
    else:
        profile = config.delete_profile
    try:
        when = effective_at(config, user)
    except ValueError as exc:
        raise InvalidValueException(detail=str(exc)) from exc
    max_days = request.app.state.settings.max_schedule_days
    if when is not None and when > datetime.now(UTC) + timedelta(days=max_days):
        raise InvalidValueException(
            detail=f"the offboarding date is more than {max_days} days ahead"
        )
    deps: handlers.Deps = request.app.state.deps
    reason = f"scim_{event}" if profile is None else f"scim_{event}:{profile}"
    _, rid = await handlers.accept_offboard(
        deps,
        subject=subject_of(config, user),
        reason=reason,
        requested_by=principal.name,
        actions=[],
        effective_at=when,
        idempotency_key=f"scim:{before.id}:{before.version}",
        principal=principal.name,
        profile=request.app.state.settings.profiles.get(profile),
    )
    log.info("SCIM user %s %s: offboarding %s (profile %s)", before.id, event, rid, profile)
    return rid


async def on_change(
    request: Request, principal: Principal, kind: Kind, before: Stored, doc: dict[str, Any]
) -> dict[str, str]:
    """Before a user's new state is stored: start what its change of `active` means."""
    if kind.endpoint != "Users" or _active(before.doc) == _active(doc):
        return {}
    if not _active(doc):
        rid = await _offboard(request, principal, kind, before, from_doc(kind, doc), "deactivated")
        _ext(doc)["offboarding"] = f"/v1/requests/{rid}"
        return {"Sortie-Offboarding": f"/v1/requests/{rid}"}
    return await _reactivate(request, principal, kind, before, doc)


async def _reactivate(
    request: Request, principal: Principal, kind: Kind, before: Stored, doc: dict[str, Any]
) -> dict[str, str]:
    """Active again: a scheduled offboarding that has not started is cancelled; otherwise
    a reversal of the last one (or, with nothing on record, a reactivation: sign-in and
    mail protocols back on), recorded like any request."""
    ext = _ext(doc)
    ext["reactivationRequestedAt"] = datetime.now(UTC).isoformat()
    link = (before.doc.get(SORTIE_USER) or {}).get("offboarding")
    deps: handlers.Deps = request.app.state.deps
    last = uuid.UUID(link.rsplit("/", 1)[1]) if link else None
    if link and last:
        # Only an offboarding that has not started (not a later phase of a finished one).
        cancelled, _ = await handlers.try_cancel(deps, last, lambda s: s.status == "scheduled")
        if cancelled is not None:
            return {"Sortie-Cancelled": link}
    rid = await reversal_handlers.reactivate(
        deps,
        subject_of(_config(request), from_doc(kind, doc)),
        last,
        principal=principal.name,
        idempotency_key=f"scim-reactivate:{before.id}:{before.version}",
    )
    log.info("SCIM user %s reactivated: reversal %s", before.id, rid)
    return {"Sortie-Reversal": f"/v1/requests/{rid}"}


async def on_delete(
    request: Request, principal: Principal, kind: Kind, before: Stored
) -> dict[str, str]:
    if kind.endpoint != "Users" or not _active(before.doc):
        return {}  # an inactive user's offboarding already happened
    rid = await _offboard(request, principal, kind, before, from_doc(kind, before.doc), "deleted")
    return {"Sortie-Offboarding": f"/v1/requests/{rid}"}
