"""The OpenAPI 3.1 document of API v3_0 and an interactive docs page (Swagger UI).

`openapi.yaml` beside this module is read once per process (at the first app's
start-up, `openapi_ctx`) and served as JSON; Swagger UI's static files come from
the `swagger-ui-bundle-v2` package and are served locally under
`/api/v3_0/docs/<file>` (no CDN).

The page runs only its own scripts (a strict Content-Security-Policy: no inline
scripts, no other origins, no framing) and keeps a token entered under "Authorize"
in memory only: it is gone when the tab closes (no `persistAuthorization`, which
would keep it in localStorage across browser restarts).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any, Final

import swagger_ui_bundle
import yaml
from aiohttp import web

from tenant_service.api.v3_0 import PREFIX
from tenant_service.errors import NotFoundError

routes = web.RouteTableDef()

SPEC_PATH: Final = Path(__file__).with_name("openapi.yaml")
DOCS_PATH: Final = PREFIX + "/docs"
# One file name below the docs page: no slash, no "..", as the public checks need.
ASSET_NAME_RE: Final = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9]+)+")
SWAGGER_FILES: Final = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
INIT_JS: Final = "flexhost-init.js"
SWAGGER_DIR: Final = Path(swagger_ui_bundle.swagger_ui_path)  # a path, no I/O
OPENAPI_JSON: Final = web.AppKey("openapi_json", bytes)

# Relative URLs: the page works on every tenant host and behind the gateway.
PAGE: Final = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>FlexMeasures API v3_0 (flexhost)</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/swagger-ui-standalone-preset.js"></script>
  <script src="docs/flexhost-init.js"></script>
</body>
</html>
"""
INIT_SCRIPT: Final = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
    tryItOutEnabled: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout"
  });
};
"""

# Swagger UI sets inline `style` attributes and draws icons from data: URIs (its
# CSS); it fetches openapi.json and sends "Try it out" requests to this origin.
# Nothing else: no inline or foreign scripts, no eval, no framing.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "manifest-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


# libyaml's parser where PyYAML was built with it: the document (about 100 KiB)
# (60 KiB) parses in about 10 ms instead of 90.
_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The OpenAPI document as a dict (blocking: call it in a thread)."""
    text = path.read_text(encoding="utf-8")
    data: Any = yaml.load(text, Loader=_LOADER)  # a safe loader (no tags)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


@cache
def spec_json(path: Path = SPEC_PATH) -> bytes:
    """The document as compact JSON, built once per process (it ships with the code)."""
    return json.dumps(load_spec(path), separators=(",", ":")).encode()


async def openapi_ctx(app: web.Application) -> AsyncIterator[None]:
    """The OpenAPI document as JSON, read at start-up (once per process)."""
    app[OPENAPI_JSON] = await asyncio.to_thread(spec_json)
    yield


@routes.get(PREFIX + "/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API"""
    return web.Response(
        body=request.app[OPENAPI_JSON],
        content_type="application/json",
        headers={"Cache-Control": "no-cache"},
    )


@routes.get(DOCS_PATH)
async def get_docs(request: web.Request) -> web.Response:
    """Interactive API documentation (Swagger UI)"""
    return web.Response(text=PAGE, content_type="text/html", headers=PAGE_HEADERS)


@routes.get(DOCS_PATH + "/{name}")
async def get_docs_asset(request: web.Request) -> web.StreamResponse:
    """Static files of the docs page"""
    name = request.match_info["name"]
    if name == INIT_JS:
        return web.Response(
            text=INIT_SCRIPT,
            content_type="application/javascript",
            headers={"X-Content-Type-Options": "nosniff"},
        )
    if name not in SWAGGER_FILES:
        raise NotFoundError(f"No docs file named '{name[:64]}'.")
    return web.FileResponse(
        SWAGGER_DIR / name,
        headers={
            "Cache-Control": "public, max-age=86400",
            "X-Content-Type-Options": "nosniff",
        },
    )
