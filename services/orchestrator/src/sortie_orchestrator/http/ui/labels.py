"""Plain-language names of services, steps, outcomes, proofs and statuses, in the page's
language: "Déconnexion de Microsoft 365", "Fermeture de la session sur pc-101",
"Session ENT (CAS) fermée en dernier", "Vérifié", "Accusé de réception"."""

from __future__ import annotations

from sortie_core import services
from sortie_core.events import Outcome, SkipReason, StepResult, Verification
from sortie_orchestrator.http.ui import errors
from sortie_orchestrator.http.ui.i18n import N_, L10n

STATUSES = {
    "": N_("any"),
    "scheduled": N_("Scheduled"),
    "running": N_("Running"),
    "in_progress": N_("In progress"),
    "sso_logout": N_("Closing the ENT session"),
    "completed": N_("Completed"),
    "partial": N_("Partial"),
    "failed": N_("Failed"),
    "cancelled": N_("Cancelled"),
}
KINDS = {
    "logout": N_("Logout"),
    "offboard": N_("Offboarding"),
    "workstation_admin": N_("Workstation order"),
    "reversal": N_("Reversal"),
}
OUTCOMES = {
    "succeeded": N_("Succeeded"),
    "failed": N_("Failed"),
    "not_found": N_("Nothing to end"),
    "skipped": N_("Skipped"),
    "timed_out": N_("Timed out"),
    "unreachable": N_("Unreachable"),
}
SERVICE_STATES = {
    "pending": N_("waiting for its report"),
    "reported": N_("reported"),
    "timed_out": N_("no report before the deadline"),
    "unreachable": N_("agent unreachable"),
}
VERIFICATIONS = {
    Verification.VERIFIED: N_("Verified"),
    Verification.ACKNOWLEDGED: N_("Acknowledged"),
    Verification.CONTRADICTED: N_("Contradicted by the read-back"),
    Verification.UNVERIFIED: N_("Not verified"),
}
SKIP_REASONS = {
    SkipReason.EXCLUDED_BY_CALLER: N_("left out by the caller"),
    SkipReason.ACTION_NOT_SELECTED: N_("not asked for"),
    SkipReason.GUEST_BY_POLICY: N_("guest account"),
    SkipReason.DISABLED_BY_CONFIGURATION: N_("turned off by configuration"),
    SkipReason.NOT_CONFIGURED: N_("not configured"),
}
# Steps whose name says what they end; `%(host)s` / `%(app)s` are filled in.
STEPS = {
    "revoke_sessions": N_("Signing out of Microsoft 365"),
    "block_sign_in": N_("Blocking sign-in to Microsoft 365"),
    "reset_password": N_("Resetting the Microsoft 365 password"),
    "disable_mail_protocols": N_("Turning off mailbox access (OWA, ActiveSync, IMAP…)"),
    "app_logout": N_("Signing out of the ENT applications"),
    "app_logout:unregistered": N_("Signing out of an undeclared application"),
    "disable_account": N_("Disabling the ENT account"),
    "logoff": N_("Closing the session on %(host)s"),
    "disconnect": N_("Suspending the session on %(host)s"),
    "lock": N_("Locking the session on %(host)s"),
    "close_browsers": N_("Closing the browsers on %(host)s"),
    "destroy_sso_session": N_("ENT session (CAS) closed last"),
    "destroy_all_sso_sessions": N_("Every ENT session (CAS) closed last"),
}
APP_STEP = N_("Signing out of %(app)s")
# What the orchestrator itself writes on the steps it fills in (saga.py).
DETAILS = {
    "no report before the deadline": N_("no report before the deadline"),
    "agent heartbeat lapsed": N_("the workstation's agent stopped reporting"),
    "no SSO logout report before the deadline": N_("no report of the SSO logout in time"),
}


def service_name(t: L10n, service: str) -> str:
    _ = t.gettext
    if service == "m365":
        return "Microsoft 365"
    if service == "ent":
        return _("ENT applications")
    if service == "sso":
        return _("ENT session (CAS)")
    if (host := services.host_of(service)) is not None:
        return _("Workstation %(host)s") % {"host": host}
    return service


def step_name(t: L10n, service: str, action: str) -> str:
    host = services.host_of(service) or ""
    if action in STEPS:
        return t.gettext(STEPS[action]) % {"host": host}
    base, _sep, app = action.partition(":")
    if base == services.EntAction.APP_LOGOUT and app:
        return t.gettext(APP_STEP) % {"app": t.app(app)}
    return action


def status(t: L10n, value: str) -> str:
    return t.gettext(STATUSES.get(value, value))


def kind(t: L10n, value: str) -> str:
    return t.gettext(KINDS.get(value, value))


def outcome(t: L10n, value: str) -> str:
    return t.gettext(OUTCOMES.get(value, value))


def service_state(t: L10n, value: str) -> str:
    return t.gettext(SERVICE_STATES.get(value, value))


def _reason(t: L10n, reason: SkipReason | None) -> str:
    return t.gettext(SKIP_REASONS[reason]) if reason else t.gettext("no reason given")


def proof(t: L10n, step: StepResult) -> str:
    """What the step proves, in words: the same cases as `saga.proof_of`."""
    _ = t.gettext
    if step.outcome == Outcome.SKIPPED:
        if step.done:
            return _("Skipped (%(reason)s)") % {"reason": _reason(t, step.skip_reason)}
        return _("Skipped without a policy reason (%(reason)s)") % {
            "reason": _reason(t, step.skip_reason)
        }
    if step.outcome == Outcome.NOT_FOUND:
        if step.done:
            return _("Nothing to end (verified)")
        return _("Nothing found, without an authoritative lookup")
    if step.outcome == Outcome.SUCCEEDED:
        default = Verification.ACKNOWLEDGED if step.done else Verification.UNVERIFIED
        return _(VERIFICATIONS[step.verification or default])
    code = step.error.code if step.error else step.outcome.value
    said = outcome(t, step.outcome.value)
    return said if code == step.outcome.value else f"{said} ({code})"


def detail(t: L10n, step: StepResult) -> str:
    """The step's error or detail; the orchestrator's own words translated, and a worker's
    error preceded by what its code means (`errors.explain`)."""
    if step.error is None:
        return step.detail or ""
    message = step.error.message
    if message in DETAILS:
        return t.gettext(DETAILS[message])
    said = f"{step.error.code}: {message}"
    meaning = errors.explain(t, step.error.code)
    return f"{meaning} ({said})" if meaning else said
