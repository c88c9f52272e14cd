"""Server configuration: flags and ``MEDASR_*`` environment variables, validated once.

One :class:`ServeSettings` object is built at start-up (by the CLI or a test)
and passed to :func:`medasr_cli.serve.app.create_app`; nothing reads global
configuration later, so tests never have to patch anything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from medasr_cli.core.errors import InputError
from medasr_cli.infer.runner import OPTION_HELP, RunnerOptions

MIB = 1024 * 1024
ENV_PREFIX = "MEDASR_"


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` or a JSON list (``["a","b"]``) from the environment, or a Python list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ServeSettings(BaseSettings):
    """Every knob of ``medasr serve``; each field is also ``MEDASR_<FIELD>`` in the environment.

    The fields are the single source of ``medasr serve``'s options: each one is the flag
    ``--<field-name>`` (``--x/--no-x`` for a bool, repeatable for a list) with its description,
    default and variable as help. A field spelt differently on the command line names its
    flags in ``json_schema_extra={"cli": [...]}``. Descriptions are that help: say the unit and
    what special values mean.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True, protected_namespaces=()
    )

    model: str = Field(
        description="A .nemo file (e.g. run/model.nemo) or a NeMo hub name to serve.",
        json_schema_extra={"cli": ["--model", "-m"]},
    )
    host: str = Field("127.0.0.1", description="Interface to bind (0.0.0.0 for all).")
    port: int = Field(
        8000,
        ge=0,
        le=65535,
        description="TCP port to listen on.",
        json_schema_extra={"cli": ["--port", "-p"]},
    )
    model_id: str = Field(
        "parakeet-tdt-0.6b-v2",
        description="Model id clients send as `model` and `GET /v1/models` lists.",
    )
    model_aliases: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Other accepted `model` values (e.g. whisper-1 for clients that hard-code it).",
        json_schema_extra={"cli": ["--model-alias"]},
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer keys; none = an open server (warned at start). Prefer the "
        "environment variable: command-line flags show in `ps`.",
        json_schema_extra={"cli": ["--api-key"]},
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS; none = CORS off.",
        json_schema_extra={"cli": ["--cors-origin"]},
    )
    cors_allow_credentials: bool = Field(
        False, description="Allow cookies/auth headers cross-origin (refused with origin '*')."
    )
    max_upload_mb: float = Field(
        25.0,
        gt=0,
        description="Largest accepted upload, in MiB; a larger one gets 413 without the rest "
        "being read.",
    )
    max_audio_s: float = Field(
        7200.0,
        gt=0,
        description="Longest accepted audio after decoding, in seconds; longer gets 400.",
    )
    queue_size: int = Field(
        64,
        ge=1,
        description="Audio pieces that may wait for the model; more gives 503 + Retry-After.",
    )
    max_batch_size: int = Field(
        16,
        ge=1,
        description=OPTION_HELP["max_batch_size"],
    )
    max_wait_ms: float = Field(
        10.0,
        ge=0,
        description="How long a batch waits for more pieces before it runs, in milliseconds.",
    )
    max_hold_ms: float = Field(
        50.0,
        ge=0,
        description="How long a batch that is not full may wait, in milliseconds, for requests "
        "that have arrived and are still uploading or decoding (0 = only --max-wait-ms).",
    )
    max_batch_audio_s: float = Field(
        1440.0,
        gt=0,
        description=OPTION_HELP["max_batch_audio_s"],
    )
    full_attention_s: float | None = Field(
        None,
        gt=0,
        description=OPTION_HELP["full_attention_s"],
    )
    max_single_pass_s: float | None = Field(
        None,
        gt=1,
        description=OPTION_HELP["max_single_pass_s"],
    )
    chunk_overlap_s: float = Field(
        10.0,
        ge=0,
        description=OPTION_HELP["chunk_overlap_s"],
    )
    stream_chunk_s: float = Field(
        30.0,
        gt=1,
        description="With stream=true, audio is decoded in chunks of this many seconds and the "
        "text of each is sent as it finishes.",
    )
    max_segment_s: float = Field(
        30.0,
        gt=0,
        description="Segments longer than this many seconds are split at word boundaries "
        "(srt, vtt, verbose_json).",
    )
    device: str = Field(
        "auto",
        description=OPTION_HELP["device"],
    )
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description=OPTION_HELP["cpu_threads"],
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description=OPTION_HELP["precision"],
    )
    keyword_boosting: bool = Field(
        True,
        description="Bias decoding toward request `keywords[]` with NeMo per-stream phrase "
        "boosting.",
    )
    keyword_boost_alpha: float = Field(1.0, ge=0, description="Weight of keyword boosting.")
    keyword_context_score: float = Field(
        1.0, ge=0, description="Per-token bonus inside a boosted phrase."
    )
    decode_concurrency: int = Field(4, ge=1, description="Uploads decoded (by ffmpeg) at once.")
    decode_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest one ffmpeg decode may take, in seconds; slower files get 400 "
        "decode_timeout.",
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with a 503.")
    warmup: bool = Field(True, description="Run one inference before /ready says ready.")
    shutdown_timeout_s: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds to wait for in-flight requests."
    )
    latency_window_s: float = Field(
        60.0,
        gt=0,
        description="Window, in seconds, of the nemo_asr_request_latency_seconds_avg gauge.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error (`medasr -v serve`: debug)."
    )
    log_json: bool = Field(False, description="Write logs as JSON lines.")
    log_transcripts: bool = Field(
        False, description="Put transcript text in request logs (clinical data)."
    )

    @field_validator("model_aliases", "cors_origins", "api_keys", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="after")
    def _cors_is_safe(self) -> ServeSettings:
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError("cors_origins '*' cannot be combined with cors_allow_credentials")
        return self

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * MIB)

    @property
    def served_ids(self) -> tuple[str, ...]:
        """Every `model` value that this server answers to."""
        return (self.model_id, *self.model_aliases)

    def runner_options(self) -> RunnerOptions:
        """How the model runner loads and decodes (the same fields ``eval --model`` takes)."""
        return RunnerOptions(
            model=self.model,
            device=self.device,
            cpu_threads=self.cpu_threads,
            precision=self.precision,
            keyword_boosting=self.keyword_boosting,
            keyword_boost_alpha=self.keyword_boost_alpha,
            keyword_context_score=self.keyword_context_score,
            full_attention_s=self.full_attention_s,
            max_single_pass_s=self.max_single_pass_s,
            chunk_overlap_s=self.chunk_overlap_s,
        )

    def api_key_values(self) -> list[bytes]:
        """The configured keys as bytes, for constant-time comparison."""
        return [k.get_secret_value().encode() for k in self.api_keys if k.get_secret_value()]


def env_var(field: str) -> str:
    """The environment variable of a setting: ``max_upload_mb`` -> ``MEDASR_MAX_UPLOAD_MB``."""
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> ServeSettings:
    """Build settings from the environment plus explicit overrides (``None`` values are skipped).

    Raises :class:`InputError` with one line naming the bad field, so the CLI
    can show it without a traceback.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ServeSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        env = f" (env {env_var(where)})" if where != "settings" else ""
        raise InputError(f"serve setting {where}{env}: {first.get('msg')}") from exc
