"""The application registry: which ENT applications exist and how each logs a user out.

Loaded once from YAML (see `registry.example.yaml`) and validated strictly. It is also
Sortie's allow-list: a service URL that arrives in an event is called only when it
matches a `service_urls` entry (scheme, host and port exactly, path by prefix) or fully
matches a `service_patterns` regular expression of a `cas_slo` application (no SSRF).
A pattern's host must be literal, its dots escaped: `https://ent.school.example/.*` would
also match `https://entXschool.example/`, so it is refused at load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

UNREGISTERED = "unregistered"
# How many service URLs an application, and the registry, remember the answer for (a
# request's tickets are matched when discovered, planned and sent): emptied when full.
MATCH_CACHE_SIZE = 4096
PLACEHOLDERS = ("cas_username", "user_id")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Step names are `app_logout:<name>`, and step names are lower-case identifiers.
AppName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")]


class AppProtocol(StrEnum):
    CAS_SLO = "cas_slo"  # SAML LogoutRequest POSTed to the service URL of each ticket
    HTTP = "http"  # a plain HTTP endpoint that logs a user out by identity
    OIDC_BCL = "oidc_bcl"  # a signed logout token POSTed to the back-channel logout URI


def is_plain_http_url(url: str) -> bool:
    """http(s), a host, no credentials, no whitespace or backslash tricks."""
    if any(c.isspace() or c == "\\" for c in url):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def _host_dots_escaped(pattern: str) -> bool:
    """Whether the host part of a pattern (after `://`, up to the first `/`) has no
    unescaped `.` (which would match any character)."""
    _, sep, rest = pattern.partition("://")
    if not sep:
        return False
    i = 0
    while i < len(rest) and rest[i] != "/":
        if rest[i] == "\\":
            i += 2
            continue
        if rest[i] == ".":
            return False
        i += 1
    return True


def _url_prefix(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def url_host(url: str) -> str:
    """The host of `url`, for reports: never the path or query (they may hold tickets)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    return host or "an unparsable URL"


