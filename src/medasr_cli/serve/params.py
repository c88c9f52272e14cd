"""Validating the form fields of a transcription request against OpenAI's contract.

Each bad value is a 400 naming the parameter; an unknown ``model`` is a 404.
``prompt`` is accepted and ignored (a transducer has no text prompt);
``keywords[]`` bias decoding through NeMo's per-stream phrase boosting when
the server has it on; ``include[]`` and ``chunking_strategy`` are accepted
and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medasr_cli.serve.errors import APIError, bad_request
from medasr_cli.serve.formats import RESPONSE_FORMATS
from medasr_cli.serve.settings import ServeSettings
from medasr_cli.serve.upload import TranscriptionForm

GRANULARITIES = ("word", "segment")
STREAM_FORMATS = ("json", "text")
MAX_KEYWORDS = 100
MAX_KEYWORD_CHARS = 100
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


@dataclass(frozen=True)
class TranscriptionParams:
    """A validated transcription request (everything but the audio)."""

    model: str
    response_format: str = "json"
    temperature: float = 0.0
    language: str = "en"
    granularities: tuple[str, ...] = ()
    stream: bool = False
    keywords: tuple[str, ...] = ()


def parse_params(form: TranscriptionForm, settings: ServeSettings) -> TranscriptionParams:
    """Check every field in the order a client would fix them; raise :class:`APIError`."""
    if form.file is None:
        raise bad_request("the 'file' field is required (multipart file upload)", "file",
                          "missing_required_parameter")  # fmt: skip
    model = _model(form.get("model"), settings)
    fmt = (form.get("response_format") or "json").strip()
    if fmt not in RESPONSE_FORMATS:
        raise bad_request(
            f"unsupported response_format '{fmt}'; use one of {', '.join(RESPONSE_FORMATS)}",
            "response_format",
        )
    granularities = _granularities(form.get_list("timestamp_granularities"), fmt)
    stream = _bool(form.get("stream"), "stream")
    if stream and fmt not in STREAM_FORMATS:
        raise bad_request(f"stream=true works with response_format json or text, not '{fmt}'",
                          "stream")  # fmt: skip
    return TranscriptionParams(
        model=model,
        response_format=fmt,
        temperature=_temperature(form.get("temperature")),
        language=_language(form.get("language")),
        granularities=granularities,
        stream=stream,
        keywords=_keywords(form.get_list("keywords")),
    )


def _model(value: str | None, settings: ServeSettings) -> str:
    if value is None or not value.strip():
        raise bad_request("the 'model' field is required", "model", "missing_required_parameter")
    model = value.strip()
    if model not in settings.served_ids:
        raise APIError(
            404,
            f"the model '{model}' does not exist; this server serves {', '.join(settings.served_ids)}",
            param="model",
            code="model_not_found",
        )
    return model


def _temperature(value: str | None) -> float:
    if value is None or value.strip() == "":
        return 0.0
    try:
        t = float(value)
    except ValueError:
        raise bad_request(f"temperature must be a number, got '{value}'", "temperature") from None
    if not 0.0 <= t <= 1.0:
        raise bad_request(f"temperature must be between 0 and 1, got {t:g}", "temperature")
    return t


def _language(value: str | None) -> str:
    if value is None or not value.strip():
        return "en"
    lang = value.strip()
    if not _LANGUAGE.match(lang):
        raise bad_request(f"language must be an ISO-639-1 code such as 'en', got '{lang}'",
                          "language")  # fmt: skip
    return lang.split("-")[0].split("_")[0].lower()


def _granularities(values: list[str], fmt: str) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    for g in wanted:
        if g not in GRANULARITIES:
            raise bad_request(f"timestamp_granularities: unknown value '{g}' (use word, segment)",
                              "timestamp_granularities")  # fmt: skip
    if wanted and fmt != "verbose_json":
        raise bad_request("timestamp_granularities requires response_format=verbose_json",
                          "timestamp_granularities")  # fmt: skip
    return wanted


def _bool(value: str | None, name: str) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise bad_request(f"{name} must be true or false, got '{value}'", name)


def _keywords(values: list[str]) -> tuple[str, ...]:
    words = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(words) > MAX_KEYWORDS:
        raise bad_request(f"at most {MAX_KEYWORDS} keywords per request", "keywords")
    for w in words:
        if len(w) > MAX_KEYWORD_CHARS:
            raise bad_request(f"keywords longer than {MAX_KEYWORD_CHARS} characters", "keywords")
    return words
