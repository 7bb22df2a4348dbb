"""The gateway's error types; each renders as FlexMeasures' JSON envelope."""

from __future__ import annotations

from typing import Any, ClassVar

UNAUTHORIZED_MESSAGE = (
    "You could not be properly authenticated for this content or functionality."
)


class ApiError(Exception):
    """An error answered as JSON: `http_status`, a `code` and a one-sentence message."""

    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

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
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


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
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after
        self.reason = reason


class LoginBusyError(ApiError):
    """503: every replica is busy checking other passwords; `Retry-After` says when."""

    http_status = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many logins are being checked right now; please try again in "
            f"{retry_after} second{'s' if retry_after != 1 else ''}.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class RateLimitUnavailableError(ApiError):
    """503: the rate-limit counters are unreachable and the policy is fail-closed."""

    http_status = 503
    code = "RATE_LIMIT_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "The rate limiter is unavailable; please retry shortly.",
            headers={"Retry-After": "1"},
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
            headers={"Retry-After": "1"},
        )


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
        super().__init__(message, headers={"Retry-After": "1"})


class UpstreamBusyError(ApiError):
    """503: every connection to the tenant's backend is busy (no replica failure)."""

    http_status = 503
    code = "UPSTREAM_BUSY"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})
