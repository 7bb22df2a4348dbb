"""The backend's HTTP connections: requests the parser refuses are answered as JSON.

The gateway never sends such a request, but anything else on the host may reach
the port; see contract.server for why aiohttp's own answer will not do.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Final

from aiohttp import web

from contract.server import JsonErrorHandler, JsonErrorRunner
from tenant_service.api.v3_0 import respond
from tenant_service.errors import BadRequestError

INTERNAL: Final = {"message": "An internal error has occurred.", "status": 500}


class QuietRequestHandler(JsonErrorHandler):
    """aiohttp's protocol, answering its own errors as JSON without logging bytes."""

    __slots__ = ()
    error_log: ClassVar[logging.Logger] = logging.getLogger(__name__)

    def malformed_answer(self) -> web.Response:
        """Flask's 400 for a request it cannot read, as FlexMeasures answers it."""
        return respond({"message": BadRequestError.default_message, "status": 400}, 400)

    def internal_answer(self) -> web.Response:
        """FlexMeasures' 500 body."""
        return respond(INTERNAL, 500)


class QuietRunner(JsonErrorRunner):
    """An AppRunner whose connections answer parser errors as JSON."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, handler_class=QuietRequestHandler, **kwargs)
