"""The backend's one error tree: each error renders as FlexMeasures' JSON envelope."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tenant_service.beliefs import SCHEMA, timedelta_text

logger = logging.getLogger(__name__)

JsonDict = dict[str, object]
# The location of sensor-data field errors, as FlexMeasures names it.
SENSOR_DATA_LOCATION: Final = "combined_sensor_data_description"
RETRY_SOON: Final[Mapping[str, str]] = MappingProxyType({"Retry-After": "1"})


class ApiError(Exception):
    """An error answered with a JSON envelope; subclasses fix status and code."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str | int] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "An internal error has occurred."
    rejected: ClassVar[bool] = False
    # Headers every instance answers with, unless the instance says otherwise.
    default_headers: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __init__(
        self, message: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.headers: dict[str, str] = {**self.default_headers, **(headers or {})}
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

    default_message = "The service is temporarily unavailable."
    default_headers = RETRY_SOON


class PasswordChecksBusyError(ServiceUnavailableError):
    """Every password check of this process is taken (TENANT_PASSWORD_CHECKS)."""

    default_message = (
        "Too many password checks are in progress; please try again in a second."
    )
    default_headers = RETRY_SOON


class DatabaseBusyError(ServiceUnavailableError):
    """A pool backend's database connections are all taken (TENANT_DB_CONNECTIONS)."""

    default_message = (
        "All database connections are in use; please try again in a second."
    )
    default_headers = RETRY_SOON


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


class UnprocessableError(ApiError):
    """A 422 with a plain message, as FlexMeasures' unprocessable_entity()."""

    http_status = 422
    code = "UNPROCESSABLE_ENTITY"
    rejected = True


class JsonMessageError(ApiError):
    """A 422 whose message is one sentence under `json`, as FlexMeasures' forecasts."""

    http_status = 422
    code = "UNPROCESSABLE_ENTITY"
    rejected = True

    def body(self) -> JsonDict:
        """{"message": {"json": "..."}, "result": "Rejected", "status": ...}."""
        return {
            "message": {"json": self.message},
            "result": "Rejected",
            "status": self.code,
        }


class DataValidationError(ValidationError):
    """422 in the sensor-data location."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(SENSOR_DATA_LOCATION, errors)


class TooManyBeliefsError(DataValidationError):
    """A POST that would store more beliefs than the tenant allows per request."""

    def __init__(
        self,
        count: int,
        limit: int,
        resolution_ms: int,
        *,
        location: str = SENSOR_DATA_LOCATION,
    ) -> None:
        at = (
            f" at the sensor's resolution of {timedelta_text(resolution_ms)}"
            if resolution_ms
            else ""
        )
        ValidationError.__init__(
            self,
            location,
            {
                SCHEMA: [
                    f"This request would store {count} values{at}; this server "
                    f"stores at most {limit} values per request. Send the data in "
                    "smaller parts."
                ]
            },
        )


class PayloadTooLargeError(ApiError):
    """The body is above the configured limit (FlexMeasures' 413)."""

    http_status = 413
    code = "PAYLOAD_TOO_LARGE"
    rejected = True

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body exceeds the configured limit of {limit} bytes.")


class InvalidReplacementError(ApiError):
    """Another value for a stored belief (FlexMeasures' 403 INVALID_REPLACEMENT)."""

    http_status = 403
    code = "INVALID_REPLACEMENT"
    rejected = True
    default_message = (
        "Some of the data represents a replacement, which is reserved for servers "
        "in play mode. Enable play mode or update the prior in your request."
    )


class UnrecognizedEventError(ApiError):
    """An unknown job id (FlexMeasures' unrecognized_event)."""

    http_status = 400
    code = "UNRECOGNIZED_UDI_EVENT"
    rejected = True


class UnknownScheduleError(ApiError):
    """No schedule (yet) for a known job (FlexMeasures' unknown_schedule)."""

    http_status = 400
    code = "UNKNOWN_SCHEDULE"
    rejected = True


class UnknownForecastError(ApiError):
    """A finished forecasting job whose forecast is gone (FlexMeasures' 400)."""

    http_status = 400
    code = "UNKNOWN_FORECAST"
    rejected = True


class UnknownJobError(ApiError):
    """No job with this id (FlexMeasures' job status answer)."""

    http_status = 404
    code = "ERROR"


class TooManyRequestsError(ApiError):
    """The account's trigger budget is used up; the headers say when it refills."""

    http_status = 429
    code = "TOO_MANY_REQUESTS"
    rejected = True

    def __init__(self, message: str, *, limit: int, retry_after: int) -> None:
        super().__init__(
            message,
            headers={
                "Retry-After": str(retry_after),
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(retry_after),
            },
        )


def out_of_range(err: BaseException) -> bool:
    """Whether a database error comes from a value its column type cannot hold."""
    seen: BaseException | None = err
    for _ in range(8):  # the driver's error is a few causes down
        if seen is None:
            return False
        if isinstance(seen, OverflowError) or type(seen).__name__ == "DataError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def from_exception(err: Exception) -> ApiError:
    """The error to answer for an exception that is no ApiError; logs it."""
    if isinstance(err, PoolTimeoutError):
        # The tenant's own connections were all taken for the whole wait.
        logger.warning("no database connection free: %s", err)
        return DatabaseBusyError()
    if isinstance(err, OperationalError | InterfaceError | OSError):
        # The database is down, restarting or (SQLite) locked by another
        # process: nothing was stored; clients retry on 503 + Retry-After.
        logger.warning("database unavailable: %s", err)
        return ServiceUnavailableError(headers=RETRY_SOON)
    if isinstance(err, DBAPIError | OverflowError):
        if out_of_range(err):
            # A number the database cannot hold (e.g. an id beyond 32 bits in a
            # body): the request is invalid, and nothing was stored.
            logger.warning("value out of range: %s", type(err).__name__)
            return ValidationError("json", {"_schema": ["A number is out of range."]})
        logger.exception("unhandled database error")
        return InternalError()
    logger.exception("unhandled error")
    return InternalError()
