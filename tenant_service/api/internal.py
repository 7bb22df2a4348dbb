"""Internal endpoints for the gateway (service identity only, docs/internals.md)."""

from __future__ import annotations

import logging

from aiohttp import web

from tenant_service import keys
from tenant_service.api import MISSING, NOT_NULL, NOT_STRING, parse_path_id
from tenant_service.api.v3_0 import read_json_object, respond
from tenant_service.errors import (
    PasswordChecksBusyError,
    UnknownUserError,
    ValidationError,
    WrongPasswordError,
)
from tenant_service.passwords import hash_password, password_problems
from tenant_service.store import audit
from tenant_service.store import users as user_store

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()


def parse_strings(data: dict[str, object], *fields: str) -> dict[str, str]:
    """The string fields of a body; a 422 json ValidationError otherwise."""
    errors: dict[str, list[str]] = {}
    found: dict[str, str] = {}
    for field in fields:
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
    return found


def parse_credentials(data: dict[str, object]) -> tuple[str, str]:
    """Email and password from the body; a 422 json ValidationError otherwise."""
    found = parse_strings(data, "email", "password")
    return found["email"], found["password"]


@routes.post("/internal/credentials")
async def check_credentials(request: web.Request) -> web.Response:
    """Check an email and password; report who it is (and count the login)."""
    email, password = parse_credentials(await read_json_object(request))
    engine = request[keys.TENANT].engine
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


@routes.post("/internal/users/lookup")
async def find_user(request: web.Request) -> web.Response:
    """Who has this email (a password reset by mail); 404 UNKNOWN_USER if nobody."""
    email = parse_strings(await read_json_object(request), "email")["email"]
    async with request[keys.TENANT].engine.connect() as conn:
        user = await user_store.get_user_by_email(conn, email)
    if user is None:
        raise UnknownUserError()
    return _user_answer(user)


def _user_answer(user: user_store.UserRecord) -> web.Response:
    """Who a lookup found: ids, address and whether they are active."""
    return respond(
        {
            "user_id": user.id,
            "account_id": user.account_id,
            "email": user.email,
            "active": user.active,
        }
    )


@routes.get("/internal/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    """A user's address by id (the gateway mails a reset link); 404 if nobody."""
    user_id = parse_path_id(request.match_info["id"])
    async with request[keys.TENANT].engine.connect() as conn:
        user = await user_store.get_user(conn, user_id)
    if user is None:
        raise UnknownUserError("No such user.")
    return _user_answer(user)


@routes.post("/internal/users/{id}/password")
async def set_user_password(request: web.Request) -> web.Response:
    """Set a user's password (a reset by mail, proven by its link); audited.

    The gateway revokes the user's tokens and sessions; the backend refuses
    older identities too (tokens_valid_after). 422 names what is wrong with the
    password, 404 an unknown user.
    """
    user_id = parse_path_id(request.match_info["id"])
    password = parse_strings(await read_json_object(request), "password")["password"]
    problems = password_problems(password)
    if problems:
        raise ValidationError("json", {"password": problems})
    engine = request[keys.TENANT].engine
    async with engine.connect() as conn:
        user = await user_store.get_user(conn, user_id)
    if user is None:
        raise UnknownUserError("No such user.")
    new_hash = await request.app[keys.PASSWORDS].run(hash_password, password)
    async with engine.begin() as conn:
        await user_store.set_password_hash(
            conn,
            user.id,
            new_hash,
            actor=audit.Actor(user.id, user.username),
            event=user_store.PASSWORD_RESET,
        )
    request[keys.TENANT].principals.evict(user.id)
    logger.info("password reset by mail link", extra={"user_id": user.id})
    return respond({"user_id": user.id})
