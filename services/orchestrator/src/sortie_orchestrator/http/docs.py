"""The interactive API documentation at `/docs` (Swagger UI), its assets served from the
`swagger-ui-bundle` package on this origin: no page of the status page's origin loads a
script from a CDN. `docs_enabled: false` turns `/docs` and `/openapi.json` off (the
document is also in the repository, docs/openapi.json)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from sortie_orchestrator.http.problems import Problem

ASSETS = "/docs/assets"
_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_DIR = Path(swagger_ui_bundle.swagger_ui_path)


def install(app: FastAPI) -> None:
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in _FILES:
            raise Problem(404, "no such file", slug="not-found")
        return FileResponse(_DIR / name, media_type=_FILES[name])
