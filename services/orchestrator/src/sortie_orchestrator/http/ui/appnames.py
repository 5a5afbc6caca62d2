"""Display names of the ENT's applications ("Escada", "Pronote…"), for the pages.

They come from the ENT worker's own registry file (`display_name`, a text or one per
language), read here with a loader of our own, since services never import each other;
only `applications[].name` and `display_name` are read. The setting `app_display_names`
adds or overrides names without a registry file. `""` keys the name for any language."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

Names = dict[str, dict[str, str]]


def _as_names(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        return {"": value[:100]}
    if isinstance(value, dict):
        return {str(k).lower(): str(v)[:100] for k, v in value.items() if isinstance(v, str)}
    return {}


def from_registry(text: str) -> Names:
    data = yaml.safe_load(text) or {}
    apps = data.get("applications") if isinstance(data, dict) else None
    names: Names = {}
    for app in apps if isinstance(apps, list) else []:
        if isinstance(app, dict) and isinstance(app.get("name"), str):
            found = _as_names(app.get("display_name"))
            if found:
                names[app["name"]] = found
    return names


def load(path: Path | None, overrides: dict[str, Any]) -> Names:
    names: Names = {}
    if path is not None:
        try:
            names = from_registry(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            # The names are cosmetic: the pages fall back to the registry names.
            log.warning("cannot read application names from %s: %s", path, exc)
    for app, value in overrides.items():
        names[app] = {**names.get(app, {}), **_as_names(value)}
    return names
