"""HTTP connections whose own errors are answered as JSON, never logging request bytes.

aiohttp's answer to a request its parser refuses (a control byte in a header, a
bad request line) is plain text, and its log line quotes the parser's message,
which holds the request's raw bytes: a token there would land in the log. The
protocol here answers in the service's JSON envelope instead, with a fresh
`X-Request-Id`, closes the connection, and logs the parser error's type only.
Each service subclasses `JsonErrorHandler` for its own bodies and headers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError


class JsonErrorHandler(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol, answering its own errors in a JSON envelope."""

    __slots__ = ()
    # Each service sets its own logger, so a line names the service that answered.
    # (Not `logger`: aiohttp's RequestHandler has a slot of that name.)
    error_log: ClassVar[logging.Logger] = logging.getLogger(__name__)

    def malformed_answer(self) -> web.Response:
        """The 400 answer to a request the parser refused."""
        raise NotImplementedError

    def internal_answer(self) -> web.Response:
        """The 500 answer to an error nobody caught."""
        raise NotImplementedError

    def failure_answer(
        self, status: int, exc: BaseException | None, address: str
    ) -> web.Response:
        """The answer to an error other than the parser's; logged as our bug."""
        self.error_log.error(
            "unhandled error in a request from %s", address, exc_info=exc
        )
        return self.internal_answer()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON answer that closes the connection; the log names no request bytes."""
        if request.writer.output_size > 0:  # as aiohttp: an answer is under way
            raise ConnectionError("an answer is under way; cannot send an error")
        request_id = uuid.uuid4().hex
        address = request.remote or "-"
        response: web.Response
        if isinstance(exc, HttpProcessingError):
            # Its message quotes the request's bytes: only its type is logged. A
            # non-HTTP first line (TLS to the plain port, a scanner) is routine
            # on the internet: debug, as aiohttp logs it.
            routine = self._request_count == 1 and isinstance(exc, BadHttpMethod)
            self.error_log.log(
                logging.DEBUG if routine else logging.WARNING,
                "malformed request from %s (%s): answered 400, connection closed",
                address,
                type(exc).__name__,
                extra={"status": 400, "client": address, "answer_id": request_id},
            )
            response = self.malformed_answer()
        else:
            response = self.failure_answer(status, exc, address)
        response.headers["X-Request-Id"] = request_id
        response.headers["Connection"] = "close"  # aiohttp says so for HTTP/1.1 only
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """aiohttp's low-level server, making protocols of a `JsonErrorHandler` class."""

    def __init__(
        self,
        *args: Any,
        handler_class: type[JsonErrorHandler],
        handler_options: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.handler_class = handler_class
        self.handler_options = handler_options

    def __call__(self) -> JsonErrorHandler:
        return self.handler_class(
            self, loop=self._loop, **self.handler_options, **self._kwargs
        )


class JsonErrorRunner(web.AppRunner):
    """An AppRunner whose connections are `handler_class(**handler_options)`."""

    def __init__(
        self,
        app: web.Application,
        *,
        handler_class: type[JsonErrorHandler],
        handler_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.handler_class = handler_class
        self.handler_options = dict(handler_options or {})

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        # The same server (handler, request factory, the app's handler_args),
        # only with our protocol: aiohttp has no public switch for it.
        return JsonErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            handler_class=self.handler_class,
            handler_options=self.handler_options,
            **plain._kwargs,
        )
