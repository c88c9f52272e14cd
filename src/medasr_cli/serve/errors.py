"""OpenAI-shaped API errors: ``{"error": {"message", "type", "param", "code"}}`` with real statuses.

Every failure a client can cause maps to a 4xx naming the parameter; 503 carries
``Retry-After``; only unexpected bugs become 500, logged with the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered to the client in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        """This error as a response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None, code: str = "invalid_value") -> APIError:
    """400 for a bad parameter (named in ``param``)."""
    return APIError(400, message, param=param, code=code)


def unavailable(message: str, retry_after_s: int, code: str) -> APIError:
    """503 with Retry-After: the model is loading or the queue is full."""
    return APIError(
        503,
        message,
        type="server_error",
        code=code,
        headers={"Retry-After": str(retry_after_s)},
    )


def internal_error(request_id: str) -> APIError:
    """500 for a real bug; the message carries the request id to find the logged traceback."""
    return APIError(
        500,
        f"internal server error (request id {request_id}); the traceback is in the server log",
        type="server_error",
        code="internal_error",
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def install_error_handlers(app: FastAPI) -> None:
    """Answer framework errors (unknown route, wrong method) in OpenAI's shape too."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        request.state.error_code = exc.code
        return exc.response()

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        err = APIError(
            exc.status_code,
            str(exc.detail),
            code=_HTTP_CODES.get(exc.status_code),
            headers=dict(exc.headers or {}),
        )
        return err.response()

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = first.get("loc", ())
        param = str(loc[-1]) if loc else None
        return bad_request(str(first.get("msg", "invalid request")), param).response()

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
