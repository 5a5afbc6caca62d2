"""Offboarding profiles: named, configured sets of actions, in order, with their options,
split into phases over time.

A profile's phase 0 runs when the offboarding starts (the saga as DESIGN.md describes it:
every service, then the SSO logout); each later phase runs `after` the start (e.g. 30
days) as a scheduled, cancellable part of the same request, for the Microsoft 365 and ENT
actions it names (the SSO session and the workstation sessions ended in phase 0).

Built-in profiles (`BUILT_IN`) can be replaced or added to by the file
`SORTIE_ORCHESTRATOR_PROFILES_FILE` (YAML or JSON)::

    default: staff-leaves          # the site's profile when a request names none
    profiles:
      staff-leaves:
        description: Staff member leaving
        phases:
          - actions: [block_sign_in, reset_password, revoke_sessions, set_auto_reply]
            options: {set_auto_reply: {message: "I have left the school."}}
          - after: P30D            # ISO 8601 duration, or seconds
            actions: [remove_licenses]

An action appears in one phase at most; a later phase names no workstation action.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from sortie_core.events import M365Action
from sortie_core.services import OFFBOARD_ACTIONS, EntAction, WorkstationAction

ProfileName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,62}$")]
# Each profile phase runs at most this long after the start (the request's retention
# must outlive it: the later phases are part of the request).
MAX_AFTER = timedelta(days=365)
# Actions that can run in a later phase (the workstation sessions are phase 0's).
_LATER_PHASE_ACTIONS = frozenset(
    {a.value for a in M365Action} | {EntAction.APP_LOGOUT.value, EntAction.DISABLE_ACCOUNT.value}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Phase(_Strict):
    after: timedelta = timedelta(0)
    # In the order they run; empty (phase 0 only): DESIGN.md's default offboarding.
    actions: Annotated[list[str], Field(max_length=30)] = []
    options: Annotated[dict[str, dict[str, JsonValue]], Field(max_length=30)] = {}

    @field_validator("actions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - OFFBOARD_ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {sorted(OFFBOARD_ACTIONS)}")
        if len(set(value)) != len(value):
            raise ValueError("an action is named twice")
        return value

    @model_validator(mode="after")
    def _options_for_its_actions(self) -> Phase:
        stray = sorted(set(self.options) - set(self.actions))
        if stray:
            raise ValueError(f"options for actions the phase does not name: {stray}")
        if not timedelta(0) <= self.after <= MAX_AFTER:
            raise ValueError(f"after must be between 0 and {MAX_AFTER.days} days")
        return self


class Profile(_Strict):
    description: Annotated[str, Field(max_length=300)] = ""
    phases: Annotated[list[Phase], Field(min_length=1, max_length=6)]

    @model_validator(mode="after")
    def _ordered(self) -> Profile:
        first, *later = self.phases
        if first.after != timedelta(0):
            raise ValueError("phase 0 runs at the start: it has no `after`")
        previous = timedelta(0)
        seen = set(first.actions)
        for index, phase in enumerate(later, start=1):
            if phase.after <= previous:
                raise ValueError(f"phase {index} must come after the phase before it")
            if not phase.actions:
                raise ValueError(f"phase {index} names no action")
            if not set(phase.actions) <= _LATER_PHASE_ACTIONS:
                bad = sorted(set(phase.actions) - _LATER_PHASE_ACTIONS)
                raise ValueError(f"phase {index}: {bad} can run in phase 0 only")
            if seen & set(phase.actions):
                raise ValueError(f"phase {index} repeats {sorted(seen & set(phase.actions))}")
            seen |= set(phase.actions)
            previous = phase.after
        return self

    def options(self, phase: int) -> dict[str, dict[str, JsonValue]]:
        return dict(self.phases[phase].options)


_LOGOFF = WorkstationAction.LOGOFF.value
_APPS = EntAction.APP_LOGOUT.value
_ENT_ACCOUNT = EntAction.DISABLE_ACCOUNT.value
_BLOCK = [
    M365Action.BLOCK_SIGN_IN.value,
    M365Action.RESET_PASSWORD.value,
    M365Action.REVOKE_SESSIONS.value,
    M365Action.DISABLE_MAIL_PROTOCOLS.value,
]


_M = M365Action


def _staff_leaves() -> Profile:
    return Profile(
        description="Staff member leaving: block and sign out now, licences after 30 days, "
        "hidden from the address lists after 60",
        phases=[
            Phase(
                actions=[
                    *_BLOCK,
                    _M.REMOVE_AUTH_METHODS.value,
                    _M.DISABLE_DEVICES.value,
                    _M.SET_AUTO_REPLY.value,
                    _APPS,
                    _ENT_ACCOUNT,
                    _LOGOFF,
                ],
                options={
                    _M.DISABLE_DEVICES.value: {"mode": "disable"},
                    _M.SET_AUTO_REPLY.value: {
                        "message": "This person no longer works here. / "
                        "Cette personne ne fait plus partie de l'établissement."
                    },
                },
            ),
            Phase(
                after=timedelta(days=30),
                actions=[
                    _M.CONVERT_TO_SHARED_MAILBOX.value,
                    _M.REMOVE_GROUP_MEMBERSHIPS.value,
                    _M.REMOVE_LICENSES.value,
                ],
            ),
            Phase(after=timedelta(days=60), actions=[_M.HIDE_FROM_ADDRESS_LISTS.value]),
        ],
    )


def _pupil_leaves() -> Profile:
    return Profile(
        description="Pupil leaving: block and sign out now, groups and licences after 30 days",
        phases=[
            Phase(actions=[*_BLOCK, _M.REMOVE_AUTH_METHODS.value, _APPS, _ENT_ACCOUNT, _LOGOFF]),
            Phase(
                after=timedelta(days=30),
                actions=[
                    _M.REMOVE_GROUP_MEMBERSHIPS.value,
                    _M.HIDE_FROM_ADDRESS_LISTS.value,
                    _M.REMOVE_LICENSES.value,
                ],
            ),
        ],
    )


def _suspend() -> Profile:
    return Profile(
        description="Temporary block (leave, investigation): sign-in blocked and every "
        "session ended; the password, licences and mailbox are kept",
        phases=[
            Phase(
                actions=[
                    _M.BLOCK_SIGN_IN.value,
                    _M.REVOKE_SESSIONS.value,
                    _M.DISABLE_MAIL_PROTOCOLS.value,
                    _APPS,
                    _LOGOFF,
                ]
            )
        ],
    )


def _built_in() -> dict[str, Profile]:
    """What a site gets without a profiles file (Microsoft's leaver guide, in order:
    https://learn.microsoft.com/en-us/microsoft-365/admin/add-users/remove-former-employee)."""
    full = Profile(
        description="DESIGN.md's offboarding: every default action of every service, now",
        phases=[Phase()],
    )
    return {
        "full": full,
        "staff-leaves": _staff_leaves(),
        "pupil-leaves": _pupil_leaves(),
        "suspend": _suspend(),
    }


BUILT_IN_DEFAULT = "full"


class Profiles(_Strict):
    """The site's profiles and the one a request gets when it names none."""

    default: ProfileName = BUILT_IN_DEFAULT
    profiles: dict[ProfileName, Profile] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _with_built_ins(self) -> Profiles:
        merged = {**_built_in(), **self.profiles}
        object.__setattr__(self, "profiles", merged)
        if self.default not in merged:
            raise ValueError(f"default profile {self.default!r} is not defined")
        return self

    def get(self, name: str | None) -> tuple[str, Profile]:
        """The named profile (the default for None); KeyError names the known ones."""
        chosen = name or self.default
        try:
            return chosen, self.profiles[chosen]
        except KeyError:
            raise KeyError(
                f"unknown profile {chosen!r}; known: {', '.join(sorted(self.profiles))}"
            ) from None

    def add_action_lists(self, lists: dict[str, list[str]]) -> Profiles:
        """SCIM's single-phase profiles (`scim.profiles`: name -> actions) beside these."""
        extra = {n: Profile(phases=[Phase(actions=a)]) for n, a in lists.items()}
        return Profiles(default=self.default, profiles={**self.profiles, **extra})


def load(path: Path) -> Profiles:
    text = path.read_text(encoding="utf-8")
    raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return Profiles.model_validate(raw or {})
