"""CAS single logout: the message, a SAML 2 `LogoutRequest` naming the service ticket,
and the delivery of one application's messages, each ticket reported on its own.

Format as CAS sends it (https://apereo.github.io/cas/development/installation/Logout-Single-Signout.html):
POSTed as the form field `logoutRequest` to the service URL; the application finds its
session by the ticket in `SessionIndex`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from sortie_core.errors import PermanentError, SortieError, TransientError
from sortie_core.events import Outcome, ServiceTicket, StepError, StepItem, Subject

from .adapters import AppLogout
from .discovery import ticket_ref
from .registry import Application

log = logging.getLogger(__name__)

# StepResult.items holds at most this many.
MAX_ITEMS = 200


def logout_request(
    name_id: str,
    session_index: str,
    *,
    now: datetime | None = None,
    request_id: str | None = None,
) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    # A generated ID and the instant hold nothing to escape (quoteattr would return them
    # quoted as is); a given ID is escaped.
    rid = quoteattr(request_id) if request_id else f'"LR-{uuid.uuid4()}"'
    instant = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"'
        ' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
        f' ID={rid} Version="2.0" IssueInstant="{instant}">'
        f"<saml:NameID>{escape(name_id)}</saml:NameID>"
        f"<samlp:SessionIndex>{escape(session_index)}</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )


class SloTickets:
    """The single logouts of one application, each ticket tried and reported on its own:
    a failing ticket never stops the others; a retry sends only the tickets whose last
    try failed for a transient reason."""

    def __init__(
        self,
        apps: AppLogout,
        app: Application,
        subject: Subject,
        tickets: Sequence[ServiceTicket],
        timeout_s: float,
    ) -> None:
        self._apps, self._app, self._subject = apps, app, subject
        self._tickets = tuple(tickets)
        self._timeout_s = timeout_s
        self._pending = list(range(len(self._tickets)))
        self._errors: dict[int, StepError] = {}
        self._delivered: set[int] = set()

    async def _send(self, index: int) -> TransientError | None:
        st = self._tickets[index]
        message = logout_request(self._subject.sso_username, st.ticket)
        try:
            await self._apps.single_logout(
                self._app, st.service, message, timeout_s=self._timeout_s
            )
        except TransientError as exc:
            self._errors[index] = StepError(code=exc.code, message=exc.message, retryable=True)
            return exc
        except SortieError as exc:
            self._errors[index] = StepError(code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("single logout to %s raised an unexpected error", self._app.name)
            self._errors[index] = StepError(code="internal_error", message=type(exc).__name__)
        else:
            self._errors.pop(index, None)
            self._delivered.add(index)
        self._pending.remove(index)
        return None

    async def body(self) -> str | None:
        transient = [exc for i in list(self._pending) if (exc := await self._send(i)) is not None]
        count = len(self._tickets)
        if transient:
            waits = [e.retry_after for e in transient if e.retry_after is not None]
            raise TransientError(
                f"{len(transient)} of {count} single logouts not delivered yet: "
                f"{transient[0].message[:1500]}",
                code=transient[0].code,
                retry_after=max(waits) if waits else None,
            )
        if self._errors:
            first = next(iter(self._errors.values()))
            raise PermanentError(
                f"{len(self._errors)} of {count} single logouts failed: {first.message[:1500]}",
                code=first.code,
            )
        return f"single logout delivered for {count} service ticket{'s' if count > 1 else ''}"

    def items(self) -> tuple[StepItem, ...]:
        """One item per ticket, the failed ones first, at most MAX_ITEMS (the contract's
        limit; the step's error counts them all)."""
        unsent = StepError(code="timeout", message="not delivered in time", retryable=True)
        items = [
            StepItem(
                ref=ticket_ref(i + 1, st.ticket, st.service),
                outcome=Outcome.SUCCEEDED if i in self._delivered else Outcome.FAILED,
                error=None if i in self._delivered else self._errors.get(i, unsent),
            )
            for i, st in enumerate(self._tickets)
        ]
        items.sort(key=lambda item: item.outcome is Outcome.SUCCEEDED)
        return tuple(items[:MAX_ITEMS])
