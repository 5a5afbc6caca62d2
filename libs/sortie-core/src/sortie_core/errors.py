"""Sortie's error tree. Adapters translate vendor errors into these at the boundary.

    SortieError
    ├── TransientError        worth retrying: timeouts, connection errors, 429, 5xx
    │   └── ThrottledError    the peer asked us to slow down (429, 503 with Retry-After)
    └── PermanentError        retrying cannot help: report at once
        ├── NotFoundError     the subject does not exist there: outcome `not_found`
        └── RefusedError      Sortie refused to act (e.g. a URL outside the registry)

A message that does not fit the contract raises no error of these: it is dead-lettered
`invalid_message` (sortie_core.path).

Every error carries a short machine `code` and a human `message`; neither may contain a
secret, because both end up in reports.
"""

from __future__ import annotations


class SortieError(Exception):
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TransientError(SortieError):
    code = "transient"

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ThrottledError(TransientError):
    code = "throttled"


class PermanentError(SortieError):
    code = "permanent"


class NotFoundError(PermanentError):
    """`evidence` (a `sortie_core.events.Evidence`) when the lookup was authoritative: by
    every identifier known, in the system that holds the accounts. Without it, `not_found`
    proves nothing and the step does not count as done."""

    code = "not_found"

    def __init__(self, message: str, *, code: str | None = None, evidence: object = None) -> None:
        super().__init__(message, code=code)
        self.evidence = evidence


class RefusedError(PermanentError):
    code = "refused"
