"""The Graph simulator's users and replies: what a user holds, how Graph shapes errors,
and how a PATCH body is checked (https://learn.microsoft.com/en-us/graph/api/user-update)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .common import iso_s, iso_us, utc_now

GRAPH_METADATA = "https://graph.microsoft.com/v1.0/$metadata"
MIN_PASSWORD_LENGTH = 8
# Only "not plaintext" matters in a simulator; few rounds keep bulk resets fast.
PBKDF2_ROUNDS = 1_000
# Set-CASMailbox's protocol switches, all on for a new mailbox.
MAILBOX_PROTOCOLS = (
    "OWAEnabled",
    "ActiveSyncEnabled",
    "MAPIEnabled",
    "EwsEnabled",
    "PopEnabled",
    "ImapEnabled",
    "OutlookMobileEnabled",
)
PATCHABLE = frozenset({"accountEnabled", "passwordProfile"})
PASSWORD_PROFILE_FIELDS = frozenset(
    {"password", "forceChangePasswordNextSignIn", "forceChangePasswordNextSignInWithMfa"}
)
COMPLEXITY_MESSAGE = (
    "The specified password does not comply with password complexity requirements. "
    "Please provide a different password."
)


@dataclass
class Reply:
    """The outcome of one Graph operation, before it becomes an HTTP or batch response."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Reply:
    inner = {"request-id": str(uuid.uuid4()), "date": iso_s(utc_now())}
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return Reply(status, body, dict(headers or {}))


def not_found(key: str) -> Reply:
    return graph_error(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def bad_request(message: str, code: str = "Request_BadRequest") -> Reply:
    return graph_error(400, code, message)


def no_property(name: str) -> Reply:
    return bad_request(
        f"Property '{name}' does not exist as a declared property or extension property."
    )


def invalid_value(name: str) -> Reply:
    return bad_request(f"Invalid value specified for property '{name}' of resource 'User'.")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS)
    return f"pbkdf2_sha256${PBKDF2_ROUNDS}${salt.hex()}${digest.hex()}"


def check_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    _algo, rounds, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(rounds))
    return hmac.compare_digest(candidate.hex(), digest)


@dataclass
class GraphUser:
    id: str
    user_principal_name: str
    mail: str | None
    display_name: str
    user_type: str
    account_enabled: bool
    sign_in_sessions_valid_from: datetime
    created_at: datetime
    revocation_count: int = 0
    password_hash: str | None = field(default=None, repr=False)
    password_changed_at: datetime | None = None
    force_change: bool = False
    force_change_mfa: bool = False
    # Directory attributes a site may map its own user ids to (HR number, AD account).
    employee_id: str | None = None
    on_premises_sam_account_name: str | None = None
    cas_mailbox: dict[str, bool] = field(
        default_factory=lambda: dict.fromkeys(MAILBOX_PROTOCOLS, True)
    )

    def graph_view(self) -> dict[str, Any]:
        changed = self.password_changed_at or self.created_at
        return {
            "@odata.context": f"{GRAPH_METADATA}#users/$entity",
            "id": self.id,
            "userPrincipalName": self.user_principal_name,
            "mail": self.mail,
            "displayName": self.display_name,
            "accountEnabled": self.account_enabled,
            "userType": self.user_type,
            "signInSessionsValidFromDateTime": iso_s(self.sign_in_sessions_valid_from),
            "lastPasswordChangeDateTime": iso_s(changed),
            "employeeId": self.employee_id,
            "onPremisesSamAccountName": self.on_premises_sam_account_name,
        }

    def sim_view(self) -> dict[str, Any]:
        """Everything the simulator knows, for tests; never the password or its hash."""
        changed = self.password_changed_at
        return {
            "id": self.id,
            "userPrincipalName": self.user_principal_name,
            "mail": self.mail,
            "displayName": self.display_name,
            "userType": self.user_type,
            "employeeId": self.employee_id,
            "onPremisesSamAccountName": self.on_premises_sam_account_name,
            "accountEnabled": self.account_enabled,
            "signInSessionsValidFromDateTime": iso_us(self.sign_in_sessions_valid_from),
            "revocation_count": self.revocation_count,
            "password_changed_at": iso_us(changed) if changed else None,
            "force_change": self.force_change,
            "force_change_mfa": self.force_change_mfa,
            "cas_mailbox": dict(self.cas_mailbox),
            "created_at": iso_us(self.created_at),
        }

    def password_matches(self, password: str) -> bool:
        return check_password(self.password_hash, password)


def check_password_profile(value: Any) -> Reply | None:
    if not isinstance(value, dict):
        return invalid_value("passwordProfile")
    for name, item in value.items():
        if name.startswith("@odata."):
            continue
        if name not in PASSWORD_PROFILE_FIELDS:
            return no_property(name)
        if name == "password":
            if not isinstance(item, str):
                return invalid_value("passwordProfile")
            if len(item) < MIN_PASSWORD_LENGTH:
                return bad_request(COMPLEXITY_MESSAGE)
        elif not isinstance(item, bool):
            return invalid_value("passwordProfile")
    return None


def select_properties(view: dict[str, Any], select: str | None) -> dict[str, Any]:
    """`$select`, loosely: keep the named properties that exist, ignore the others."""
    if not select:
        return view
    wanted = {name.strip() for name in select.split(",")}
    return {k: v for k, v in view.items() if k in wanted or k == "@odata.context"}
