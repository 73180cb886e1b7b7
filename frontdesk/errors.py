"""Errors with codes: the one exception type the app raises on purpose, and its rendering.

Every error body is `{"error": {"code", "message"}}` (docs/protocol.md). Routers and actions raise
`AppError`; the handlers in `install_error_handlers` turn it, validation failures and stray HTTP
errors into that shape, so a client never sees a framework's default body or a 500 for bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from frontdesk.observability.context import request_id_var

log = logging.getLogger(__name__)

ServerErrorHook = Callable[[Request, Exception], Awaitable[str | None]]


class AppError(Exception):
    """An expected failure with a stable code, a human message and an HTTP status."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def invalid_request(message: str) -> AppError:
    return AppError("invalid_request", message, 422)


def not_found(message: str = "Not found.") -> AppError:
    return AppError("not_found", message, 404)


def unauthorized(message: str = "Authentication is required.") -> AppError:
    return AppError("unauthorized", message, 401, {"WWW-Authenticate": "Bearer"})


def forbidden(message: str = "You may not do this.") -> AppError:
    return AppError("forbidden", message, 403)


_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _describe_validation(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is invalid."
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "is invalid"))
    return f"{location}: {message}" if location else message


def error_response(error: AppError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI, on_server_error: ServerErrorHook | None = None) -> None:
    """Register the handlers that give every error the contract's shape; `on_server_error` is
    told of every unhandled exception first (it records the error group and returns its id,
    which the log line then names)."""

    async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(invalid_request(_describe_validation(exc)))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        code = _STATUS_CODES.get(status, "error")
        detail = exc.detail if isinstance(exc.detail, str) else "The request failed."
        if status == 404:
            detail = "Not found."
        elif status == 400:
            # The framework's "error parsing the body": invalid UTF-8, absurd nesting, numbers
            # beyond parsing limits. The contract calls all bad input invalid_request (422).
            status, detail = 422, "The request body could not be parsed as JSON."
        return JSONResponse(
            {"error": {"code": code, "message": detail}},
            status_code=status,
            headers=getattr(exc, "headers", None),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # This handler runs outside the request-id middleware: bring the request's id back so
        # that the log line and the stored error carry it.
        request_id = getattr(request.state, "request_id", None)
        token = request_id_var.set(request_id)
        try:
            group_id = None
            if on_server_error is not None:
                try:
                    group_id = await on_server_error(request, exc)
                except Exception:
                    log.warning("reporting a server error failed", exc_info=True)
            extra = {"error_group_id": group_id} if group_id else {}
            log.exception("unhandled error", exc_info=exc, extra=extra)
        finally:
            request_id_var.reset(token)
        return JSONResponse(
            {"error": {"code": "internal_error", "message": "Something went wrong on our side."}},
            status_code=500,
            headers={"X-Request-ID": request_id} if request_id else None,
        )

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
