"""The OpenAPI document stays true: valid 3.1, and the same routes as the app."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from tenant_service.api.v3_0.docs import SWAGGER_FILES, load_spec
from tests.helpers.openapi import METHODS, PATH_VARIABLE_RE, app_routes, documented
from tests.helpers.stack import COMPANY, Stack


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def test_openapi_is_valid_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(spec).validate()
    assert spec["servers"] == [{"url": "/", "description": "this tenant's host"}]
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": spec["components"]["securitySchemes"]["ApiKeyAuth"][
            "description"
        ],
    }


def test_openapi_documents_every_route_of_the_app(spec: dict[str, Any]) -> None:
    missing = app_routes() - documented(spec, gateway=False)
    assert not missing, f"routes of the app not in openapi.yaml: {sorted(missing)}"


def test_openapi_documents_only_routes_of_the_app(spec: dict[str, Any]) -> None:
    extra = documented(spec, gateway=False) - app_routes()
    assert not extra, f"openapi.yaml documents routes the app lacks: {sorted(extra)}"


def test_openapi_gateway_routes_are_marked(spec: dict[str, Any]) -> None:
    assert documented(spec, gateway=True) == {
        ("GET", "/api/"),
        ("POST", "/api/requestAuthToken"),
    }


def test_openapi_operations_declare_their_errors(spec: dict[str, Any]) -> None:
    """Path variables are declared; protected operations document 401."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            where = f"{method.upper()} {path}"
            params = [*item.get("parameters", []), *operation.get("parameters", [])]
            names = set()
            for param in params:
                if "$ref" in param:
                    param = spec["components"]["parameters"][
                        param["$ref"].rsplit("/")[-1]
                    ]
                if param["in"] == "path":
                    names.add(param["name"])
            assert names == set(PATH_VARIABLE_RE.findall(path)), where
            assert operation.get("summary"), where
            if operation.get("security", spec["security"]):
                assert "401" in operation["responses"], where


def test_openapi_error_envelopes(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["ValidationError"]["properties"]["status"]["const"] == (
        "UNPROCESSABLE_ENTITY"
    )
    assert schemas["Unauthorized"]["properties"]["status"]["const"] == "UNAUTHORIZED"
    assert schemas["Forbidden"]["properties"]["status"]["const"] == "INVALID_SENDER"
    assert schemas["PayloadTooLarge"]["properties"]["status"]["const"] == (
        "PAYLOAD_TOO_LARGE"
    )
    assert schemas["InvalidReplacement"]["properties"]["status"]["const"] == (
        "INVALID_REPLACEMENT"
    )
    assert schemas["AlreadyReceived"]["properties"]["status"]["const"] == (
        "ALREADY_RECEIVED_AND_SUCCESSFULLY_PROCESSED"
    )


async def test_openapi_and_docs_are_public_through_the_gateway(
    stack: Stack,
    spec: dict[str, Any],
) -> None:
    gateway = stack.gateway
    response = await gateway.get("/api/v3_0/openapi.json", headers=COMPANY)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == spec
    response = await gateway.get("/api/v3_0/docs", headers=COMPANY)
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "swagger-ui-bundle.js" in page
    for name in ("flexhost-init.js", *sorted(SWAGGER_FILES)):
        response = await gateway.get(f"/api/v3_0/docs/{name}", headers=COMPANY)
        assert response.status == 200, name
        assert len(await response.read()) > 0, name
    response = await gateway.get("/api/v3_0/docs/nothing.js", headers=COMPANY)
    assert response.status == 404
    assert (await response.json())["status"] == 404


async def test_docs_public_rule_stays_tight(stack: Stack) -> None:
    """Only one file name below docs/ is public; everything else needs a token."""
    for path in (
        "/api/v3_0/docs/x/swagger-ui.css",
        "/api/v3_0/docs/../users",
        "/api/v3_0/docs/%2e%2e/users",
        "/api/v3_0/docsx",
        "/api/v3_0/users",
    ):
        response = await stack.gateway.get(path, headers=COMPANY)
        assert response.status == 401, path
    response = await stack.gateway.post(
        "/api/v3_0/docs/swagger-ui.css", headers=COMPANY
    )
    assert response.status == 401
