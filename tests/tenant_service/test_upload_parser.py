"""Property tests of the upload parser: any body or file gives rows or our 422."""

from __future__ import annotations

from typing import Final

from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_service.acl import Owner
from tenant_service.errors import ValidationError
from tenant_service.schemas.sensor_upload import form_parts, upload_rows
from tenant_service.store.sensors import SensorRecord

SENSOR: Final = SensorRecord(
    id=1,
    name="power",
    unit="kW",
    timezone="Europe/Amsterdam",
    event_resolution_ms=15 * 60_000,
    knowledge_horizon_fnc=None,
    knowledge_horizon_par="{}",
    attributes="{}",
    generic_asset_id=1,
    owner=Owner(1, None),
)
BOUNDARY: Final = "b0undary"
CELLS: Final = st.one_of(
    st.sampled_from(
        ["2026-02-01T00:00:00+00:00", "2026-02-01T00:15:00", "x", "", "1.5", "NaN"]
    ),
    st.text(max_size=12),
    st.floats(allow_nan=True).map(str),
)


def body_of(csv_text: bytes, *fields: tuple[str, str]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="uploaded-files"; '
        'filename="d.csv"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        + csv_text
        + b"\r\n"
    ]
    parts += [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        f"{value}\r\n".encode()
        for name, value in fields
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def rows_or_422(body: bytes, content_type: str) -> None:
    try:
        rows = upload_rows(content_type, body, SENSOR, limit=10_000, now_ms=0)
    except ValidationError:
        return
    assert all(len(row) == 3 for row in rows)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=8),
    st.sampled_from([None, "MW", "kWh", "EUR", "°C", ""]),
    st.sampled_from([None, "True", "off", "maybe"]),
)
def test_upload_rows_of_any_table(
    table: list[list[str]], unit: str | None, instantly: str | None
) -> None:
    text = "\n".join(",".join(row) for row in [["a", "b"], *table])
    fields = [
        (name, value)
        for name, value in (
            ("unit", unit),
            ("belief-time-measured-instantly", instantly),
        )
        if value is not None
    ]
    rows_or_422(
        body_of(text.encode(), *fields), f"multipart/form-data; boundary={BOUNDARY}"
    )


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=40))
def test_upload_rows_of_any_bytes(data: bytes, content_type: str) -> None:
    rows_or_422(data, content_type)
    rows_or_422(body_of(data), f"multipart/form-data; boundary={BOUNDARY}")
    form_parts(f"multipart/form-data; boundary={BOUNDARY}", data)
