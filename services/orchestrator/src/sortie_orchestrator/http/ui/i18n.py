"""Languages of the pages: gettext catalogues (Babel), the language a browser asks for,
and dates in the deployment's time zone with their offset.

The catalogues are `locale/<lang>/LC_MESSAGES/messages.po`, English message ids; they are
compiled in memory when first used, so no compiled `.mo` can drift from its `.po`.
After changing a text, `scripts/i18n.sh` extracts the texts (pybabel, babel.cfg) and
merges them into each `.po`; translate the new ones; tests/orchestrator/statuspage/test_i18n.py fails
while a text is missing or untranslated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from starlette.requests import Request

from sortie_orchestrator.http.ui import appnames

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("fr", "en")


def N_(message: str) -> str:
    """Marks a text for extraction; translated where it is shown."""
    return message


@cache
def translations(lang: str) -> Translations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf)


def negotiate(accept_language: str | None, default: str) -> str:
    """The supported language the browser prefers most (RFC 9110 §12.5.4 weights)."""
    best, best_q = default, 0.0
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        # Equal weights keep the browser's order.
        weight = q - position * 1e-6
        if primary in LANGUAGES and q > 0 and weight > best_q:
            best, best_q = primary, weight
    return best


@dataclass(frozen=True)
class L10n:
    """One page's language and time zone, and the names of the ENT's applications."""

    lang: str
    tz: ZoneInfo
    app_names: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def tr(self) -> Translations:
        return translations(self.lang)

    def gettext(self, message: str) -> str:
        return self.tr.gettext(message)

    def when(self, dt: datetime | None) -> str:
        """`1 déc. 2026, 12:20:15 (UTC+01:00)`: local time, with the offset said."""
        if dt is None:
            return "—"
        local = format_datetime(dt, "medium", tzinfo=self.tz, locale=self.lang)
        offset = format_datetime(dt, "xxx", tzinfo=self.tz, locale=self.lang)
        return f"{local} (UTC{offset})"

    def number(self, value: float, digits: int = 3) -> str:
        return format_decimal(round(value, digits), locale=self.lang)

    def app(self, name: str) -> str:
        """An application's display name in this language, or its registry name."""
        names = self.app_names.get(name, {})
        return names.get(self.lang) or names.get("") or name


def from_request(request: Request) -> L10n:
    """The page's language from Accept-Language, the deployment's zone and app names."""
    state = request.app.state
    settings = state.settings
    names = getattr(state, "app_names", None)
    if names is None:
        names = state.app_names = appnames.load(
            settings.ent_registry_path, settings.app_display_names
        )
    lang = negotiate(request.headers.get("accept-language"), settings.default_language)
    return L10n(lang=lang, tz=ZoneInfo(settings.time_zone), app_names=names)
