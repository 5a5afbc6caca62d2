"""Who the subject is in Microsoft 365, from every identifier known, and how that was learnt.

In order: the subject's `upn` (`GET /users/{upn}`: a UPN or an object id; when Graph does
not know it and it looks like an address, `mail eq '…'`), then each configured lookup
(`SORTIE_M365_IDENTITY_LOOKUPS`), a Graph property and a template of the subject's fields,
e.g. `onPremisesSamAccountName={user_id}` or `userPrincipalName={user_id}@school.example`.
The first single match wins. The outcome is one of:

- resolved: the user, and what was tried;
- authoritatively unknown: every lookup answered (404, or no match): `not_found` with the
  lookups as evidence;
- unresolved: nothing could be tried, or a filter matched several users
  (`identity_unresolved`), or a lookup failed (its own error): a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sortie_core.errors import NotFoundError, SortieError, TransientError
from sortie_core.events import Discovery, Evidence, StepError, StepResult, Subject, utcnow
from sortie_core.metrics import STEP_RETRIES
from sortie_core.steps import RetryPolicy

from .adapters import FILTER_PROPERTIES, M365Directory, M365User
from .identity_cache import IdentityCache
from .quota import LATENCY

SERVICE = "m365"
# `/users/{key}` lookups (`upn` is a short name for it); every other property is a `$filter`.
PATH_PROPERTIES = ("upn", "userPrincipalName", "id")
FIELDS = ("user_id", "upn", "cas_username", "windows_account")
_MAX_TRIED = 20


@dataclass(frozen=True, slots=True)
class Lookup:
    prop: str
    template: str

    @classmethod
    def parse(cls, text: str) -> Lookup:
        """`property=template`; refuses an unknown property or placeholder."""
        prop, sep, template = text.strip().partition("=")
        prop = prop.strip()
        if not sep or not template.strip():
            raise ValueError(f"identity lookup {text!r} is not `property=template`")
        if prop not in PATH_PROPERTIES and prop not in FILTER_PROPERTIES:
            known = ", ".join(dict.fromkeys((*PATH_PROPERTIES, *FILTER_PROPERTIES)))
            raise ValueError(f"identity lookup by {prop!r}: use one of {known}")
        for _text, name, spec, conversion in string.Formatter().parse(template):
            if name is not None and (name not in FIELDS or spec or conversion):
                raise ValueError(
                    f"identity lookup {text!r}: placeholders are {{{'}, {'.join(FIELDS)}}}"
                )
        return cls(prop, template.strip())

    def value_for(self, subject: Subject) -> str | None:
        """The value to look up, or None when the subject lacks a field it needs."""
        values = {name: getattr(subject, name) for name in FIELDS}
        needed = {n for _t, n, _s, _c in string.Formatter().parse(self.template) if n}
        if any(not values[n] for n in needed):
            return None
        return self.template.format(**values)


@dataclass
class Resolution:
    user: M365User | None = None
    tried: list[str] = field(default_factory=list)
    # Why it is unresolved (None: resolved, or authoritatively unknown).
    error: StepError | None = None
    attempts: int = 0
    started_at: datetime = field(default_factory=utcnow)
    read_at: datetime = field(default_factory=utcnow)
    # Found in this process's cache of resolved identities, without a Graph call.
    cached: bool = False

    @property
    def unknown(self) -> bool:
        """Every identifier was tried and Graph knows none of them."""
        return self.user is None and self.error is None

    def evidence(self) -> Evidence:
        return Evidence(
            source="graph user lookup by every identifier known",
            observed={"tried": "; ".join(self.tried)[:1000], "users_found": 0},
            read_at=self.read_at,
        )

    def discovery(self) -> Discovery:
        identity = f"{self.user.upn} ({self.user.id})" if self.user else None
        return Discovery(
            source="graph",
            identity=identity,
            identity_tried=tuple(t[:400] for t in self.tried[:_MAX_TRIED]),
            error=self.error.message[:500] if self.error else None,
        )


def _candidates(subject: Subject, lookups: tuple[Lookup, ...]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if subject.upn:
        found.append(("upn", subject.upn))
        if "@" in subject.upn:
            found.append(("mail", subject.upn))
    for lookup in lookups:
        value = lookup.value_for(subject)
        if value is not None:
            found.append((lookup.prop, value))
    unique: dict[tuple[str, str], tuple[str, str]] = {}
    for prop, value in found:
        # `/users/{key}` takes an object id or a UPN alike: one call serves both.
        kind = "path" if prop in PATH_PROPERTIES else prop
        unique.setdefault((kind, value.lower()), (prop, value))
    return list(unique.values())


async def resolve(
    subject: Subject,
    lookups: tuple[Lookup, ...],
    directory: M365Directory,
    policy: RetryPolicy,
    cache: IdentityCache | None = None,
) -> Resolution:
    candidates = _candidates(subject, lookups)
    key = tuple((prop, value.lower()) for prop, value in candidates)
    known = cache.get(key) if cache is not None and key else None
    if known is not None:
        user, how = known
        now = utcnow()
        return Resolution(
            user=user, tried=[f"{how} (cached)"], started_at=now, read_at=now, cached=True
        )
    result = await _resolve(candidates, directory, policy)
    if result.user is not None:
        if cache is not None:
            cache.put(key, result.user, result.tried[-1])
        if result.attempts == 1:
            LATENCY.observe((result.read_at - result.started_at).total_seconds())
    return result


async def _resolve(
    candidates: list[tuple[str, str]], directory: M365Directory, policy: RetryPolicy
) -> Resolution:
    result = Resolution()
    if not candidates:
        result.error = StepError(
            code="identity_unresolved",
            message="no Microsoft 365 identifier for this subject: it has no upn and no "
            "configured identity lookup applies (SORTIE_M365_IDENTITY_LOOKUPS)",
        )
        return result
    ambiguous: list[str] = []
    for prop, value in candidates:
        label = f"{prop}={value}"
        try:
            found = await _retrying(_lookup(directory, prop, value), policy, result)
        except SortieError as exc:
            result.tried.append(f"{label}: {exc.code}")
            if result.error is None:
                result.error = StepError(
                    code=exc.code,
                    message=f"user lookup by {label} failed: {exc.message}",
                    retryable=isinstance(exc, TransientError),
                )
            continue
        result.read_at = utcnow()
        if len(found) == 1:
            result.tried.append(f"{label}: found")
            result.user, result.error = found[0], None
            return result
        result.tried.append(f"{label}: {len(found)} users" if found else f"{label}: no user")
        if found:
            ambiguous.append(label)
    if result.error is None and ambiguous:
        result.error = StepError(
            code="identity_unresolved",
            message=f"several Microsoft 365 users match {', '.join(ambiguous)}",
        )
    if result.error is not None:
        tried = "; ".join(result.tried)
        result.error = result.error.model_copy(
            update={"message": f"{result.error.message} (tried: {tried})"[:2000]}
        )
    return result


Call = Callable[[], Awaitable[list[M365User]]]


def _lookup(directory: M365Directory, prop: str, value: str) -> Call:
    async def call() -> list[M365User]:
        if prop in PATH_PROPERTIES:
            try:
                return [await directory.get_user(value)]
            except NotFoundError:
                return []
        return await directory.find_users(prop, value)

    return call


async def _retrying(call: Call, policy: RetryPolicy, result: Resolution) -> list[M365User]:
    """One lookup, transient errors retried like a step's (a lookup is not a step: it
    has no outcome of its own and no read-back)."""
    attempt = 0
    while True:
        attempt += 1
        result.attempts += 1
        try:
            return await call()
        except TransientError as exc:
            if attempt >= policy.max_attempts:
                raise
            STEP_RETRIES.labels(SERVICE, "find_user").inc()
            await asyncio.sleep(policy.delay(attempt, exc.retry_after))


def with_lookup(step: StepResult, found: Resolution) -> StepResult:
    """The first step of a request carries its user lookup: the step starts when the
    lookup did (its duration counts it) and its detail tells what was tried, whether the
    cache answered and how long it took (the evidence stays what was read back)."""
    took_ms = round(max(0.0, (found.read_at - found.started_at).total_seconds()) * 1000)
    note = f"user lookup {took_ms} ms: {'; '.join(found.tried)[:400]}"
    return step.model_copy(
        update={
            "started_at": min(step.started_at, found.started_at),
            "detail": (f"{step.detail}; {note}" if step.detail else note)[:2000],
        }
    )
