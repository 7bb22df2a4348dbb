"""More asset and sensor pages, as FlexMeasures 1.0.1's UI has them: an asset's
audit log and its data status, copying an asset, deleting a sensor.

Every read and write is a call to the tenant's v3_0 API as the signed-in user
(gateway/web/calls.py): the API decides who may do what, and its refusals are shown
as they come. Forms carry the session's CSRF secret.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web

from gateway.errors import ApiError
from gateway.web import render
from gateway.web.assets import may_administer, may_edit
from gateway.web.calls import (
    MAX_PAGE,
    Answer,
    BackendAnswerError,
    PageError,
    audit_log,
    call,
    checked_form,
    data_count,
    error_page,
    int_param,
    listing,
    page_user,
    redirect,
    refusal,
    unavailable,
)
from gateway.web.sessions import PageUser
from gateway.web.values import int_of, link, text_of, when

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

ID: Final = r"{id:\d{1,18}}"
# The status page asks for the status of at most this many sensors (one call each).
MAX_STATUSES: Final = 50


async def _record(
    request: web.Request, user: PageUser, what: str, object_id: int
) -> dict[str, Any]:
    """GET /assets/<id> or /sensors/<id>; PageError unless it is readable."""
    answer = await call(request, user, f"/{what}s/{object_id}")
    if answer.status != 200 or not isinstance(answer.body, dict):
        raise refusal(answer, f"{what} with ID {object_id}")
    return answer.body


def _refused(answer: Answer, doing: str) -> PageError:
    """The page for the API's refusal of an action (its own message if any)."""
    message = answer.message()
    if answer.status == 403:
        return PageError(
            403,
            f"You may not {doing}: {message or 'the API refused'} (403 Forbidden).",
        )
    if answer.status in (404, 422):
        return PageError(
            answer.status, message or f"Could not {doing} ({answer.status})."
        )
    return PageError(502, message or "The backend gave an unreadable answer.")


# --- an asset's audit log ------------------------------------------------------------


@routes.get(f"/assets/{ID}/auditlog")
async def get_asset_auditlog(request: web.Request) -> web.Response:
    """The asset's audit log (newest first, paged)."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    log_page = int_param(request, "log_page", 1, most=MAX_PAGE)
    try:
        asset = await _record(request, user, "asset", asset_id)
        log = await audit_log(request, user, f"/assets/{asset_id}/auditlog", log_page)
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    return render(
        request,
        "asset_auditlog.html",
        {"user": user, "asset": asset, "log": log, "link": link},
    )


# --- an asset's data status ----------------------------------------------------------


def status_rows(
    sensor: dict[str, Any], asset_name: str, answer: Answer
) -> list[dict[str, Any]]:
    """The status page's rows of one sensor: one per source type (the API's)."""
    base = {
        "id": int_of(sensor.get("id")),
        "name": text_of(sensor.get("name")) or f"Sensor {sensor.get('id')}",
        "asset": asset_name,
    }
    body = answer.body if isinstance(answer.body, dict) else {}
    data = body.get("sensors_data")
    if answer.status != 200 or not isinstance(data, list):
        why = answer.message() or f"The API answered {answer.status}."
        return [{**base, "stale": None, "reason": why}]
    rows = []
    for item in data:
        if not isinstance(item, dict):
            continue
        stale = item.get("stale")
        rows.append(
            {
                **base,
                "relation": text_of(item.get("relation")),
                "source_type": text_of(item.get("source_type")),
                "stale": stale if isinstance(stale, bool) else None,
                "reason": text_of(item.get("reason")),
                "since": when(item.get("staleness_since")),
            }
        )
    return rows


@routes.get(f"/assets/{ID}/status")
async def get_asset_status(request: web.Request) -> web.Response:
    """Whether the data of each sensor of the asset and of its children is stale."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    try:
        asset = await _record(request, user, "asset", asset_id)
        tree, _ = await listing(
            request,
            user,
            "assets",
            {"root": str(asset_id), "fields": "id,name,sensors,parent_asset_id"},
        )
        sensors: list[tuple[bool, int, dict[str, Any], str]] = []
        for raw in tree:
            if not isinstance(raw, dict):
                continue
            child = raw.get("id") != asset_id
            name = text_of(raw.get("name"))
            sensors.extend(
                (child, sensor["id"], sensor, name)
                for sensor in raw.get("sensors") or ()
                if isinstance(sensor, dict) and int_of(sensor.get("id")) is not None
            )
        # The asset's own sensors first, then its children's, each by ID.
        sensors.sort(key=lambda entry: entry[:2])
        rows: list[dict[str, Any]] = []
        for _, _, sensor, name in sensors[:MAX_STATUSES]:
            answer = await call(request, user, f"/sensors/{sensor['id']}/status")
            rows.extend(status_rows(sensor, name, answer))
    except PageError as err:
        return error_page(request, user, err)
    except BackendAnswerError as err:
        return error_page(
            request, user, PageError(err.status, err.message or "Unavailable.")
        )
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    return render(
        request,
        "asset_status.html",
        {
            "user": user,
            "asset": asset,
            "rows": rows,
            "stale": sum(1 for row in rows if row["stale"]),
            "cut": len(sensors) > MAX_STATUSES,
            "most": MAX_STATUSES,
        },
    )


