"""What a step's error code means, in the helpdesk's language.

A worker's error message is English and technical (it names the call and the status, for
support); its `code` is stable. The pages show the meaning of the code first, translated,
then the code and the message as the worker wrote them. (The orchestrator's own words,
e.g. a step timed out, are `labels.DETAILS`.)

Codes come in two shapes: a fixed one (`identity_unresolved`), or a peer and what went
wrong with it, `<peer>_<kind>` (`sortie_core.http`: `graph_throttled`, `cas_timeout`,
`app_unreachable`…; `graph_http_<status>` for a Graph error without a better code).
"""

from __future__ import annotations

from sortie_orchestrator.http.ui.i18n import N_, L10n

# The peers a worker talks to, by the prefix of its error codes.
PEERS = {
    "graph": N_("Microsoft Graph"),
    "exchange": N_("Exchange Online"),
    "cas": N_("the CAS server"),
    "app": N_("the application"),
    "backend": N_("the workstation's session service"),
}
# What went wrong with the peer (`sortie_core.http.transport_error` and `status_error`).
KINDS = {
    "timeout": N_("%(peer)s did not answer in time"),
    "unreachable": N_("%(peer)s could not be reached"),
    "throttled": N_("%(peer)s asked Sortie to slow down"),
    "unavailable": N_("%(peer)s is unavailable"),
    "unauthorized": N_("%(peer)s refused Sortie's credentials"),
    "redirected": N_("%(peer)s answered with a redirect: check the configured address"),
    "rejected": N_("%(peer)s refused the request"),
    "bad_json": N_("%(peer)s sent an answer Sortie could not read"),
}
# Other kinds that mean the same as one above.
SAME_KIND = {"bad_answer": "bad_json", "server_error": "unavailable", "bad_request": "rejected"}
CODES = {
    "timeout": N_("not done in time"),
    "unverified": N_("done, but the result could not be read back"),
    "not_verified": N_("the read-back contradicts the result: access may still be open"),
    "identity_unresolved": N_("the Microsoft 365 account could not be identified for certain"),
    "deadlettered": N_("the order could not be processed and was set aside"),
    "graph_forbidden": N_("Sortie lacks a Microsoft Graph permission"),
    "graph_batch_incomplete": N_("Microsoft Graph gave no answer for this call"),
    "quota_unavailable": N_("the Microsoft Graph write quota could not be read"),
    "no_delegate": N_("no manager or person to hand over to"),
    "cas_actuator_not_configured": N_("the CAS sessions endpoint is not configured"),
    "cas_actuator_missing": N_("the CAS sessions endpoint is missing (not deployed?)"),
    "cas_rest_missing": N_("the CAS REST endpoint is missing (not deployed?)"),
    "cas_destroy_failed": N_("the CAS server failed to end the SSO session"),
    "sso_deferred_for_app_logout": N_(
        "the applications are logged out first, then the SSO logout is sent again"
    ),
    "app_misconfigured": N_("the application's logout address is not configured"),
    "app_token_missing": N_("the application's token is not configured"),
    "logout_token_rejected": N_("the application refused the logout token"),
    "command_timeout": N_("the command on the workstation did not finish in time"),
    "command_missing": N_("the command is not installed on the workstation"),
    "command_denied": N_("the command cannot be run on the workstation"),
    "command_failed": N_("the command on the workstation failed"),
    "graph_too_many_pages": N_("Microsoft Graph sent more pages than Sortie reads"),
    "signing_key_retired": N_(
        "the key that signs logout tokens was retired: restart the ENT worker with a new one"
    ),
    "not_restorable": N_("what the offboarding recorded cannot be restored"),
    "bad_option": N_("an option of the offboarding profile is invalid"),
    "no_seal_key": N_("no key to protect the Temporary Access Pass with"),
    "bad_seal_key": N_("the key to protect the Temporary Access Pass with is invalid"),
    "internal_error": N_("an unexpected error in Sortie (see the worker's log)"),
}


def explain(t: L10n, code: str) -> str | None:
    """The meaning of `code` in `t`'s language, or None for a code it does not know."""
    _ = t.gettext
    if code in CODES:
        return _(CODES[code])
    peer, _sep, kind = code.partition("_")
    if peer not in PEERS:
        return None
    if kind.startswith("http_") and kind[5:].isdigit():
        kind = "rejected"
    kind = SAME_KIND.get(kind, kind)
    if kind not in KINDS:
        return None
    return _(KINDS[kind]) % {"peer": _(PEERS[peer])}
