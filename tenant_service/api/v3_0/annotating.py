"""Annotations API: POST /api/v3_0/{accounts,assets,sensors}/<id>/annotations.

As FlexMeasures 1.0.1: an annotation (content, start, end, type, prior, source = the
poster's data source) is stored once and attached to each account, asset or sensor
it is posted to; posting the same one again (same content, start, end, type and
source) attaches the stored one and answers 200 with it instead of 201. Who may post:
FlexMeasures' "create-children" permission (accounts: their account-admins,
consultants of their consultancy, admins; assets and sensors: any member of the
owning account, its consultants, admins).

Decisions: an unknown asset id is 404, as on every /assets/<id> route (FlexMeasures:
422 on this route); a non-string start/end is a 422 (FlexMeasures: 500).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from aiohttp import web
from sqlalchemy import Table

from tenant_service import acl, keys
from tenant_service.acl import Owner
from tenant_service.api import NOT_STRING, UNKNOWN_FIELD, parse_path_id
from tenant_service.api.v3_0 import (
    PREFIX,
    load_asset,
    load_sensor,
    principal,
    read_json_object,
    writing,
)
from tenant_service.errors import ForbiddenError, NotFoundError, ValidationError
from tenant_service.store import accounts as account_store
from tenant_service.store import annotations as store
from tenant_service.store import sources
from tenant_service.store.tables import ANNOTATION_TYPES
from tenant_service.timing import (
    TimingError,
    from_epoch_ms,
    parse_datetime,
    to_epoch_ms,
)

routes = web.RouteTableDef()

MISSING: Final = "Missing data for required field."
FIELDS: Final = frozenset({"content", "start", "end", "type", "prior"})


def _time(value: object) -> int:
    if not isinstance(value, str):
        raise TimingError("Not a valid datetime.")
    return to_epoch_ms(parse_datetime(value))


def parse_annotation(data: dict[str, Any]) -> dict[str, Any]:
    """FlexMeasures' AnnotationSchema load; one 422 naming each bad field."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {"type": "label", "belief_time": None}
    for key, value in data.items():
        if key not in FIELDS:
            errors[key] = [UNKNOWN_FIELD]
        elif key == "content":
            if not isinstance(value, str):
                errors[key] = [NOT_STRING]
            elif len(value) > 1024:
                errors[key] = ["Longer than maximum length 1024."]
            else:
                values["content"] = value
        elif key == "type":
            if value not in ANNOTATION_TYPES:
                errors[key] = [f"Must be one of: {', '.join(ANNOTATION_TYPES)}."]
            else:
                values["type"] = value
        elif key == "prior" and value is None:
            values["belief_time"] = None
        else:
            try:
                values["belief_time" if key == "prior" else key] = _time(value)
            except TimingError as err:
                errors[key] = [str(err)]
    for key in ("content", "start", "end"):
        if key not in data:
            errors[key] = [MISSING]
    if errors:
        raise ValidationError("json", errors)
    if values["end"] <= values["start"]:
        raise ValidationError("json", {"_schema": ["end must be after start"]})
    return values


def _iso(ms: int | None) -> str | None:
    return None if ms is None else from_epoch_ms(ms, dt.UTC).isoformat()


def dump_annotation(annotation: store.Annotation) -> dict[str, Any]:
    """FlexMeasures' AnnotationSchema dump (times in UTC)."""
    return {
        "content": annotation.content,
        "end": _iso(annotation.end),
        "id": annotation.id,
        "prior": _iso(annotation.belief_time),
        "source": annotation.source_id,
        "start": _iso(annotation.start),
        "type": annotation.type,
    }


async def _post(
    request: web.Request, link: tuple[Table, str], target_id: int
) -> web.Response:
    values = parse_annotation(await read_json_object(request))
    conn = await writing(request)
    source_id = await sources.user_source_id(conn, principal(request).user_id)
    annotation, new = await store.get_or_create(
        conn,
        content=values["content"],
        start=values["start"],
        end=values["end"],
        belief_time=values["belief_time"],
        source_id=source_id,
        type_=values["type"],
    )
    await store.attach(conn, link, target_id, annotation.id)
    await conn.commit()
    return web.json_response(dump_annotation(annotation), status=201 if new else 200)


@routes.post(PREFIX + r"/accounts/{id:\d+}/annotations")
async def post_account_annotation(request: web.Request) -> web.Response:
    """Add an annotation to an account."""
    account_id = parse_path_id(request.match_info["id"])
    account = await account_store.get_account(request[keys.CONN], account_id)
    if account is None:
        raise NotFoundError(f"Account {account_id} not found")
    owner = Owner(account.id, account.consultancy_account_id)
    if not acl.is_account_admin(principal(request), owner):
        raise ForbiddenError()
    return await _post(request, store.ACCOUNT, account.id)


@routes.post(PREFIX + r"/assets/{id:\d+}/annotations")
async def post_asset_annotation(request: web.Request) -> web.Response:
    """Add an annotation to an asset."""
    asset = await load_asset(
        request[keys.CONN], parse_path_id(request.match_info["id"])
    )
    if not acl.may_update_asset(principal(request), asset.owner):
        raise ForbiddenError()
    return await _post(request, store.ASSET, asset.id)


@routes.post(PREFIX + r"/sensors/{id:\d+}/annotations")
async def post_sensor_annotation(request: web.Request) -> web.Response:
    """Add an annotation to a sensor."""
    sensor = await load_sensor(
        request[keys.CONN], parse_path_id(request.match_info["id"])
    )
    if not acl.may_post_data(principal(request), sensor.owner):
        raise ForbiddenError()
    return await _post(request, store.SENSOR, sensor.id)