# --- copy an asset -------------------------------------------------------------------


def may_copy(user: PageUser, asset: dict[str, Any]) -> bool:
    """Whether the API would let the user copy the asset next to itself: who may
    add children to its parent, or (no parent) an account-admin of its account."""
    if int_of(asset.get("parent_asset_id")) is not None:
        return may_edit(user, asset.get("account_id"))
    return may_administer(user, asset.get("account_id"))


@routes.post(f"/assets/{ID}/copy")
async def post_copy_asset(request: web.Request) -> web.Response:
    """Copy the asset (with its children and sensors, not their data) next to it."""
    user = await page_user(request)
    asset_id = int(request.match_info["id"])
    await checked_form(request, user)
    try:
        answer = await call(request, user, f"/assets/{asset_id}/copy", method="POST")
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    body = answer.body if isinstance(answer.body, dict) else {}
    new_id = int_of(body.get("asset"))
    if answer.status == 201 and new_id is not None:
        logger.info(
            "asset %d copied on a page to %d",
            asset_id,
            new_id,
            extra={"user_id": user.user_id},
        )
        return redirect(f"/assets/{new_id}?notice=copied")
    return error_page(request, user, _refused(answer, f"copy asset {asset_id}"))


# --- delete a sensor -----------------------------------------------------------------


@routes.get(f"/sensors/{ID}/delete")
async def get_delete_sensor(request: web.Request) -> web.Response:
    """What deleting the sensor deletes (its data), to confirm."""
    user = await page_user(request)
    sensor_id = int(request.match_info["id"])
    try:
        sensor = await _record(request, user, "sensor", sensor_id)
        asset_id = int_of(sensor.get("generic_asset_id"))
        asset = (
            None
            if asset_id is None
            else await _record(request, user, "asset", asset_id)
        )
        values = await data_count(request, user, sensor_id)
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    return render(
        request,
        "sensor_delete.html",
        {
            "user": user,
            "sensor": sensor,
            "asset": asset,
            "values": values,
            "may_delete": asset is not None
            and may_administer(user, asset.get("account_id")),
        },
    )


@routes.post(f"/sensors/{ID}/delete")
async def post_delete_sensor(request: web.Request) -> web.Response:
    """Delete the sensor and its data with the API; back to its asset's page."""
    user = await page_user(request)
    sensor_id = int(request.match_info["id"])
    await checked_form(request, user)
    try:
        sensor = await _record(request, user, "sensor", sensor_id)
        answer = await call(request, user, f"/sensors/{sensor_id}", method="DELETE")
    except PageError as err:
        return error_page(request, user, err)
    except ApiError as err:
        return error_page(request, user, unavailable(err))
    if answer.status in (200, 204):
        logger.info(
            "sensor %d deleted on a page", sensor_id, extra={"user_id": user.user_id}
        )
        asset_id = int_of(sensor.get("generic_asset_id"))
        where = "/assets" if asset_id is None else f"/assets/{asset_id}"
        return redirect(f"{where}?notice=sensor-deleted")
    return error_page(request, user, _refused(answer, f"delete sensor {sensor_id}"))
