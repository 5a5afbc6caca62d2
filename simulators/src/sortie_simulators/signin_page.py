"""The sign-in form the CAS and OpenID provider simulators show, in French or English as
the browser prefers (`Accept-Language`, as Apereo CAS and Entra ID choose their page's
language), with labelled fields so that a screen reader and axe-core are happy."""

from __future__ import annotations

import html

from fastapi import Request
from fastapi.responses import HTMLResponse

TEXTS = {
    "fr": {
        "user": "Identifiant",
        "password": "Mot de passe",
        "submit": "Se connecter",
        "expired": "Le formulaire a expiré, recommencez.",
        "wrong": "Identifiant ou mot de passe incorrect.",
    },
    "en": {
        "user": "Username",
        "password": "Password",
        "submit": "Sign in",
        "expired": "The form has expired, start again.",
        "wrong": "Wrong username or password.",
    },
}
STYLE = (
    "body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0}input{display:block;width:100%;padding:.4rem;"
    "box-sizing:border-box}button{padding:.5rem 1rem}"
)


def language(request: Request) -> str:
    """The first of the browser's languages that is French or English; French otherwise."""
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";", 1)[0].strip().lower()[:2]
        if tag in TEXTS:
            return tag
    return "fr"


def page(
    request: Request,
    *,
    heading: dict[str, str],
    action: str,
    hidden: dict[str, str],
    error: str | None = None,
) -> HTMLResponse:
    """`heading`: by language; `error`: a key of TEXTS ("expired", "wrong") or a message."""
    lang = language(request)
    t = TEXTS[lang]
    note = f'<p role="alert">{html.escape(t.get(error, error))}</p>' if error else ""
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in hidden.items()
    )
    title = html.escape(heading[lang])
    body = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{title}</h1>{note}"
        f'<form method="post" action="{html.escape(action)}">{fields}'
        f'<label>{t["user"]} <input name="username" autocomplete="username"></label>'
        f'<label>{t["password"]} <input name="password" type="password"'
        ' autocomplete="current-password"></label>'
        f'<button type="submit">{t["submit"]}</button></form></main></body></html>'
    )
    return HTMLResponse(body, status_code=401 if error else 200)