class Application(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: AppName
    protocol: AppProtocol
    # URL prefixes: scheme, host and port must be equal, the path must start with the
    # prefix's path (`https://esper.ent.example.org/` covers that host's every path).
    service_urls: tuple[str, ...] = ()
    # Regular expressions, each matched against the whole service URL; the host literal,
    # dots escaped (`https://esper\.ent\.example\.org/.*`).
    service_patterns: tuple[str, ...] = ()
    # Time limit of this application's step, retries included (default: app_timeout_s).
    timeout_s: Annotated[float, Field(gt=0, le=300)] | None = None
    # `http` only: the identity logout call. `{cas_username}` and `{user_id}` are
    # replaced in `logout_url` (URL-escaped) and in `body_template` (escaped for the
    # body's content type: JSON, form or text).
    logout_url: str | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    body_template: str | None = None
    # Name of the environment variable holding a bearer token for this application.
    token_env: EnvName | None = None
    # `oidc_bcl` only: where the logout token is POSTed, and the application's OpenID
    # Connect client id (the token's `aud`).
    backchannel_logout_uri: str | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    # What the pages call it ("Escada"), one text or one per language ({"fr": …, "en": …}):
    # read by the orchestrator from this same file (its appnames.py); unused here.
    display_name: (
        Annotated[str, Field(min_length=1, max_length=100)]
        | dict[Annotated[str, Field(pattern=r"^[a-z]{2}$")], Annotated[str, Field(max_length=100)]]
        | None
    ) = None

    _compiled: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _prefixes: tuple[tuple[str, str, int, str], ...] = PrivateAttr(default=())
    # Set in model_post_init: a default_factory costs pydantic an inspect.signature call
    # on every instance.
    _matched: dict[str, bool] = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == UNREGISTERED:
            raise ValueError(f"{UNREGISTERED!r} is reserved for service URLs outside the registry")
        return name

    @field_validator("service_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid service pattern {pattern!r}: {exc}") from exc
            if not _host_dots_escaped(pattern):
                raise ValueError(
                    f"service pattern {pattern!r} needs a literal host with escaped dots"
                    r" (`https://ent\.school\.example/.*`), or use service_urls"
                )
        return patterns

    @field_validator("service_urls")
    @classmethod
    def _plain_prefixes(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url) if is_plain_http_url(url) else None
            if parts is None or parts.query or parts.fragment or "{" in url:
                raise ValueError(f"service URL {url!r} must be a plain http(s) URL prefix")
        return urls

    @field_validator("headers")
    @classmethod
    def _header_values(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} holds a line break")
        return headers

    @model_validator(mode="after")
    def _fits_protocol(self) -> Application:
        if self.protocol is AppProtocol.CAS_SLO and not (
            self.service_patterns or self.service_urls
        ):
            raise ValueError(
                f"{self.name}: a cas_slo application needs service_urls or service_patterns"
            )
        if self.protocol is AppProtocol.HTTP:
            if not self.logout_url:
                raise ValueError(f"{self.name}: an http application needs logout_url")
            plain = self.logout_url.replace("{", "").replace("}", "")
            if not is_plain_http_url(plain) or "{" in urlsplit(self.logout_url).netloc:
                # Placeholders may fill the path or query, never the host.
                raise ValueError(f"{self.name}: logout_url must be a plain http(s) URL")
        uri = self.backchannel_logout_uri
        if uri is not None and (not is_plain_http_url(uri) or "{" in uri):
            raise ValueError(f"{self.name}: backchannel_logout_uri must be a plain http(s) URL")
        for text in (self.logout_url or "", self.body_template or ""):
            for found in _PLACEHOLDER_RE.findall(text):
                if found not in PLACEHOLDERS:
                    raise ValueError(
                        f"{self.name}: unknown placeholder {{{found}}} "
                        f"(known: {', '.join(PLACEHOLDERS)})"
                    )
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._compiled = tuple(re.compile(p) for p in self.service_patterns)
        self._prefixes = tuple(_url_prefix(u) for u in self.service_urls)
        self._matched = {}

    @property
    def action(self) -> str:
        return f"app_logout:{self.name}"

    @property
    def audience(self) -> str:
        """The logout token's `aud`: the client id, by default the application's name."""
        return self.client_id or self.name

    @property
    def by_identity(self) -> bool:
        """Logged out by who the user is, not by the tickets of a session."""
        return self.protocol in (AppProtocol.HTTP, AppProtocol.OIDC_BCL)

    def matches(self, url: str) -> bool:
        return _remembered(self._matched, url, self._match)

    def _match(self, url: str) -> bool:
        if not is_plain_http_url(url) or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            return False
        if any(p.fullmatch(url) for p in self._compiled):
            return True
        scheme, host, port, path = _url_prefix(url)
        if any(seg in (".", "..") for seg in path.split("/")) or "%2e" in path.lower():
            return False  # `/esper/../admin` is not under `/esper/`
        return any(
            (scheme, host, port) == (s, h, p) and path.startswith(prefix)
            for s, h, p, prefix in self._prefixes
        )


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    applications: tuple[Application, ...] = ()

    # service URL -> the index of its application in `applications`, -1 for none.
    _matched: dict[str, int] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._matched = {}

    @model_validator(mode="after")
    def _unique_names(self) -> Registry:
        seen: set[str] = set()
        for app in self.applications:
            if app.name in seen:
                raise ValueError(f"application {app.name!r} is listed twice")
            seen.add(app.name)
        return self

    def match(self, service_url: str) -> Application | None:
        """The first application, in file order, whose patterns match the whole URL."""
        index = _remembered(self._matched, service_url, self._first_match)
        return self.applications[index] if index >= 0 else None

    def _first_match(self, service_url: str) -> int:
        return next((i for i, a in enumerate(self.applications) if a.matches(service_url)), -1)

    @property
    def identity_apps(self) -> tuple[Application, ...]:
        return tuple(a for a in self.applications if a.by_identity)


def _remembered(memo: dict[str, Any], url: str, compute: Callable[[str], Any]) -> Any:
    """`compute(url)`, remembered in `memo` (emptied when it holds MATCH_CACHE_SIZE)."""
    if url not in memo:
        if len(memo) >= MATCH_CACHE_SIZE:
            memo.clear()
        memo[url] = compute(url)
    return memo[url]


def parse_registry(text: str) -> Registry:
    data = yaml.safe_load(text)
    if data is None:
        return Registry()
    return Registry.model_validate(data)


def load_registry(path: Path) -> Registry:
    return parse_registry(path.read_text(encoding="utf-8"))
