"""The ``medasr eval`` recipe: get hypotheses, score them, write the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import atomic_write
from medasr_cli.core.records import Term
from medasr_cli.core.terms import BUNDLED_NAME, bundled_terms, load_terms
from medasr_cli.evaluate.metrics import EvalReport, evaluate_pairs
from medasr_cli.evaluate.sources import (
    check_audio_exists,
    load_manifest,
    pairs_from_endpoint,
    pairs_from_model,
    pairs_from_predictions,
)
from medasr_cli.infer.files import BatchLimits
from medasr_cli.infer.runner import RunnerOptions


def run_eval(
    manifest: Path,
    *,
    model: RunnerOptions | None = None,
    batch_limits: BatchLimits = BatchLimits(),
    keywords: tuple[str, ...] = (),
    endpoint: str | None = None,
    endpoint_model: str = "parakeet-tdt-0.6b-v2",
    api_key: str | None = None,
    concurrency: int = 4,
    timeout: float = 120.0,
    terms_paths: Sequence[Path] = (),
    bundled: bool | None = None,
    normalizer: str = "clinical",
    by: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Score a manifest: from its ``pred_text``, a NeMo model, or an OpenAI-compatible endpoint.

    Term recall is measured for the terms of ``terms_paths`` and, when ``bundled`` is true
    (``None``: when no term file is given), for every term of the bundled vocabulary that
    occurs in the references or hypotheses; ``source.terms`` names what was used.
    """
    if model and endpoint:
        raise InputError("give either --model or --endpoint, not both")
    terms: list[Term] = []
    for path in terms_paths:
        terms += load_terms(path)
    use_bundled = not terms_paths if bundled is None else bundled
    vocabulary = bundled_terms() if use_bundled else []
    entries = load_manifest(manifest)
    source: dict[str, object] = {"manifest": str(manifest)}
    if model or endpoint:
        check_audio_exists(manifest, entries)
    if model:
        pairs, how = pairs_from_model(
            model, entries, limits=batch_limits, keywords=keywords, progress=progress
        )
        source["model"] = model.model
        source["inference"] = how
    elif endpoint:
        pairs = pairs_from_endpoint(
            endpoint, entries, model=endpoint_model, api_key=api_key,
            concurrency=concurrency, timeout=timeout, progress=progress,
        )  # fmt: skip
        source["endpoint"] = endpoint
    else:
        pairs = pairs_from_predictions(manifest, entries)
        source["hypotheses"] = "pred_text"
    source["terms"] = term_sources(terms_paths, vocabulary)
    return evaluate_pairs(
        pairs, normalizer=normalizer, terms=terms, vocabulary=vocabulary, by=by, source=source
    )


def term_sources(paths: Sequence[Path], vocabulary: Sequence[Term]) -> list[str]:
    """What the report's ``source.terms`` lists: ``bundled:seed (N terms)`` and each file."""
    out = [f"bundled:{BUNDLED_NAME} ({len(vocabulary)} terms)"] if vocabulary else []
    return out + [str(p) for p in paths]


def write_report(report: EvalReport, path: Path) -> None:
    """Write the full report as JSON, atomically."""
    with atomic_write(path) as fh:
        fh.write(report.model_dump_json(indent=2))


def write_predictions(report: EvalReport, path: Path) -> None:
    """Write a manifest with ``pred_text`` so the scoring can be re-run without the model."""
    import json

    with atomic_write(path) as fh:
        for u in report.utterances:
            row = {"audio_filepath": u.audio_filepath, "duration": u.duration, "text": u.reference}
            row.update(u.metadata)
            row["pred_text"] = u.hypothesis
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
