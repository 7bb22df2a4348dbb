"""Pages on every tenant host: login, profile and tokens, a data dashboard.

Plain HTML from aiohttp-jinja2 templates (autoescaped), small local static files
under /static (no CDN, no build step). Every page knows its tenant (name, colours
from tenants.yaml) and the signed-in user, if any.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway import keys

logger = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = HERE / "static"


class CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept in memory and shared by the process's apps.

    Each app has its own Jinja environment (aiohttp-jinja2); without this each one
    compiled every template again (about 10 ms per app). Jinja keys a template's
    entry by its name and checks the source's checksum, so an edited template is
    compiled anew.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


COMPILED: Final = CompiledTemplates()


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """A page: the template with the tenant (name, colours) and `context`.

    Pages set `Cache-Control: no-store` (they show personal data and secrets) and
    forbid framing (clickjacking).
    """
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {"tenant": request.get(keys.TENANT), "user": None, **context},
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(
    request: web.Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error as an HTML page (error.html); plain text if templates fail."""
    try:
        response = render(
            request, "error.html", {"status": status, "message": message}, status=status
        )
    except (jinja2.TemplateError, web.HTTPException):
        logger.exception("error page %d could not be rendered", status)
        response = web.Response(text=message, status=status)
    response.headers.update(headers or {})
    return response


def setup_pages(app: web.Application, routes: list[web.RouteTableDef]) -> None:
    """Templates, static files and the pages' routes.

    No aiohttp-jinja2 context processors: they add a middleware to every request,
    API calls included; `render` adds the tenant instead.
    """
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        bytecode_cache=COMPILED,
    )
    app.router.add_static("/static", STATIC_DIR, name="static", append_version=True)
    for table in routes:
        app.add_routes(table)
