"""What a SCIM user means to Sortie, from configuration (setting `scim`, or the YAML/JSON
file `scim_file`): how its attributes map onto the request subject, with per-site
templates, and what each lifecycle event starts.

A template is text with `${<SCIM attribute path>}` placeholders, e.g. `${userName}`,
`${emails[type eq "work"].value}`,
`EDU\\${urn:sortie:params:scim:schemas:extension:sortie:2.0:User:casUsername}`.
Each identifier takes the first of its templates whose placeholders all have a value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scim2_models import Path, SCIMException, ScimFilter

from sortie_core.events import Subject
from sortie_core.services import OFFBOARD_ACTIONS
from sortie_orchestrator.http.scim.model import SORTIE_USER, ScimUser

_PLACEHOLDER = re.compile(r"\$\{([^}]{1,300})\}")
_UPN = re.compile(r"^[^@\s]+@[^@\s]+$")
_PLAIN = re.compile(r"^\S+$")

Templates = Annotated[list[Annotated[str, Field(max_length=500)]], Field(max_length=10)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_templates(value: list[str]) -> list[str]:
    for template in value:
        for path in _PLACEHOLDER.findall(template):
            try:
                known = Path[ScimUser](path).resolve()  # type: ignore[misc]
            except (SCIMException, ValueError) as exc:
                raise ValueError(f"template {template!r}: {exc}") from exc
            if known is None:
                raise ValueError(f"template {template!r}: no attribute {path!r}")
    return value


class SubjectMap(_Strict):
    """Templates per identifier; unset ones come from the defaults."""

    user_id: Templates | None = None
    upn: Templates | None = None
    cas_username: Templates | None = None
    windows_account: Templates | None = None

    @field_validator("user_id", "upn", "cas_username", "windows_account")
    @classmethod
    def _valid(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_templates(value)


DEFAULT_MAP = SubjectMap(
    user_id=["${userName}"],
    upn=["${userName}", "${emails[primary eq true].value}", '${emails[type eq "work"].value}'],
    cas_username=[f"${{{SORTIE_USER}:casUsername}}", "${userName}"],
    windows_account=[f"${{{SORTIE_USER}:windowsAccount}}"],
)


class Rule(_Strict):
    """Picks a profile: when the user is a member of `group` (displayName, any case) or
    matches `filter` (a SCIM filter on the user); the first matching rule wins."""

    profile: str
    group: Annotated[str, Field(max_length=256)] | None = None
    filter: Annotated[str, Field(max_length=600)] | None = None

    @model_validator(mode="after")
    def _one(self) -> Rule:
        if (self.group is None) == (self.filter is None):
            raise ValueError("a rule needs exactly one of group and filter")
        if self.filter is not None:
            try:
                ScimFilter[ScimUser](self.filter)  # type: ignore[misc]
            except (SCIMException, ValueError) as exc:
                raise ValueError(f"filter {self.filter!r}: {exc}") from exc
        return self


class ScimConfig(_Strict):
    subject: SubjectMap = Field(default_factory=SubjectMap)
    # Per site (the Sortie extension's `site`, or `site_attribute`): templates that win
    # over `subject` for that site's users.
    sites: dict[str, SubjectMap] = {}
    site_attribute: str = f"{SORTIE_USER}:site"
    # Single-phase offboarding profiles: name -> actions (empty: every default action);
    # beside the orchestrator's profiles (profiles.py, `SORTIE_ORCHESTRATOR_PROFILES_FILE`).
    profiles: dict[str, Annotated[list[str], Field(max_length=20)]] = {}
    # `active: false`: the first matching rule's profile, else the user's site's
    # (`site_profiles`), else `deactivate_profile`; None: the orchestrator's default.
    deactivate_rules: list[Rule] = []
    site_profiles: dict[str, str] = {}
    deactivate_profile: str | None = None
    delete_profile: str | None = None
    # Where a scheduled date comes from (the first that has a value); a past date is now.
    effective_at: Templates = [f"${{{SORTIE_USER}:offboardAt}}"]

    @model_validator(mode="after")
    def _known_profiles(self) -> ScimConfig:
        for name, actions in self.profiles.items():
            unknown = sorted(set(actions) - OFFBOARD_ACTIONS)
            if unknown:
                raise ValueError(f"profile {name!r}: unknown actions {unknown}")
        _check_templates([*self.effective_at, f"${{{self.site_attribute}}}"])
        return self

    def profile_names(self) -> list[str]:
        """Every profile this policy names (the settings check that each is defined)."""
        named = [self.deactivate_profile, self.delete_profile, *self.site_profiles.values()]
        named += [r.profile for r in self.deactivate_rules]
        return [n for n in named if n is not None]


def _value(user: ScimUser, path: str) -> str | None:
    try:
        found: Any = Path[ScimUser](path).get(user, strict=False)  # type: ignore[misc]
    except (SCIMException, ValueError):
        return None
    if isinstance(found, list):
        found = found[0] if found else None
    if found is None or found == "":
        return None
    return found.isoformat() if isinstance(found, datetime) else str(found)


def render(user: ScimUser, templates: list[str]) -> str | None:
    for template in templates:
        missing = False

        def fill(match: re.Match[str]) -> str:
            nonlocal missing
            value = _value(user, match.group(1))
            missing = missing or value is None
            return value or ""

        text = _PLACEHOLDER.sub(fill, template).strip()
        if not missing and text:
            return text
    return None


def _first(user: ScimUser, templates: list[str], pattern: re.Pattern[str]) -> str | None:
    for template in templates:
        text = render(user, [template])
        if text and pattern.match(text):
            return text
    return None


def subject_of(config: ScimConfig, user: ScimUser) -> Subject:
    site = _value(user, config.site_attribute)
    per_site = config.sites.get(site) if site else None

    def templates(field: str) -> list[str]:
        for source in (per_site, config.subject, DEFAULT_MAP):
            chosen = getattr(source, field) if source else None
            if chosen is not None:
                return list(chosen)
        return []

    return Subject(
        user_id=render(user, templates("user_id")) or str(user.user_name),
        upn=_first(user, templates("upn"), _UPN),
        cas_username=_first(user, templates("cas_username"), _PLAIN),
        windows_account=render(user, templates("windows_account")),
        # Delegated administration limits people and tokens to sites: the request says its.
        site=site[:100] if site else None,
    )


def deactivation_profile(config: ScimConfig, user: ScimUser, groups: list[str]) -> str | None:
    """The profile of a deactivation; None: the orchestrator's default."""
    names = {g.lower() for g in groups}
    for rule in config.deactivate_rules:
        if rule.group is not None and rule.group.lower() in names:
            return rule.profile
        if rule.filter is not None and ScimFilter[ScimUser](rule.filter).match(user):  # type: ignore[misc]
            return rule.profile
    site = _value(user, config.site_attribute)
    if site is not None and site in config.site_profiles:
        return config.site_profiles[site]
    return config.deactivate_profile


def effective_at(config: ScimConfig, user: ScimUser) -> datetime | None:
    text = render(user, config.effective_at)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(
            f"the offboarding date {text[:64]!r} is not an ISO 8601 date-time"
        ) from exc
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when if when > datetime.now(UTC) else None
