"""The SCIM User as Sortie keeps it: input validation (attribute names are case-insensitive
in SCIM, unknown attributes are refused), PATCH operations, attribute selection."""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .scim_schema import USER_SCHEMA

_NO_CTRL = r"^[^\x00-\x1f\x7f]*$"
Text = Annotated[str, Field(max_length=256, pattern=_NO_CTRL)]


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NameIn(_Strict):
    formatted: Text | None = None
    familyName: Text | None = None
    givenName: Text | None = None


class EmailIn(_Strict):
    value: Annotated[str, Field(min_length=1, max_length=320, pattern=_NO_CTRL)]
    type: Annotated[str, Field(max_length=32, pattern=_NO_CTRL)] | None = None
    primary: bool | None = None


class UserIn(_Strict):
    userName: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
    externalId: Text | None = None
    name: NameIn | None = None
    displayName: Text | None = None
    emails: Annotated[list[EmailIn], Field(max_length=20)] | None = None
    # Unassigned counts as active: only an explicit false starts an offboarding.
    active: bool | None = None


_TOP = {n.lower(): n for n in UserIn.model_fields}
_SUB = {
    "name": {n.lower(): n for n in NameIn.model_fields},
    "emails": {n.lower(): n for n in EmailIn.model_fields},
}
_READ_ONLY = {"id", "meta", "schemas"}
_URN_PREFIX = USER_SCHEMA.lower() + ":"


