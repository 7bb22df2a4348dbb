"""Assets API, the rest of FlexMeasures 1.0.1's asset routes: copy, jobs, and the
user preferences `default_asset_view` and `keep_legends_below_graphs`.

Decisions:
- The two preferences are stored per user (FlexMeasures keeps them in the browser
  session, so there an API token's setting is lost after the request); the answers
  are FlexMeasures' own. `GET /api/v3_0/users/<id>` does not show them.
- `copy` drops references to private sensors outside the copied tree from lists
  (FlexMeasures leaves a placeholder there that breaks the copy); a copy target
  inside the copied tree is a 422 with a plain message (FlexMeasures nests it as
  `{"json": "..."}`).
- `jobs` lists every job of the tenant's queue whose meta names the asset
  (`asset_id`) or one of its sensors (`sensor_id`, `sensors`): schedules and
  forecasts alike, oldest first per entity.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from email.utils import format_datetime
from typing import Any, Final

import redis
from aiohttp import web
from sqlalchemy import select

from tenant_service import acl, keys
from tenant_service.acl import Owner
from tenant_service.api import NOT_BOOLEAN, NOT_INTEGER, UNKNOWN_FIELD, parse_path_id
from tenant_service.api.v3_0 import (
    PREFIX,
    actor,
    load_asset,
    principal,
    read_json_object,
    respond,
    writing,
)
from tenant_service.config import Settings
from tenant_service.errors import (
    ForbiddenError,
    NotFoundError,
    UnprocessableError,
    ValidationError,
)
from tenant_service.scheduling import jobs
from tenant_service.store import accounts as account_store
from tenant_service.store import asset_copy, audit, preferences
from tenant_service.store import assets as asset_store
from tenant_service.store.tables import sensors

routes = web.RouteTableDef()

ASSET_VIEWS: Final = ("Audit Log", "Context", "Graphs", "Properties", "Status")
_NO_REASON: Final = (
    "The job does not state why it failed. The worker may be missing an exception "
    "handler, or its exception handler is not storing the exception as job meta data."
)


@routes.post(PREFIX + r"/assets/{id:\d+}/copy")
async def copy_asset(request: web.Request) -> web.Response:
    """Copy an asset to a target account and/or parent."""
    asset_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    who = principal(request)
    asset = await load_asset(conn, asset_id)
    if not acl.may_read(who, asset.owner):
        raise ForbiddenError()
    query = request.query
    ids: dict[str, int] = {}
    for name in ("account", "parent"):
        if name in query:
            text = query[name].strip()
            if not text.isdecimal() or len(text) > 18:
                raise ValidationError("query", {name: [NOT_INTEGER]})
            ids[name] = int(text)
    account = None
    if "account" in ids:
        account = await account_store.get_account(conn, ids["account"])
        if account is None:
            raise NotFoundError(f"Account {ids['account']} not found")
    parent = None
    if "parent" in ids:
        parent = await asset_store.get_asset(conn, ids["parent"])
        if parent is None:
            raise ValidationError(
                "query", {"parent": [f"No asset found with ID {ids['parent']}."]}
            )
    # Where the copy goes (FlexMeasures' resolution rules).
    account_id: int | None = asset.account_id
    parent_id: int | None = asset.parent_asset_id
    if account is not None:
        account_id, parent_id = account.id, None
    if parent is not None:
        parent_id = parent.id
        if account is None:
            account_id = parent.account_id
    # Who may place it there: the parent's create-children, else the account's.
    if parent_id is not None:
        target_parent = parent or await load_asset(conn, parent_id)
        if not acl.may_update_asset(who, target_parent.owner):
            raise ForbiddenError()
    elif account_id is not None:
        consultancy = (
            account.consultancy_account_id
            if account is not None
            else asset.consultancy_account_id
        )
        if not acl.is_account_admin(who, Owner(account_id, consultancy)):
            raise ForbiddenError()
    elif not who.is_admin:
        raise ForbiddenError(
            "Only site admins may create public assets (account_id=None)."
        )
    if parent_id is not None and await asset_copy.is_in_subtree(
        conn, asset.id, parent_id
    ):
        raise UnprocessableError(
            "Invalid copy target parent: cannot copy an asset to itself or any of "
            "its descendants."
        )
    conn = await writing(request)
    name = await asset_copy.copy_name(conn, asset.name, account_id, parent_id)
    new_id = await asset_copy.copy_subtree(
        conn, asset.id, account_id=account_id, parent_id=parent_id, name=name
    )
    await audit.record_asset(
        conn,
        actor(request),
        new_id,
        f"Copied asset '{asset.name}': {asset.id} to '{name}': {new_id}",
    )
    await conn.commit()
    if "parent" not in query and "account" not in query:
        message = f"Successfully copied asset {asset.id}."
    elif "account" not in query:
        message = f"Successfully copied asset {asset.id} to parent asset {parent_id}."
    elif "parent" not in query:
        message = f"Successfully copied asset {asset.id} to account {account_id}."
    else:
        message = (
            f"Successfully copied asset {asset.id} to account {account_id} "
            f"under parent {parent_id}."
        )
    return respond({"message": message, "asset": new_id}, status=201)


def _job_entry(
    entry: jobs.EntityJob, names: dict[tuple[str, int], str]
) -> dict[str, Any]:
    job = entry.job
    failed = job.is_failed
    err = None
    if failed:
        found = job.meta.get("exception")
        err = (
            f"Scheduling job failed with {found.get('type')}: {found.get('message')}"
            if isinstance(found, dict)
            else f"Scheduling job failed with Exception: {_NO_REASON}"
        )
    metadata = json.dumps({**job.meta, "job_id": job.id}, default=str, indent=4)
    name = names.get((entry.kind, entry.entity_id), "")
    enqueued = job.enqueued_at
    return {
        "asset_or_sensor_type": entry.kind,
        "enqueued_at": None
        if enqueued is None
        else format_datetime(enqueued.replace(tzinfo=dt.UTC), usegmt=True),
        "entity": f"{entry.kind}: {name} (Id: {entry.entity_id})",
        "err": err,
        "job_id": job.id,
        "metadata": metadata,
        "metadata_hash": hashlib.sha256(metadata.encode()).hexdigest(),
        "queue": entry.queue,
        "status": job.get_status(refresh=False).value,
    }


@routes.get(PREFIX + r"/assets/{id:\d+}/jobs")
async def get_asset_jobs(request: web.Request) -> web.Response:
    """Get all background jobs related to an asset."""
    asset_id = parse_path_id(request.match_info["id"])
    conn = request[keys.CONN]
    asset = await load_asset(conn, asset_id)
    if not acl.may_read(principal(request), asset.owner):
        raise ForbiddenError()
    rows = (
        await conn.execute(
            select(sensors.c.id, sensors.c.name).where(
                sensors.c.generic_asset_id == asset.id
            )
        )
    ).all()
    names = {("asset", asset.id): asset.name}
    names.update({("sensor", row.id): row.name for row in rows})
    connection = request.app.get(keys.JOB_REDIS)
    if connection is None:
        return respond({"jobs": [], "redis_connection_err": "Redis not configured"})
    settings: Settings = request[keys.TENANT].settings
    try:
        found = await asyncio.to_thread(
            jobs.entity_jobs,
            connection,
            settings,
            asset.id,
            {row.id for row in rows},
        )
    except (redis.ConnectionError, redis.TimeoutError):
        return respond({"jobs": [], "redis_connection_err": "Redis is not reachable."})
    return respond(
        {
            "jobs": [_job_entry(entry, names) for entry in found],
            "redis_connection_err": None,
        }
    )


def _optional_bool(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValidationError("json", {key: [NOT_BOOLEAN]})
    return value


@routes.post(PREFIX + "/assets/default_asset_view")
async def post_default_asset_view(request: web.Request) -> web.Response:
    """Update the default asset view for the current user"""
    data = await read_json_object(request)
    errors: dict[str, list[str]] = {}
    for key in data:
        if key not in ("default_asset_view", "use_as_default"):
            errors[key] = [UNKNOWN_FIELD]
    view = data.get("default_asset_view")
    if "default_asset_view" not in data:
        errors["default_asset_view"] = ["Missing data for required field."]
    elif view not in ASSET_VIEWS:
        errors["default_asset_view"] = [f"Must be one of: {', '.join(ASSET_VIEWS)}."]
    try:
        use = _optional_bool(data, "use_as_default", True)
    except ValidationError as err:
        errors.update(err.errors)
    if errors:
        raise ValidationError("json", errors)
    conn = await writing(request)
    await preferences.set_preference(
        conn, principal(request).user_id, "default_asset_view", view if use else None
    )
    await conn.commit()
    return respond({"message": "Default asset view updated successfully."})


@routes.post(PREFIX + "/assets/keep_legends_below_graphs")
async def post_keep_legends_below_graphs(request: web.Request) -> web.Response:
    """Toggle whether for the current user legends should always be combined below graphs or shown to the right (per graph) above a certain number."""  # noqa: E501 - FlexMeasures' own summary, listed at GET /api/v3_0
    data = await read_json_object(request)
    unknown = {
        key: [UNKNOWN_FIELD] for key in data if key != "keep_legends_below_graphs"
    }
    if unknown:
        raise ValidationError("json", unknown)
    keep = _optional_bool(data, "keep_legends_below_graphs", True)
    conn = await writing(request)
    await preferences.set_preference(
        conn, principal(request).user_id, "keep_legends_below_graphs", keep or None
    )
    await conn.commit()
    return respond({"message": "Default legend position updated successfully."})
