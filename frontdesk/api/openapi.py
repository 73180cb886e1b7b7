"""The OpenAPI document: FastAPI's, with the error shape the API really returns.

FastAPI documents validation failures as `{"detail": [...]}`; FrontDesk answers every error as
`{"error": {"code", "message"}}`. This replaces that schema and documents the common error
statuses on every operation, so generated clients and schema-driven tests see the truth.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "A stable snake_case code."},
                "message": {"type": "string", "description": "A human sentence."},
            },
        }
    },
}
COMMON_ERRORS = {
    "401": "Missing or invalid credentials (`unauthorized`, `token_expired`).",
    "403": "Not allowed (`forbidden`, `origin_not_allowed`).",
    "404": "Not found (`not_found`, `site_not_found`).",
    "413": "The body is too large (`payload_too_large`).",
    "422": "Invalid input (`invalid_request`).",
    "429": "Rate limited (`rate_limited`); see `Retry-After`.",
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["Error"] = ERROR_SCHEMA
        reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in COMMON_ERRORS.items():
                    if status not in responses or status == "422":
                        responses[status] = {"description": description, "content": reference}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