def _canon_sub(attr: str, value: Any) -> Any:
    names = _SUB.get(attr)
    if names is None:
        return value
    if isinstance(value, dict):
        return {names.get(k.lower(), k): v for k, v in value.items()}
    if isinstance(value, list):
        return [_canon_sub(attr, v) for v in value]
    return value


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    """Attribute names as the schema spells them; read-only ones dropped."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        low = key.lower()
        if low.startswith(_URN_PREFIX):
            low = low[len(_URN_PREFIX) :]
        if low in _READ_ONLY:
            continue
        name = _TOP.get(low, key)
        out[name] = _canon_sub(name, value)
    return out


def validate_user(body: dict[str, Any]) -> dict[str, Any]:
    """A clean resource body (no id/meta) from client input, or a 400."""
    try:
        user = UserIn.model_validate(canonical(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(body)"
        kind = "invalidSyntax" if first.get("type") == "extra_forbidden" else "invalidValue"
        raise ScimError(400, f"{where}: {first.get('msg')}", kind) from exc
    return user.model_dump(exclude_none=True)


_PATH = re.compile(r"^(?:urn:[^ ]*:)?([A-Za-z][\w$-]*)(?:\.([A-Za-z][\w$-]*))?$")


def _split_path(path: str) -> tuple[str, str | None]:
    if path.lower().startswith(_URN_PREFIX):
        path = path[len(_URN_PREFIX) :]
    match = _PATH.match(path.strip())
    if not match:
        raise ScimError(400, f"unsupported PATCH path {path!r}", "invalidPath")
    top = _TOP.get(match.group(1).lower())
    if top is None or (top == "userName" and match.group(2)):
        raise ScimError(400, f"no attribute {path!r}", "invalidPath")
    sub = match.group(2)
    if sub is not None:
        sub_name = _SUB.get(top, {}).get(sub.lower())
        if sub_name is None or top == "emails":
            raise ScimError(400, f"unsupported PATCH path {path!r}", "invalidPath")
        sub = sub_name
    return top, sub


def _set(doc: dict[str, Any], op: str, top: str, sub: str | None, value: Any) -> None:
    if sub is not None:
        target = doc.setdefault(top, {})
        if op == "remove":
            target.pop(sub, None)
        else:
            target[sub] = value
        return
    if op == "remove":
        if top == "userName":
            raise ScimError(400, "userName is required", "mutability")
        doc.pop(top, None)
        return
    value = _canon_sub(top, value)
    if op == "add" and top == "emails" and isinstance(value, list):
        doc[top] = list(doc.get(top) or []) + value
    elif op == "add" and top == "name" and isinstance(value, dict):
        doc[top] = {**(doc.get(top) or {}), **value}
    else:
        doc[top] = value


def apply_patch(doc: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """RFC 7644 section 3.5.2 on a copy of `doc`; the result is validated again."""
    ops = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(ops, list) or not ops or len(ops) > 50:
        raise ScimError(400, "Operations must be a list of 1 to 50 operations", "invalidSyntax")
    out = copy.deepcopy(doc)
    for raw in ops:
        if not isinstance(raw, dict):
            raise ScimError(400, "each operation must be an object", "invalidSyntax")
        item = {k.lower(): v for k, v in raw.items()}
        op = str(item.get("op", "")).lower()
        if op not in ("add", "replace", "remove") or set(item) - {"op", "path", "value"}:
            raise ScimError(400, f"unsupported operation {raw!r:.100}", "invalidSyntax")
        path = item.get("path")
        if path is None:
            if op == "remove" or not isinstance(item.get("value"), dict):
                raise ScimError(400, f"{op} without a path needs an object value", "noTarget")
            for key, value in canonical(item["value"]).items():
                if key not in UserIn.model_fields:
                    raise ScimError(400, f"no attribute {key!r}", "invalidPath")
                _set(out, op, key, None, value)
            continue
        if not isinstance(path, str) or len(path) > 200:
            raise ScimError(400, "path must be a short string", "invalidPath")
        if op != "remove" and "value" not in item:
            raise ScimError(400, f"{op} needs a value", "invalidValue")
        top, sub = _split_path(path)
        _set(out, op, top, sub, item.get("value"))
    return validate_user(out)


def _attr_names(raw: str | None) -> list[tuple[str, str | None]]:
    if not raw:
        return []
    names = []
    for raw_part in raw.split(",")[:50]:
        part = raw_part.strip()
        if part.lower().startswith(_URN_PREFIX):
            part = part[len(_URN_PREFIX) :]
        top, _, sub = part.partition(".")
        names.append((top.lower(), sub.lower() or None))
    return names


def select(doc: dict[str, Any], attributes: str | None, excluded: str | None) -> dict[str, Any]:
    """`attributes` / `excludedAttributes` (RFC 7644 section 3.4.2.5); id and schemas stay."""
    keep = _attr_names(attributes)
    drop = _attr_names(excluded)
    if keep:
        out: dict[str, Any] = {}
        for key, value in doc.items():
            low = key.lower()
            if low in ("id", "schemas"):
                out[key] = value
                continue
            subs = [sub for top, sub in keep if top == low]
            if not subs:
                continue
            if None in subs or not isinstance(value, dict):
                out[key] = value
            else:
                out[key] = {k: v for k, v in value.items() if k.lower() in subs}
        return out
    if drop:
        out = {}
        for key, value in doc.items():
            low = key.lower()
            subs = [sub for top, sub in drop if top == low]
            if not subs or low in ("id", "schemas"):
                out[key] = value
            elif None not in subs and isinstance(value, dict):
                out[key] = {k: v for k, v in value.items() if k.lower() not in subs}
        return out
    return doc


_FILTER = re.compile(
    r'^\s*(userName|externalId|id)\s+eq\s+"((?:[^"\\]|\\.){0,256})"\s*$', re.IGNORECASE
)


def parse_filter(raw: str) -> tuple[str, str]:
    """`userName eq "x"`, `externalId eq "x"` or `id eq "x"`: (attribute, value)."""
    match = _FILTER.match(raw)
    if not match:
        raise ScimError(
            400,
            'supported filters: userName eq "…", externalId eq "…", id eq "…"',
            "invalidFilter",
        )
    value = re.sub(r"\\(.)", r"\1", match.group(2))
    return match.group(1).lower(), value
