"""The SCIM mapping and lifecycle policy: templates, per-site overrides, rule order, dates,
and configuration mistakes refused when the settings load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from scim2_models import Context

from sortie_orchestrator.http.scim.model import SORTIE_USER, ScimUser
from sortie_orchestrator.http.scim.policy import (
    ScimConfig,
    deactivation_profile,
    effective_at,
    subject_of,
)
from sortie_orchestrator.settings import OrchestratorSettings

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def user(**attrs: Any) -> ScimUser:
    body = {"schemas": [CORE, SORTIE_USER], "userName": "jdupont", **attrs}
    return ScimUser.model_validate(body, scim_ctx=Context.RESOURCE_CREATION_REQUEST)


def test_default_subject() -> None:
    plain = subject_of(
        ScimConfig(), user(emails=[{"value": "j.dupont@lycee.example", "primary": True}])
    )
    assert plain.model_dump() == {
        "user_id": "jdupont",
        "upn": "j.dupont@lycee.example",  # userName is not an address: the primary e-mail
        "cas_username": "jdupont",
        "windows_account": None,
        "site": None,
    }
    spaced = subject_of(
        ScimConfig(), user(userName="Jean Dupont", **{SORTIE_USER: {"casUsername": "jdu"}})
    )
    assert spaced.cas_username == "jdu" and spaced.upn is None


def test_site_templates_win_and_fall_back() -> None:
    config = ScimConfig.model_validate(
        {
            "subject": {"upn": ['${emails[type eq "work"].value}']},
            "sites": {
                "lycee-b": {
                    "windows_account": ["LYCEEB\\${userName}"],
                    "upn": ["${userName}@lycee-b.example"],
                }
            },
        }
    )
    emails = [{"value": "jd@rectorat.example", "type": "work"}]
    at_b = subject_of(config, user(emails=emails, **{SORTIE_USER: {"site": "lycee-b"}}))
    assert (at_b.upn, at_b.windows_account) == ("jdupont@lycee-b.example", "LYCEEB\\jdupont")
    assert at_b.site is not None  # the request carries the user's site
    elsewhere = subject_of(config, user(emails=emails, **{SORTIE_USER: {"site": "lycee-c"}}))
    assert (elsewhere.upn, elsewhere.windows_account) == ("jd@rectorat.example", None)


def test_rules_pick_the_first_matching_profile() -> None:
    config = ScimConfig.model_validate(
        {
            "profiles": {"full": [], "light": ["revoke_sessions"], "lock": ["block_sign_in"]},
            "deactivate_rules": [
                {"group": "Erasmus", "profile": "light"},
                {"filter": 'userType eq "Contractor"', "profile": "lock"},
            ],
        }
    )
    contractor = user(userType="Contractor")
    assert deactivation_profile(config, contractor, ["erasmus"]) == "light"
    assert deactivation_profile(config, contractor, []) == "lock"
    # No rule matched: the orchestrator's default profile (None here).
    assert deactivation_profile(config, user(), ["Profs"]) is None
    by_site = ScimConfig.model_validate({"site_profiles": {"lycee-a": "pupil-leaves"}})
    pupil = user(**{SORTIE_USER: {"site": "lycee-a"}})
    assert deactivation_profile(by_site, pupil, []) == "pupil-leaves"


def test_effective_at_is_a_future_date_or_now() -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    assert (
        effective_at(ScimConfig(), user(**{SORTIE_USER: {"offboardAt": soon.isoformat()}})) == soon
    )
    past = datetime.now(UTC) - timedelta(days=3)
    assert (
        effective_at(ScimConfig(), user(**{SORTIE_USER: {"offboardAt": past.isoformat()}})) is None
    )
    assert effective_at(ScimConfig(), user()) is None


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"subject": {"upn": ["${shoeSize}"]}}, "shoeSize"),
        ({"profiles": {"full": [], "x": ["format_disk"]}}, "format_disk"),
        ({"deactivate_rules": [{"profile": "full"}]}, "exactly one"),
        ({"deactivate_rules": [{"profile": "full", "filter": "userName zz 1"}]}, "filter"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_mistakes_are_refused(config: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        ScimConfig.model_validate(config)


def test_the_policy_file_is_read_with_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "scim.yaml"
    path.write_text("profiles:\n  full: []\n  light: [revoke_sessions]\ndelete_profile: light\n")
    settings = OrchestratorSettings(redis_url="redis://127.0.0.1:1/0", scim_file=path)  # type: ignore[arg-type]
    assert settings.scim.delete_profile == "light"
    path.write_text("deactivate_profile: gentle\n")
    with pytest.raises(ValidationError, match="no profile named \\['gentle'\\]"):
        OrchestratorSettings(redis_url="redis://127.0.0.1:1/0", scim_file=path)  # type: ignore[arg-type]
    path.write_text("delete_profile: missing\n")
    with pytest.raises(ValidationError, match="missing"):
        OrchestratorSettings(redis_url="redis://127.0.0.1:1/0", scim_file=path)  # type: ignore[arg-type]


def test_a_date_template_on_a_text_attribute_gives_a_clear_error() -> None:
    config = ScimConfig.model_validate({"effective_at": ["${title}"]})
    with pytest.raises(ValueError, match="not an ISO 8601 date-time"):
        effective_at(config, user(title="end of June"))
