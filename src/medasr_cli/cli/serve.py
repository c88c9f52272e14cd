"""``medasr serve``: run the OpenAI-compatible transcription server for a NeMo model."""

from __future__ import annotations

from typing import Any

import typer

from medasr_cli.cli.common import state
from medasr_cli.core.errors import require

HELP = (
    "Serve a NeMo ASR model as an OpenAI-compatible API (POST /v1/audio/transcriptions, "
    "GET /v1/models, /health, /ready, /metrics). Every option can also be set as "
    "MEDASR_<OPTION> in the environment (e.g. MEDASR_MODEL, MEDASR_API_KEYS=k1,k2); "
    "flags win over the environment."
)


def _opt(default: Any, *names: str, env: str, help: str, **kw: Any) -> Any:
    """An option whose help names its default and environment variable (Rich eats [brackets])."""
    text = help.replace("[", "(").replace("]", ")")
    return typer.Option(
        default, *names, help=f"{text} (env: MEDASR_{env})", show_default=False, **kw
    )


def serve_command(
    model: str | None = _opt(
        None,
        "--model",
        "-m",
        env="MODEL",
        help="A .nemo file (e.g. run/model.nemo) or a NeMo hub name. Required.",
    ),
    host: str | None = _opt(
        None, "--host", env="HOST", help="Interface to bind. [default: 127.0.0.1]"
    ),
    port: int | None = _opt(None, "--port", "-p", env="PORT", help="TCP port. [default: 8000]"),
    model_id: str | None = _opt(
        None,
        "--model-id",
        env="MODEL_ID",
        help="Model id clients send and /v1/models lists. [default: parakeet-tdt-0.6b-v2]",
    ),
    model_alias: list[str] | None = _opt(
        None,
        "--model-alias",
        env="MODEL_ALIASES",
        help="Another accepted model id, e.g. whisper-1 (repeatable).",
    ),
    api_key: list[str] | None = _opt(
        None,
        "--api-key",
        env="API_KEYS",
        help="Accepted bearer key (repeatable; prefer the env var, "
        "comma-separated). None = open server, warned at start.",
    ),
    cors_origin: list[str] | None = _opt(
        None,
        "--cors-origin",
        env="CORS_ORIGINS",
        help="Browser origin allowed by CORS (repeatable).",
    ),
    cors_allow_credentials: bool | None = _opt(
        None,
        "--cors-allow-credentials/--no-cors-allow-credentials",
        env="CORS_ALLOW_CREDENTIALS",
        help="Allow credentials cross-origin (refused with '*').",
    ),
    max_upload_mb: float | None = _opt(
        None,
        "--max-upload-mb",
        env="MAX_UPLOAD_MB",
        help="Largest upload in MiB; larger gets 413 without reading the rest. [default: 25]",
    ),
    max_audio_s: float | None = _opt(
        None,
        "--max-audio-s",
        env="MAX_AUDIO_S",
        help="Longest decoded audio in seconds (400 beyond). [default: 7200]",
    ),
    queue_size: int | None = _opt(
        None,
        "--queue-size",
        env="QUEUE_SIZE",
        help="Audio pieces that may wait; more gives 503 + Retry-After. [default: 64]",
    ),
    max_batch_size: int | None = _opt(
        None,
        "--max-batch-size",
        env="MAX_BATCH_SIZE",
        help="Most pieces per model call (1 = no batching). [default: 16]",
    ),
    max_wait_ms: float | None = _opt(
        None,
        "--max-wait-ms",
        env="MAX_WAIT_MS",
        help="How long a batch waits to fill. [default: 10]",
    ),
    max_batch_audio_s: float | None = _opt(
        None,
        "--max-batch-audio-s",
        env="MAX_BATCH_AUDIO_S",
        help="Padded audio seconds per batch (memory guard). [default: 1440]",
    ),
    max_single_pass_s: float | None = _opt(
        None,
        "--max-single-pass-s",
        env="MAX_SINGLE_PASS_S",
        help="Longer audio is decoded in overlapping chunks. [default: 1440]",
    ),
    chunk_overlap_s: float | None = _opt(
        None,
        "--chunk-overlap-s",
        env="CHUNK_OVERLAP_S",
        help="Overlap between chunks of long audio. [default: 10]",
    ),
    max_segment_s: float | None = _opt(
        None,
        "--max-segment-s",
        env="MAX_SEGMENT_S",
        help="Split longer segments at word boundaries. [default: 30]",
    ),
    device: str | None = _opt(
        None, "--device", env="DEVICE", help="auto, cpu or cuda[:N]. [default: auto]"
    ),
    cpu_threads: int | None = _opt(
        None,
        "--cpu-threads",
        env="CPU_THREADS",
        help="Torch CPU threads for inference; 1 is often fastest on a "
        "shared machine. (default: torch's choice)",
    ),
    precision: str | None = _opt(
        None,
        "--precision",
        env="PRECISION",
        help="CUDA autocast: auto (bf16 if supported, else fp16), bf16, fp16, "
        "fp32. CPU always runs fp32. [default: auto]",
    ),
    keyword_boosting: bool | None = _opt(
        None,
        "--keyword-boosting/--no-keyword-boosting",
        env="KEYWORD_BOOSTING",
        help="Bias decoding toward request keywords[] with NeMo "
        "per-stream phrase boosting. [default: on]",
    ),
    keyword_boost_alpha: float | None = _opt(
        None,
        "--keyword-boost-alpha",
        env="KEYWORD_BOOST_ALPHA",
        help="Weight of keyword boosting. [default: 1.0]",
    ),
    keyword_context_score: float | None = _opt(
        None,
        "--keyword-context-score",
        env="KEYWORD_CONTEXT_SCORE",
        help="Per-token bonus inside a keyword. [default: 1.0]",
    ),
    decode_concurrency: int | None = _opt(
        None,
        "--decode-concurrency",
        env="DECODE_CONCURRENCY",
        help="Uploads decoded (ffmpeg) at once. [default: 4]",
    ),
    decode_timeout_s: float | None = _opt(
        None,
        "--decode-timeout-s",
        env="DECODE_TIMEOUT_S",
        help="Longest one ffmpeg decode may take; slower files get 400 decode_timeout. "
        "[default: 60]",
    ),
    retry_after_s: int | None = _opt(
        None, "--retry-after-s", env="RETRY_AFTER_S", help="Retry-After sent with 503. [default: 1]"
    ),
    warmup: bool | None = _opt(
        None,
        "--warmup/--no-warmup",
        env="WARMUP",
        help="Run one inference before /ready says ready. [default: on]",
    ),
    shutdown_timeout_s: float | None = _opt(
        None,
        "--shutdown-timeout-s",
        env="SHUTDOWN_TIMEOUT_S",
        help="On SIGTERM, wait this long for in-flight requests. [default: 30]",
    ),
    latency_window_s: float | None = _opt(
        None,
        "--latency-window-s",
        env="LATENCY_WINDOW_S",
        help="Window of the nemo_asr_request_latency_seconds_avg gauge. [default: 60]",
    ),
    log_level: str | None = _opt(
        None, "--log-level", env="LOG_LEVEL", help="debug, info, warning or error. [default: info]"
    ),
    log_json: bool | None = _opt(
        None,
        "--log-json/--no-log-json",
        env="LOG_JSON",
        help="Write logs as JSON lines. [default: off]",
    ),
    log_transcripts: bool | None = _opt(
        None,
        "--log-transcripts/--no-log-transcripts",
        env="LOG_TRANSCRIPTS",
        help="Put transcript text in request logs (clinical data). [default: off]",
    ),
) -> None:
    """Load the model, warm it up, and serve until SIGTERM/Ctrl-C (in-flight requests finish)."""
    overrides = {k: v for k, v in locals().items() if v is not None and v != []}
    require("fastapi", "serve")
    require("pydantic_settings", "serve")
    from medasr_cli.serve.server import run_server
    from medasr_cli.serve.settings import load_settings

    for flag, field in (("model_alias", "model_aliases"), ("api_key", "api_keys"),
                        ("cors_origin", "cors_origins")):  # fmt: skip
        if flag in overrides:
            overrides[field] = overrides.pop(flag)
    if state.verbose and log_level is None:
        overrides["log_level"] = "debug"
    run_server(load_settings(**overrides))
