"""Offboarding profiles as configured: built-ins, a site's file, and what is refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sortie_orchestrator.profiles import Profiles, load
from sortie_orchestrator.settings import OrchestratorSettings


def test_built_ins_are_there_in_order() -> None:
    profiles = Profiles()
    assert {"full", "staff-leaves", "pupil-leaves", "suspend"} <= set(profiles.profiles)
    name, staff = profiles.get("staff-leaves")
    assert name == "staff-leaves"
    first, licences, hidden = staff.phases
    assert first.actions[:4] == [
        "block_sign_in",
        "reset_password",
        "revoke_sessions",
        "disable_mail_protocols",
    ]
    assert licences.after == timedelta(days=30) and "remove_licenses" in licences.actions
    assert hidden.actions == ["hide_from_address_lists"]
    assert "reset_password" not in profiles.get("suspend")[1].phases[0].actions
    assert profiles.get(None)[0] == "full"  # the built-in default: DESIGN.md's offboarding


def test_a_site_file_adds_profiles_and_sets_the_default(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "default: teachers\n"
        "profiles:\n"
        "  teachers:\n"
        "    description: Teacher leaving\n"
        "    phases:\n"
        "      - actions: [block_sign_in, set_auto_reply]\n"
        "        options: {set_auto_reply: {message: Parti}}\n"
        "      - after: P7D\n"
        "        actions: [remove_licenses]\n",
        encoding="utf-8",
    )
    settings = OrchestratorSettings(profiles_file=path)  # type: ignore[call-arg]
    name, teachers = settings.profiles.get(None)
    assert name == "teachers"
    assert teachers.phases[0].options == {"set_auto_reply": {"message": "Parti"}}
    assert teachers.phases[1].after == timedelta(days=7)
    assert "staff-leaves" in settings.profiles.profiles  # built-ins stay
    assert load(path).default == "teachers"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ({"default": "nope"}, "default profile 'nope' is not defined"),
        ({"profiles": {"x": {"phases": [{"actions": ["fly"]}]}}}, "unknown actions ['fly']"),
        ({"profiles": {"x": {"phases": [{"after": 5, "actions": ["block_sign_in"]}]}}}, "phase 0"),
        (
            {
                "profiles": {
                    "x": {
                        "phases": [
                            {"actions": ["block_sign_in"]},
                            {"after": 5, "actions": ["logoff"]},
                        ]
                    }
                }
            },
            "can run in phase 0 only",
        ),
        (
            {
                "profiles": {
                    "x": {
                        "phases": [
                            {"actions": ["remove_licenses"]},
                            {"after": 5, "actions": ["remove_licenses"]},
                        ]
                    }
                }
            },
            "repeats",
        ),
        (
            {
                "profiles": {
                    "x": {
                        "phases": [
                            {"actions": ["block_sign_in"]},
                            {"after": 9, "actions": ["remove_licenses"]},
                            {"after": 5, "actions": ["hide_from_address_lists"]},
                        ]
                    }
                }
            },
            "must come after",
        ),
        (
            {
                "profiles": {
                    "x": {
                        "phases": [
                            {"actions": ["block_sign_in"], "options": {"set_auto_reply": {}}}
                        ]
                    }
                }
            },
            "options for actions the phase does not name",
        ),
    ],
)
def test_mistakes_are_refused(raw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why.replace("[", r"\[").replace("]", r"\]")):
        Profiles.model_validate(raw)
