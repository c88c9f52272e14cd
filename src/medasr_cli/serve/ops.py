"""Operational routes (health, readiness, metrics, model list) and API-key checking."""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from medasr_cli.serve.errors import APIError
from medasr_cli.serve.runtime import Runtime

router = APIRouter()
STARTED = int(time.time())


def get_runtime(request: Request) -> Runtime:
    """The app's :class:`Runtime` (set by ``create_app``)."""
    rt: Runtime = request.app.state.runtime
    return rt


def require_api_key(request: Request) -> None:
    """401 unless ``Authorization: Bearer <key>`` matches a configured key (constant time).

    Every configured key is compared, whatever matches first, so the timing
    does not reveal which key (or how much of one) was right. No keys = open.
    """
    keys = get_runtime(request).settings.api_key_values()
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise APIError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = given.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, key)
    if not matched:
        raise APIError(
            401,
            "incorrect API key provided",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process and its event loop answer (never waits on the model)."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 once the model is loaded and a warm-up inference has run."""
    rt = get_runtime(request)
    if rt.ready:
        return JSONResponse({"status": "ready", "model": rt.settings.model_id})
    if rt.load_error is not None:
        return JSONResponse({"status": "failed", "error": str(rt.load_error)}, status_code=503)
    headers = {"Retry-After": str(rt.settings.retry_after_s)}
    return JSONResponse({"status": "loading"}, status_code=503, headers=headers)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition (includes the KEDA gauge ``nemo_asr_request_latency_seconds_avg``)."""
    rt = get_runtime(request)
    if rt.engine is not None:
        rt.metrics.queue_depth.set(rt.engine.depth)
    return Response(rt.metrics.render(), media_type=rt.metrics.content_type)


def _model_card(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": STARTED, "owned_by": "medasr"}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, object]:
    """OpenAI's model list: the served id and its aliases."""
    require_api_key(request)
    ids = get_runtime(request).settings.served_ids
    return {"object": "list", "data": [_model_card(i) for i in ids]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request) -> dict[str, object]:
    """One model, or 404 in OpenAI's shape."""
    require_api_key(request)
    if model_id not in get_runtime(request).settings.served_ids:
        raise APIError(404, f"the model '{model_id}' does not exist", param="model",
                       code="model_not_found")  # fmt: skip
    return _model_card(model_id)
