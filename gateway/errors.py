"""The gateway's error types and their answers; each renders as FlexMeasures' JSON
envelope."""

from __future__ import annotations

import json
from email.utils import formatdate
from typing import Any, ClassVar, Final

from aiohttp import web

UNAUTHORIZED_MESSAGE: Final = (
    "You could not be properly authenticated for this content or functionality."
)
# The Server header of every answer: no library versions for scanners.
SERVER_NAME: Final = "flexhost"


class ApiError(Exception):
    """An error answered as JSON: `http_status`, a `code` and a one-sentence message.

    `headers` belong to the instance; `retry_after` (seconds) sets its Retry-After.
    """

    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)

    @property
    def status(self) -> int:
        """The HTTP status of this error."""
        return self.http_status

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"message": self.message, "status": self.code}


class BadRequestError(ApiError):
    """400 with FlexMeasures' body for unreadable requests."""

    http_status = 400

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "status": 400}


class InvalidPathError(ApiError):
    http_status = 400
    code = "INVALID_PATH"


class UnauthorizedError(ApiError):
    """401 exactly as FlexMeasures answers a missing, invalid or expired token."""

    http_status = 401
    code = "UNAUTHORIZED"

    def __init__(self) -> None:
        super().__init__(UNAUTHORIZED_MESSAGE)


class LoginFailedError(ApiError):
    """requestAuthToken failures: FlexMeasures' `{"errors": [...], "status": <int>}`."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.status_code = http_status

    @property
    def status(self) -> int:
        return self.status_code

    def body(self) -> dict[str, Any]:
        return {"errors": [self.message], "status": self.status_code}


class UnprocessableError(ApiError):
    """422 in webargs' shape: message -> location -> field -> [texts]."""

    http_status = 422
    code = "UNPROCESSABLE_ENTITY"

    def __init__(self, fields: dict[str, list[str]], location: str = "json") -> None:
        super().__init__("Unprocessable entity.")
        self.fields = fields
        self.location = location

    def body(self) -> dict[str, Any]:
        return {
            "message": {self.location: self.fields},
            "result": "Rejected",
            "status": self.code,
        }


class TenantSuspendedError(ApiError):
    http_status = 403
    code = "TENANT_SUSPENDED"


class FormRejectedError(ApiError):
    """403: a page's form failed its CSRF or origin check; nothing was done."""

    http_status = 403
    code = "FORBIDDEN"


class UnknownTenantError(ApiError):
    http_status = 404
    code = "UNKNOWN_TENANT"


class NotFoundError(ApiError):
    """404 as FlexMeasures' `{"message", "status": 404}`."""

    http_status = 404

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "status": 404}


class MethodNotAllowedError(ApiError):
    http_status = 405

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "status": 405}


class SunsetError(ApiError):
    """410 for API versions FlexMeasures has sunset."""

    http_status = 410

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "status": 410}


class PayloadTooLargeError(ApiError):
    http_status = 413
    code = "PAYLOAD_TOO_LARGE"

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "result": "Rejected", "status": self.code}


class TooManyRequestsError(ApiError):
    """429: too many failed logins; `Retry-After` says when to try again."""

    http_status = 429
    code = "TOO_MANY_REQUESTS"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)


class RateLimitedError(ApiError):
    """429 in FlexMeasures' shape: a token's or tenant's request rate is used up."""

    http_status = 429
    code = "TOO_MANY_REQUESTS"

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "result": "Rejected", "status": self.code}


class LoginRateLimitedError(RateLimitedError):
    """429 in FlexMeasures' shape: a user's tokens or logins in flight are used up.

    `reason` names the limit for the login metrics ("throttled", "token_limit").
    """

    def __init__(self, message: str, retry_after: int, reason: str) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason


class LoginBusyError(ApiError):
    """503: every replica is busy checking other passwords; `Retry-After` says when."""

    http_status = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many logins are being checked right now; please try again in "
            f"{retry_after} second{'s' if retry_after != 1 else ''}.",
            retry_after=retry_after,
        )


class RateLimitUnavailableError(ApiError):
    """503: the rate-limit counters are unreachable and the policy is fail-closed."""

    http_status = 503
    code = "RATE_LIMIT_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "The rate limiter is unavailable; please retry shortly.",
            retry_after=1,
        )


class UpstreamUnavailableError(ApiError):
    http_status = 502
    code = "UPSTREAM_UNAVAILABLE"


class TokenStoreUnavailableError(ApiError):
    http_status = 503
    code = "TOKEN_STORE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "The token store is unavailable; please retry shortly.",
            retry_after=1,
        )


class InternalError(ApiError):
    """500: our bug; the body tells nothing more (the log has the traceback)."""

    http_status = 500
    code = "INTERNAL_ERROR"

    def __init__(self) -> None:
        super().__init__("An internal error has occurred.")


class UpstreamTimeoutError(ApiError):
    http_status = 504
    code = "UPSTREAM_TIMEOUT"


class RequestTimeoutError(ApiError):
    """408: the request's headers or body did not arrive in time; the connection
    closes."""

    http_status = 408
    code = "REQUEST_TIMEOUT"


class UpstreamShareError(RateLimitedError):
    """429 in FlexMeasures' shape: one token or client address holds its share of the
    tenant's backend connections already."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1)


class UpstreamBusyError(ApiError):
    """503: every connection to the tenant's backend is busy (no replica failure)."""

    http_status = 503
    code = "UPSTREAM_BUSY"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=1)


def error_response(err: ApiError) -> web.Response:
    """The JSON answer for an ApiError."""
    return web.json_response(err.body(), status=err.status, headers=err.headers)


def error_answer(err: ApiError, request_id: str | None = None) -> web.Response:
    """`err` as a JSON answer with our usual headers that closes the connection."""
    response = error_response(err)
    response.headers["Server"] = SERVER_NAME
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id
    response.headers["Connection"] = "close"  # aiohttp says so for HTTP/1.1 only
    response.force_close()
    return response


def raw_error(err: ApiError, request_id: str) -> bytes:
    """A whole HTTP/1.1 answer for `err` that closes the connection, as bytes."""
    body = json.dumps(err.body()).encode()
    reason = {400: "Bad Request", 408: "Request Timeout"}.get(err.status, "Error")
    head = (
        f"HTTP/1.1 {err.status} {reason}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Server: {SERVER_NAME}\r\n"
        f"X-Request-Id: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
