"""Accounts API (FlexMeasures /api/v3_0/accounts)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tenant_service import keys
from tenant_service.api import parse_page, parse_path_id
from tenant_service.api.v3_0 import PREFIX, principal, respond
from tenant_service.errors import ForbiddenError, ValidationError
from tenant_service.identity import CONSULTANT
from tenant_service.store import accounts as account_store
from tenant_service.store.accounts import AccountRecord

routes = web.RouteTableDef()


def dump_account(account: AccountRecord) -> dict[str, Any]:
    """FlexMeasures' AccountSchema dump (attributes as a JSON string, as FM does)."""
    return {
        "id": account.id,
        "name": account.name,
        "primary_color": account.primary_color,
        "secondary_color": account.secondary_color,
        "logo_url": account.logo_url,
        "attributes": account.attributes,
        "account_roles": [{"id": i, "name": n} for i, n in account.account_roles],
        "consultancy_account_id": account.consultancy_account_id,
    }


@routes.get(PREFIX + "/accounts")
async def get_accounts(request: web.Request) -> web.Response:
    """List all accounts accessible to the current user."""
    who = principal(request)
    page = parse_page(request.query)
    visible = None if who.reads_all else (who.account_id, CONSULTANT in who.roles)
    conn = request[keys.CONN]
    records, total = await account_store.list_accounts(
        conn, visible_to=visible, offset=page.offset, limit=page.limit
    )
    data = [dump_account(account) for account in records]
    if page.number is None:
        return respond(data)
    return respond({"data": data, "num-records": total, "filtered-records": total})


@routes.get(PREFIX + "/accounts/{id}")
async def get_account(request: web.Request) -> web.Response:
    """Fetch a given account."""
    account_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    account = await account_store.get_account(conn, account_id)
    if account is None:
        raise ValidationError(
            "path", {"id": [f"No account found with id {account_id}."]}
        )
    if not principal(request).may_read_account(
        account.id, account.consultancy_account_id
    ):
        raise ForbiddenError()
    return respond(dump_account(account))
