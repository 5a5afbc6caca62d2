"""The application registry: the example file, validation, and URL matching."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sortie_ent.registry import MATCH_CACHE_SIZE, AppProtocol, load_registry, parse_registry

EXAMPLE = Path(__file__).parents[2] / "services" / "ent-worker" / "registry.example.yaml"


def test_example_registry_loads() -> None:
    registry = load_registry(EXAMPLE)
    protocols = {a.name: a.protocol for a in registry.applications}
    assert protocols == {
        "esper": AppProtocol.CAS_SLO,
        "escada": AppProtocol.CAS_SLO,
        "mer": AppProtocol.HTTP,
        "ism": AppProtocol.OIDC_BCL,
    }
    assert registry.match("https://esper.ent.example.org/accueil")
    assert [a.name for a in registry.identity_apps] == ["mer", "ism"]
    ism = next(a for a in registry.applications if a.name == "ism")
    assert ism.audience == "ism"
    assert ism.backchannel_logout_uri == "http://127.0.0.1:8103/ism/oidc/backchannel-logout"


def test_empty_file_is_an_empty_registry() -> None:
    assert parse_registry("").applications == ()


@pytest.mark.parametrize(
    ("yaml_text", "complaint"),
    [
        (
            "applications: [{name: a, protocol: cas_slo, service_urls: ['https://x/']},"
            " {name: a, protocol: cas_slo, service_urls: ['https://y/']}]",
            "listed twice",
        ),
        ("applications: [{name: a, protocol: cas_slo, service_patterns: ['(']}]", "invalid"),
        ("applications: [{name: a, protocol: cas_slo}]", "service_patterns"),
        # An unescaped dot in the host would match any character.
        (
            "applications: [{name: a, protocol: cas_slo,"
            " service_patterns: ['https://ent.school.example/.*']}]",
            "escaped dots",
        ),
        ("applications: [{name: a, protocol: cas_slo, service_patterns: ['.*']}]", "escaped"),
        (
            "applications: [{name: a, protocol: cas_slo,"
            " service_urls: ['https://ent.school.example/?a=1']}]",
            "plain http",
        ),
        ("applications: [{name: a, protocol: http}]", "logout_url"),
        (
            "applications: [{name: a, protocol: oidc_bcl,"
            " backchannel_logout_uri: 'https://u:p@x/'}]",
            "backchannel_logout_uri",
        ),
        ("applications: [{name: a, protocol: http, logout_url: 'ftp://x/'}]", "plain http"),
        (
            "applications: [{name: a, protocol: http, logout_url: 'https://{user_id}.x/'}]",
            "plain http",
        ),
        (
            "applications: [{name: a, protocol: http, logout_url: 'https://x/',"
            " body_template: '{password}'}]",
            "unknown placeholder",
        ),
        (
            "applications: [{name: unregistered, protocol: cas_slo, service_patterns: [x]}]",
            "reserved",
        ),
        ("applications: [{name: Big App, protocol: cas_slo, service_patterns: [x]}]", "pattern"),
        ("applications: [{name: a, protocol: saml, service_patterns: [x]}]", "protocol"),
        ("applications: [{name: a, protocol: cas_slo, service_patterns: [x], urls: 1}]", "urls"),
        (
            "applications: [{name: a, protocol: http, logout_url: 'https://x/',"
            ' headers: {X-A: "b\\r\\nX-Evil: 1"}}]',
            "line break",
        ),
    ],
)
def test_invalid_registries_are_refused(yaml_text: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        parse_registry(yaml_text)


def test_patterns_match_the_whole_url_only() -> None:
    registry = parse_registry(
        r"applications: [{name: esper, protocol: cas_slo,"
        r" service_patterns: ['https://esper\.ent\.test/.*']}]"
    )
    assert registry.match("https://esper.ent.test/")
    assert registry.match("https://esper.ent.test/a?b=c")
    assert registry.match("https://esper.ent.test.evil.net/") is None
    assert registry.match("http://esper.ent.test/") is None
    assert registry.match("xhttps://esper.ent.test/") is None


def test_urls_with_credentials_or_odd_characters_never_match() -> None:
    # A sloppy pattern (no slash after the host) must still not let another host in.
    registry = parse_registry(
        r"applications: [{name: esper, protocol: cas_slo,"
        r" service_patterns: ['https://esper\.ent\.test(:443)?(/.*)?']}]"
    )
    assert registry.match("https://esper.ent.test/x")
    assert registry.match("https://esper.ent.test@evil.net/") is None
    assert registry.match("https://esper.ent.test\\@evil.net/") is None
    assert registry.match("https://esper.ent.test /") is None
    assert registry.match("https://esper.ent.test:99999/") is None


def test_structured_entries_match_scheme_host_port_and_path_prefix() -> None:
    registry = parse_registry(
        "applications: [{name: esper, protocol: cas_slo,"
        " service_urls: ['https://ent.school.example/esper/', 'http://127.0.0.1:8103/e/']}]"
    )
    for url in (
        "https://ent.school.example/esper/",
        "https://ENT.school.example:443/esper/login?ticket=x",
        "http://127.0.0.1:8103/e/x",
    ):
        assert registry.match(url), url
    for url in (
        "https://entXschool.example/esper/",
        "https://ent.school.example.evil.net/esper/",
        "http://ent.school.example/esper/",
        "https://ent.school.example:8443/esper/",
        "https://ent.school.example/other/",
        "https://ent.school.example/esper/../admin",
        "https://ent.school.example/esper/%2E%2E/admin",
        "https://ent.school.example/esper/\x01",
        "https://ent.school.example/esper/\x7f",
        "http://127.0.0.1:8104/e/x",
    ):
        assert registry.match(url) is None, url


def test_the_shipped_registries_load() -> None:
    from pathlib import Path

    from sortie_ent.registry import load_registry

    root = Path(__file__).resolve().parents[2]
    for path in ("deploy/ent-registry.yaml", "services/ent-worker/registry.example.yaml"):
        registry = load_registry(root / path)
        assert registry.match("https://esper.ent.example.org/x"), path
        assert registry.match("https://esperXent.example.org/x") is None, path


def test_first_matching_application_wins() -> None:
    registry = parse_registry(
        "applications:\n"
        "  - {name: one, protocol: cas_slo, service_patterns: ['https://a\\.test/x/.*']}\n"
        "  - {name: two, protocol: cas_slo, service_patterns: ['https://a\\.test/.*']}\n"
    )
    found = registry.match("https://a.test/x/1")
    assert found is not None and found.name == "one"
    found = registry.match("https://a.test/y")
    assert found is not None and found.name == "two"


def test_a_remembered_answer_is_the_answer() -> None:
    """Answers are remembered per URL (a ticket is matched when discovered, planned and
    sent), up to MATCH_CACHE_SIZE URLs; past that the memory starts again."""
    registry = parse_registry(
        "applications:\n"
        "  - name: one\n    protocol: cas_slo\n    service_urls: ['https://a.test/x/']\n"
    )
    app = registry.applications[0]
    urls = ["https://a.test/x/1", "https://a.test/x/../y", "https://a.test/y", "https://b.test/x/"]
    first = [(app.matches(u), registry.match(u)) for u in urls]
    assert first == [(True, app), (False, None), (False, None), (False, None)]
    for n in range(MATCH_CACHE_SIZE + 10):
        assert registry.match(f"https://a.test/x/{n}") is app
    assert [(app.matches(u), registry.match(u)) for u in urls] == first
    assert len(app._matched) <= MATCH_CACHE_SIZE and len(registry._matched) <= MATCH_CACHE_SIZE
