"""The CAS single-logout message: a SAML 2 `LogoutRequest` naming the service ticket.

Format as CAS sends it (https://apereo.github.io/cas/development/installation/Logout-Single-Signout.html):
POSTed as the form field `logoutRequest` to the service URL; the application finds its
session by the ticket in `SessionIndex`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr


def logout_request(
    name_id: str,
    session_index: str,
    *,
    now: datetime | None = None,
    request_id: str | None = None,
) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    rid = request_id or f"LR-{uuid.uuid4()}"
    instant = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"'
        ' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
        f' ID={quoteattr(rid)} Version="2.0" IssueInstant={quoteattr(instant)}>'
        f"<saml:NameID>{escape(name_id)}</saml:NameID>"
        f"<samlp:SessionIndex>{escape(session_index)}</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )
