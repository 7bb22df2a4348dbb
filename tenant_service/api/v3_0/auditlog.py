"""Audit logs of accounts, users and assets (FlexMeasures' `/<id>/auditlog`).

The records are written by the store functions that make the changes
(tenant_service/store/audit.py); these routes only read them, each in
FlexMeasures' shape: accounts a plain list with HTTP dates, users a list (or a
page with `?page=`), assets always a page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from aiohttp import web

from tenant_service import keys
from tenant_service.acl import may_read
from tenant_service.api import parse_page, parse_path_id
from tenant_service.api.v3_0 import (
    PREFIX,
    load_asset,
    naive_utc,
    principal,
    respond,
)
from tenant_service.api.v3_0.accounts import load_account
from tenant_service.errors import ForbiddenError, NotFoundError, ValidationError
from tenant_service.identity import ACCOUNT_ADMIN, Principal
from tenant_service.schemas.fields import parse_sort, search_terms
from tenant_service.store import audit
from tenant_service.store import users as user_store

routes = web.RouteTableDef()

USER_SORTS: Final = ("username", "email", "event_datetime", "lastLogin", "lastSeen")
ASSET_SORTS: Final = ("event_datetime",)


def http_date(moment: dt.datetime) -> str:
    """An HTTP date, as Flask's JSON encoder writes datetimes."""
    return moment.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def dump_record(record: audit.AuditRecord) -> dict[str, Any]:
    """One user or asset audit record."""
    return {
        "event": record.event,
        "event_datetime": naive_utc(record.event_datetime),
        "active_user_name": record.active_user_name,
        "active_user_id": record.active_user_id,
    }


class LogQuery:
    """page, per-page, filter, sort-by and sort-dir of an audit log request."""

    def __init__(self, query: Any, sorts: tuple[str, ...]) -> None:
        errors: dict[str, list[str]] = {}
        sort_by, sort_dir = parse_sort(query, sorts, errors)
        if errors:
            raise ValidationError("query", errors)
        self.page = parse_page(query)
        self.terms = search_terms(query["filter"]) if "filter" in query else []
        # Only the time sorts (FlexMeasures ignores the other sort-by values).
        given_dir = "sort-dir" in query or "sort_dir" in query
        self.descending: bool | None = (
            (sort_dir == "desc") if sort_by == "event_datetime" and given_dir else None
        )


def _page_body(
    records: list[audit.AuditRecord], total: int, matching: int
) -> dict[str, Any]:
    return {
        "data": [dump_record(r) for r in records],
        "num-records": total,
        "filtered-records": matching,
    }


def _may_read_account_log(
    who: Principal, account_id: int, consultancy: int | None
) -> bool:
    """Account-admins of it, consultants of its consultancy, admin(-reader)s."""
    return (
        who.reads_all
        or (account_id == who.account_id and ACCOUNT_ADMIN in who.roles)
        or who.consults(consultancy)
    )


@routes.get(PREFIX + "/accounts/{id}/auditlog")
async def get_account_auditlog(request: web.Request) -> web.Response:
    """Get the history of actions for a specific account."""
    account = await load_account(request)
    if not _may_read_account_log(
        principal(request), account.id, account.consultancy_account_id
    ):
        raise ForbiddenError()
    records, _, _ = await audit.records(request[keys.CONN], "account", account.id)
    return respond(
        [
            {
                "event": r.event,
                "event_datetime": http_date(r.event_datetime),
                "active_user_id": r.active_user_id,
            }
            for r in records
        ]
    )


@routes.get(PREFIX + "/users/{id}/auditlog")
async def get_user_auditlog(request: web.Request) -> web.Response:
    """Get history of user actions."""
    user_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    user = await user_store.get_user(conn, user_id)
    if user is None:
        raise NotFoundError(f"User {user_id} not found")
    who = principal(request)
    if user.id != who.user_id and not _may_read_account_log(
        who, user.account_id, user.consultancy_account_id
    ):
        raise ForbiddenError()
    params = LogQuery(request.query, USER_SORTS)
    page = params.page
    records, total, matching = await audit.records(
        conn,
        "user",
        user.id,
        terms=params.terms,
        descending=params.descending,
        offset=page.offset,
        limit=page.limit,
    )
    if page.number is None:
        return respond([dump_record(r) for r in records])
    return respond(_page_body(records, total, matching))


@routes.get(PREFIX + r"/assets/{id:\d+}/auditlog")
async def get_asset_auditlog(request: web.Request) -> web.Response:
    """Get history of asset related actions."""
    asset_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    asset = await load_asset(conn, asset_id)
    if not may_read(principal(request), asset.owner):
        raise ForbiddenError()
    params = LogQuery(request.query, ASSET_SORTS)
    page = params.page
    number = page.number or 1  # FlexMeasures always pages this log
    records, total, matching = await audit.records(
        conn,
        "asset",
        asset.id,
        terms=params.terms,
        descending=params.descending,
        offset=(number - 1) * page.per_page,
        limit=page.per_page,
    )
    return respond(_page_body(records, total, matching))
