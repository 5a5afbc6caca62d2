"""The pages' languages: the catalogues hold every text of the code and templates, French
translates them all with the same placeholders; Accept-Language; dates in the deployment's
zone with the offset; plain names of steps and proofs; application display names."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po
from pydantic import ValidationError

from sortie_core.events import Outcome, SkipReason, StepError, StepResult, Verification
from sortie_ent.registry import load_registry
from sortie_orchestrator.http.ui import appnames, errors, i18n, labels
from sortie_orchestrator.http.ui.i18n import L10n, negotiate
from sortie_orchestrator.settings import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "services/orchestrator/src/sortie_orchestrator"
REGISTRY = ROOT / "deploy/ent-registry.yaml"
PARIS = ZoneInfo("Europe/Paris")
FR = L10n("fr", PARIS, appnames.from_registry(REGISTRY.read_text()))
EN = L10n("en", PARIS, FR.app_names)


def source_texts() -> set[str]:
    found = extract_from_dir(
        str(PACKAGE),
        method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
        keywords={**DEFAULT_KEYWORDS, "N_": None},
    )
    return {msg if isinstance(msg, str) else msg[0] for _file, _line, msg, _c, _ctx in found}


def catalog(lang: str):  # type: ignore[no-untyped-def]
    with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=lang)


def test_catalogues_hold_every_text_and_french_translates_them_all() -> None:
    texts = source_texts()
    assert len(texts) > 100
    for lang in i18n.LANGUAGES:
        ids = {m.id for m in catalog(lang) if m.id}
        assert ids == texts, (
            f"{lang}: run scripts/i18n.sh (missing {texts - ids}, stale {ids - texts})"
        )
    fr = catalog("fr")
    untranslated = [m.id for m in fr if m.id and (not m.string or m.fuzzy)]
    assert untranslated == []
    # Placeholders (python-format) match between each text and its translation.
    assert list(fr.check()) == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "fr"),
        ("", "fr"),
        ("en-GB,en;q=0.9", "en"),
        ("de-DE,de;q=0.9,en;q=0.8,fr;q=0.7", "en"),
        ("de-DE,fr-CA;q=0.5,en;q=0.4", "fr"),
        ("es", "fr"),
        ("en;q=0,fr;q=0.1", "fr"),
        ("fr;q=bogus,en", "en"),
        ("*", "fr"),
    ],
)
def test_the_language_is_the_one_the_browser_prefers(header: str | None, expected: str) -> None:
    assert negotiate(header, "fr") == expected


def test_the_default_language_applies_when_nothing_matches() -> None:
    assert negotiate("es-ES,de", "en") == "en"
    assert negotiate("es-ES,de", "fr") == "fr"


def test_dates_are_local_with_their_offset() -> None:
    winter = datetime(2026, 1, 15, 10, 0, 5, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 10, 0, 5, tzinfo=UTC)
    assert FR.when(winter) == "15 janv. 2026, 11:00:05 (UTC+01:00)"
    assert FR.when(summer) == "15 juil. 2026, 12:00:05 (UTC+02:00)"
    assert EN.when(summer).startswith("Jul 15, 2026, 12:00:05")
    assert EN.when(summer).endswith("PM (UTC+02:00)")
    assert L10n("fr", ZoneInfo("America/Cayenne")).when(winter).endswith("07:00:05 (UTC-03:00)")
    assert FR.when(None) == "—"
    assert FR.number(2.0815) == "2,082" and EN.number(2.0815) == "2.082"


def test_steps_and_proofs_have_plain_names() -> None:
    assert labels.step_name(FR, "m365", "revoke_sessions") == "Déconnexion de Microsoft 365"
    assert labels.step_name(FR, "workstation:pc-101", "logoff") == (
        "Fermeture de la session sur pc-101"
    )
    assert labels.step_name(FR, "sso", "destroy_sso_session") == (
        "Session ENT (CAS) fermée en dernier"
    )
    assert labels.step_name(FR, "ent", "app_logout:esper") == "Déconnexion de l'application Esper"
    assert labels.step_name(FR, "ent", "app_logout:mer") == (
        "Déconnexion de l'application Ressources MER"
    )
    assert labels.step_name(EN, "ent", "app_logout:mer") == "Signing out of MER resources"
    assert labels.step_name(FR, "ent", "app_logout:pronote") == (
        "Déconnexion de l'application pronote"
    )
    assert labels.step_name(FR, "x", "something_new") == "something_new"
    assert labels.service_name(FR, "workstation:pc-7") == "Poste pc-7"
    now = datetime.now(UTC)

    def step(**kw: object) -> StepResult:
        return StepResult(action="a", started_at=now, finished_at=now, **kw)  # type: ignore[arg-type]

    ok = step(outcome=Outcome.SUCCEEDED, verification=Verification.VERIFIED)
    ack = step(outcome=Outcome.SUCCEEDED, verification=Verification.ACKNOWLEDGED)
    unverified = step(outcome=Outcome.SUCCEEDED)
    policy = step(outcome=Outcome.SKIPPED, skip_reason=SkipReason.GUEST_BY_POLICY)
    missing = step(outcome=Outcome.SKIPPED, skip_reason=SkipReason.NOT_CONFIGURED)
    error = StepError(code="http_503", message="down", retryable=True)
    failed = step(outcome=Outcome.FAILED, error=error)
    timed = step(outcome=Outcome.TIMED_OUT, error=StepError(code="timed_out", message="x"))
    assert [labels.proof(FR, s) for s in (ok, ack, unverified, policy, missing, failed, timed)] == [
        "Vérifié",
        "Accusé de réception",
        "Non vérifié",
        "Ignorée (compte invité)",
        "Ignorée sans raison de politique (non configurée)",
        "Échec (http_503)",
        "Délai dépassé",
    ]
    assert labels.proof(EN, ack) == "Acknowledged"
    assert labels.outcome(FR, "not_found") == "Rien à fermer"
    assert labels.status(FR, "completed") == "Terminée"
    assert labels.detail(FR, failed) == "http_503: down"
    lapsed = step(
        outcome=Outcome.UNREACHABLE,
        error=StepError(code="unreachable", message="agent heartbeat lapsed"),
    )
    assert labels.detail(FR, lapsed) == "l'agent du poste ne répond plus"


@pytest.mark.parametrize(
    ("code", "french"),
    [
        ("graph_throttled", "Microsoft Graph a demandé à Sortie de ralentir"),
        ("cas_timeout", "le serveur CAS n'a pas répondu à temps"),
        ("app_unreachable", "l'application est injoignable"),
        ("backend_unavailable", "le service de sessions du poste est indisponible"),
        ("graph_http_409", "Microsoft Graph a refusé la requête"),
        ("identity_unresolved", "le compte Microsoft 365 n'a pas pu être identifié avec certitude"),
        (
            "not_verified",
            "la relecture contredit le résultat : l'accès est peut-être encore ouvert",
        ),
    ],
)
def test_a_workers_error_is_explained_in_the_pages_language_then_quoted(
    code: str, french: str
) -> None:
    """The worker's message stays as it wrote it (English, for support), after what its
    code means."""
    now = datetime.now(UTC)
    error = StepError(code=code, message="Graph (revoke) answered HTTP 429", retryable=True)
    failed = StepResult(
        action="revoke_sessions",
        outcome=Outcome.FAILED,
        started_at=now,
        finished_at=now,
        error=error,
    )
    assert labels.detail(FR, failed) == f"{french} ({code}: Graph (revoke) answered HTTP 429)"
    assert not labels.detail(EN, failed).startswith(french)
    assert labels.detail(EN, failed).endswith(f"({code}: Graph (revoke) answered HTTP 429)")


def test_every_explained_code_is_one_a_component_raises() -> None:
    """No stale entry: each fixed code `errors` explains is raised somewhere."""
    raised: set[str] = set()
    for src in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        raised |= set(re.findall(r'code="([a-z0-9_]+)"', src.read_text()))
    assert set(errors.CODES) <= raised, set(errors.CODES) - raised


def test_an_unknown_error_code_is_quoted_as_it_is() -> None:
    now = datetime.now(UTC)
    for code in ("graph_something_new", "zz_timeout", "http_503"):
        error = StepError(code=code, message="m", retryable=False)
        failed = StepResult(
            action="a", outcome=Outcome.FAILED, started_at=now, finished_at=now, error=error
        )
        assert labels.detail(FR, failed) == f"{code}: m"


def test_display_names_come_from_the_registry_and_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = appnames.load(REGISTRY, {"esper": {"en": "Esper (English)"}, "ism": "ISM+"})
    assert names["esper"] == {"": "Esper", "en": "Esper (English)"}
    assert names["mer"] == {"fr": "Ressources MER", "en": "MER resources"}
    assert names["ism"] == {"": "ISM+"}
    t = L10n("fr", PARIS, names)
    assert (t.app("esper"), L10n("en", PARIS, names).app("esper")) == ("Esper", "Esper (English)")
    assert t.app("unknown") == "unknown"
    # The ENT worker reads the same file, display names and all.
    assert {a.name for a in load_registry(REGISTRY).applications} >= {"esper", "mer", "ism"}
    broken = tmp_path / "broken.yaml"
    broken.write_text("applications: [\n")
    with caplog.at_level(logging.WARNING):
        assert appnames.load(broken, {}) == {}
        assert appnames.load(tmp_path / "absent.yaml", {"a": "A"}) == {"a": {"": "A"}}
    assert "cannot read application names" in caplog.text
    assert appnames.from_registry("applications: [{name: x, display_name: 3}, 7]") == {}


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        OrchestratorSettings(redis_url="redis://127.0.0.1:1/0", time_zone="Mars/Olympus")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        OrchestratorSettings(redis_url="redis://127.0.0.1:1/0", default_language="de")  # type: ignore[arg-type]
