"""The README names every setting and every command."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import Settings as GatewaySettings
from tenant_service.config import Settings as TenantSettings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize(
    ("prefix", "settings"), [("GATEWAY_", GatewaySettings), ("TENANT_", TenantSettings)]
)
def test_readme_names_every_setting(prefix: str, settings: type) -> None:
    missing = [
        f"{prefix}{field.name.upper()}"
        for field in dataclasses.fields(settings)
        if f"`{prefix}{field.name.upper()}`" not in README
    ]
    assert not missing


@pytest.mark.parametrize(
    "command",
    [
        "flexhost up",
        "flexhost tenants check",
        "flexhost admin",
        "flexhost gateway",
        "flexhost tenant",
        "flexhost worker",
        "flexhost deploy",
    ],
)
def test_readme_names_every_command(command: str) -> None:
    assert f"`{command}" in README
