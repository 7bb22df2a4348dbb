"""Internal endpoints for the gateway (service identity only, docs/internals.md)."""

from __future__ import annotations

import logging

from aiohttp import web

from tenant_service import keys
from tenant_service.api import MISSING, NOT_NULL, NOT_STRING
from tenant_service.api.v3_0 import read_json_object, respond
from tenant_service.errors import (
    PasswordChecksBusyError,
    UnknownUserError,
    ValidationError,
    WrongPasswordError,
)
from tenant_service.store import users as user_store

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()


def parse_credentials(data: dict[str, object]) -> tuple[str, str]:
    """Email and password from the body; a 422 json ValidationError otherwise."""
    errors: dict[str, list[str]] = {}
    found: dict[str, str] = {}
    for field in ("email", "password"):
        value = data.get(field)
        if field not in data:
            errors[field] = [MISSING]
        elif value is None:
            errors[field] = [NOT_NULL]
        elif not isinstance(value, str):
            errors[field] = [NOT_STRING]
        else:
            found[field] = value
    if errors:
        raise ValidationError("json", errors)
    return found["email"], found["password"]


@routes.post("/internal/credentials")
async def check_credentials(request: web.Request) -> web.Response:
    """Check an email and password; report who it is (and count the login)."""
    email, password = parse_credentials(await read_json_object(request))
    engine = request.app[keys.ENGINE]
    checker = request.app[keys.PASSWORDS]
    async with engine.connect() as conn:
        creds = await user_store.get_credentials(conn, email)
    # The hash check runs without holding a database connection; past
    # TENANT_PASSWORD_CHECKS at once (after a short wait) it is a 503 with
    # Retry-After, which the gateway passes on as "busy", not as a failed login.
    try:
        verdict = await checker.verify(
            creds.password_hash if creds is not None else None, password
        )
    except PasswordChecksBusyError:
        logger.warning("password check refused: %d in flight", checker.in_flight)
        raise
    if creds is None:
        logger.warning("login for unknown email")
        raise UnknownUserError()
    if not verdict.ok:
        logger.warning("wrong password", extra={"user_id": creds.id})
        raise WrongPasswordError()
    if creds.active:
        async with engine.begin() as conn:
            await user_store.record_login(conn, creds.id, new_hash=verdict.new_hash)
    return respond(
        {
            "user_id": creds.id,
            "account_id": creds.account_id,
            "roles": list(creds.role_names),
            "active": creds.active,
        }
    )
