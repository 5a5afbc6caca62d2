"""Reading the logout messages an ENT application receives, the way a strict client does.

* CAS single logout: a SAML 2 `LogoutRequest` whose `SessionIndex` is the service ticket
  (https://apereo.github.io/cas/development/installation/Logout-Single-Signout.html).
* OpenID Connect Back-Channel Logout 1.0: a `logout_token` JWT
  (https://openid.net/specs/openid-connect-backchannel-1_0.html#LogoutToken). Its
  structure and claims are checked here as section 2.6 says; the signature, `iss`, `aud`
  and times by `entapps_oidc` when the simulator knows the issuer's JWKS.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape, quoteattr

import defusedxml
from defusedxml.ElementTree import fromstring

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class InvalidLogoutMessage(ValueError):
    """The message is missing, malformed or refused; the text says why."""


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    name_id: str | None
    session_index: str


def parse_logout_request(xml: str | bytes) -> LogoutRequest:
    raw = xml.encode() if isinstance(xml, str) else xml
    if not raw.strip():
        raise InvalidLogoutMessage("empty logoutRequest")
    # Refused outright: a DTD is how entity-expansion and external-entity attacks start.
    if _DTD.search(raw):
        raise InvalidLogoutMessage("DOCTYPE and ENTITY declarations are refused")
    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, defusedxml.DefusedXmlException) as exc:
        raise InvalidLogoutMessage(f"malformed logoutRequest: {exc}") from exc
    if root.tag != f"{{{SAMLP}}}LogoutRequest":
        raise InvalidLogoutMessage(f"expected samlp:LogoutRequest, got {root.tag}")
    index = root.find(f"{{{SAMLP}}}SessionIndex")
    if index is None or not (index.text or "").strip():
        raise InvalidLogoutMessage("samlp:SessionIndex is missing or empty")
    name = root.find(f"{{{SAML}}}NameID")
    name_id = (name.text or "").strip() if name is not None else ""
    return LogoutRequest(name_id=name_id or None, session_index=index.text.strip())


@dataclass(frozen=True, slots=True)
class LogoutToken:
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def sub(self) -> str | None:
        return self.claims.get("sub") or None

    @property
    def sid(self) -> str | None:
        return self.claims.get("sid") or None


def _b64url_json(part: str, what: str) -> dict[str, Any]:
    try:
        decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(decoded)
    except (binascii.Error, ValueError) as exc:
        raise InvalidLogoutMessage(f"logout_token {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise InvalidLogoutMessage(f"logout_token {what} is not a JSON object")
    return value


def parse_logout_token(token: str) -> LogoutToken:
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidLogoutMessage("logout_token is not a compact JWS (header.payload.signature)")
    header = _b64url_json(parts[0], "header")
    claims = _b64url_json(parts[1], "payload")
    events = claims.get("events")
    if not isinstance(events, dict) or BACKCHANNEL_LOGOUT_EVENT not in events:
        raise InvalidLogoutMessage(f"events must contain {BACKCHANNEL_LOGOUT_EVENT}")
    if "nonce" in claims:
        raise InvalidLogoutMessage("a logout token must not contain a nonce")
    for claim in ("sub", "sid"):
        if claim in claims and not isinstance(claims[claim], str):
            raise InvalidLogoutMessage(f"{claim} must be a string")
    if not claims.get("sub") and not claims.get("sid"):
        raise InvalidLogoutMessage("a logout token needs sub or sid")
    return LogoutToken(header=header, claims=claims)


def logout_request_xml(session_index: str, name_id: str, request_id: str, issued_at: str) -> str:
    """A CAS-style LogoutRequest, as a CAS server sends it (handy for tests and tools)."""
    return (
        f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" '
        f'ID={quoteattr(request_id)} Version="2.0" IssueInstant={quoteattr(issued_at)}>'
        f"<saml:NameID>{escape(name_id)}</saml:NameID>"
        f"<samlp:SessionIndex>{escape(session_index)}</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )
