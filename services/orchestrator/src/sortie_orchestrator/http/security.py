"""Browser security headers on every response, with a strict Content-Security-Policy.
The API docs page (`/docs`) loads Swagger UI from this origin but starts it with an
inline script: its policy allows inline code, still from this origin only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PERSONAL = ("/ui", "/v1/", "/scim/")


def is_secure(scope: Mapping[str, Any], force_secure: bool) -> bool:
    """HTTPS as the client saw it: the scheme uvicorn derived (X-Forwarded-Proto only from
    `trusted_proxies`), or always with `force_secure`."""
    return force_secure or scope.get("scheme") == "https"


class SecurityHeaders:
    def __init__(self, app: Any, force_secure: bool = False) -> None:
        self.app = app
        self.force_secure = force_secure

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = list(_ALWAYS)
        policy = DOCS_CSP if path == "/docs" else CSP
        extra.append((b"content-security-policy", policy.encode()))
        if is_secure(scope, self.force_secure):
            extra.append((b"strict-transport-security", b"max-age=31536000"))
        if path.startswith(_PERSONAL):
            # Personal data: no browser or proxy keeps a copy.
            extra.append((b"cache-control", b"no-store"))

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
