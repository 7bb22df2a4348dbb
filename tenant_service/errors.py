"""API errors and their FlexMeasures-shaped JSON envelopes."""

from __future__ import annotations

from typing import Any, ClassVar

JsonDict = dict[str, object]


class ApiError(Exception):
    """An error answered with a JSON envelope; subclasses fix status and code."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str | int] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "An internal error has occurred."
    rejected: ClassVar[bool] = False
    headers: ClassVar[dict[str, str]] = {}  # sent with the answer (e.g. Retry-After)

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    def body(self) -> JsonDict:
        """The JSON body of this error."""
        body: JsonDict = {"message": self.message, "status": self.code}
        if self.rejected:
            body["result"] = "Rejected"
        return body


class InternalError(ApiError):
    """A bug or an unexpected failure: no detail goes to the client."""


class UnauthorizedError(ApiError):
    """Missing or invalid identity (FlexMeasures' 401)."""

    http_status = 401
    code = "UNAUTHORIZED"
    default_message = (
        "You could not be properly authenticated for this content or functionality."
    )


class ForbiddenError(ApiError):
    """The principal may not do this (FlexMeasures' 403)."""

    http_status = 403
    code = "INVALID_SENDER"
    default_message = "You cannot be authorized for this content or functionality."
    rejected = True


class NotFoundError(ApiError):
    """An unknown object, answered as Flask's abort(404, message)."""

    http_status = 404
    code = 404
    default_message = "Not Found"


class BadRequestError(ApiError):
    """Malformed input, answered as Flask's abort(400, message)."""

    http_status = 400
    code = 400
    default_message = (
        "The browser (or proxy) sent a request that this server could not understand."
    )


class ServiceUnavailableError(ApiError):
    """A dependency (the database) is down."""

    http_status = 503
    code = "SERVICE_UNAVAILABLE"


class QueueUnavailableError(ServiceUnavailableError):
    """The scheduling job queue (Redis) is down; nothing was enqueued."""

    default_message = "The job queue is unavailable; please retry."
    headers = {"Retry-After": "1"}  # noqa: RUF012  # read-only class constant
    default_message = "The service is temporarily unavailable."


class PasswordChecksBusyError(ServiceUnavailableError):
    """Every password check of this process is taken (TENANT_PASSWORD_CHECKS)."""

    default_message = (
        "Too many password checks are in progress; please try again in a second."
    )
    headers = {"Retry-After": "1"}  # noqa: RUF012  # read-only class constant


class ValidationError(ApiError):
    """Invalid input, in webargs' 422 envelope: {location: {field: [messages]}}."""

    http_status = 422
    code = "UNPROCESSABLE_ENTITY"
    rejected = True

    def __init__(self, location: str, errors: dict[str, Any]) -> None:
        self.location = location
        self.errors = errors
        super().__init__(f"invalid {location}: {', '.join(sorted(errors))}")

    def body(self) -> JsonDict:
        """The webargs-shaped body."""
        return {
            "message": {self.location: self.errors},
            "result": "Rejected",
            "status": self.code,
        }


class DuplicateUserError(ApiError):
    """An update would give two users the same email (FlexMeasures' 400)."""

    http_status = 400
    code = 400
    default_message = "Duplicate user already exists"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__()

    def body(self) -> JsonDict:
        """FlexMeasures' duplicate-user body."""
        return {"message": self.message, "detail": self.detail, "status": self.code}


class UnknownUserError(ApiError):
    """No user with this email (internal credentials check)."""

    http_status = 404
    code = "UNKNOWN_USER"
    default_message = "No user with this email."

    def body(self) -> JsonDict:
        """The bare code, as docs/internals.md specifies."""
        return {"status": self.code}


class WrongPasswordError(ApiError):
    """The password does not match (internal credentials check)."""

    http_status = 401
    code = "WRONG_PASSWORD"
    default_message = "The password does not match."

    def body(self) -> JsonDict:
        """The bare code, as docs/internals.md specifies."""
        return {"status": self.code}
