"""Checking synthesised clips with an ASR model, so a broken TTS clip does not become training data.

A TTS engine can fail without an error: a voice that mumbles, a model that
loops or produces noise, text that went missing. With ``--verify-model`` each
clip is transcribed through the one inference path (:mod:`medasr_cli.infer`)
and scored against its transcript on the words *other than its target terms*
(the terms are what the model under adaptation gets wrong, which is why the
clip exists). A clip whose WER on those words is over ``--verify-max-wer`` is
flagged (``verify_flag``), and with ``--drop-unverified`` moved from the
utterance JSONL to ``rejected.jsonl``, where it can be inspected.

Resuming re-verifies cheaply: a clip's result is kept in its record with the
model that produced it (``verify_model``), so only clips never verified by this
model are transcribed; the flag and where the clip goes are recomputed from the
stored WER at the end of every run, so a new threshold costs no transcription.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError
from medasr_cli.core.records import Term
from medasr_cli.core.shard import stable_hex
from medasr_cli.core.spoken import with_spoken_forms
from medasr_cli.core.text import Normalizer, get_normalizer

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (clips verified, clips to verify)

#: Fields a verification adds to an utterance record.
FIELDS = ("verify_model", "verify_text", "verify_wer", "verify_words", "verify_flag")


@dataclass(frozen=True)
class VerifyOptions:
    """How to check clips: the model, where it runs, the threshold and what to do above it."""

    model: str
    device: str = "auto"
    max_wer: float = 0.5
    drop: bool = False
    batch_size: int = 16  # clips in one model call
    step: int = 64  # clips transcribed between two ledger writes (what a crash can lose)

    def check(self) -> None:
        """Raise InputError for a setting that cannot work, before any audio is rendered."""
        if self.max_wer < 0:
            raise InputError(f"--verify-max-wer {self.max_wer:g}: use a WER of 0 or more")
        path = Path(self.model).expanduser()
        if path.suffix == ".nemo" and not path.is_file():
            raise InputError(f"--verify-model {self.model}: model file not found")
        from medasr_cli.core.errors import require

        require("nemo.collections.asr", "asr")

    @property
    def key(self) -> str:
        """The model as recorded: its name, plus a hash of size and time for a local file.

        A checkpoint retrained at the same path is a new model: its clips are verified again.
        """
        path = Path(self.model).expanduser()
        if path.is_file():
            st = path.stat()
            return f"{self.model}@{stable_hex(f'{st.st_size}:{st.st_mtime_ns}', 8)}"
        return self.model


@dataclass
class VerifyCounts:
    """What verification found over the clips of this run (or shard)."""

    model: str
    max_wer: float
    drop: bool
    verified: int = 0  # clips with a result from this model
    verified_now: int = 0  # of which transcribed in this invocation
    flagged: int = 0  # over the threshold (kept with verify_flag, or dropped)
    dropped: int = 0  # flagged and moved to the rejected JSONL
    median_wer: float | None = None
    rejected_jsonl: Path | None = None


def context_errors(
    ref: Sequence[str], hyp: Sequence[str], spans: Iterable[tuple[int, int]]
) -> tuple[int, int]:
    """(errors, reference words) over the reference words outside ``spans`` (the terms).

    The complement of ``eval``'s M-WER: substitutions and deletions of words
    outside every span, plus insertions that are not inside or at the edge of a
    span (a term heard as several words, ``a pixel ban``, inserts words beside
    it: those belong to the term). Without any word outside a span, every word
    is scored, so a clip that says only its term is still checked.
    """
    import jiwer

    covered: set[int] = set()
    edges: set[int] = set()  # insertion points inside a span or just before/after it
    for start, end in spans:
        covered.update(range(start, end))
        edges.update(range(start, end + 1))
    if len(covered) == len(ref):
        covered, edges = set(), set()
    if not ref:
        return len(hyp), 0
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    errors = 0
    for chunk in out.alignments[0]:
        if chunk.type in ("substitute", "delete"):
            errors += len(set(range(chunk.ref_start_idx, chunk.ref_end_idx)) - covered)
        elif chunk.type == "insert" and chunk.ref_start_idx not in edges:
            errors += chunk.hyp_end_idx - chunk.hyp_start_idx
    return errors, len(ref) - len(covered)


def context_wer(
    reference: str, hypothesis: str, terms: Sequence[str], normalize: Normalizer
) -> tuple[float | None, int]:
    """(WER, words scored) of ``hypothesis`` on the words of ``reference`` outside ``terms``.

    Both texts are normalised with ``normalize`` (``eval``'s clinical normaliser);
    a term's occurrences are found with its spoken forms as ``eval`` finds them.
    The WER is None only for an empty reference.
    """
    from medasr_cli.evaluate.terms import compile_terms, term_spans

    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    patterns = compile_terms([with_spoken_forms(Term(text=t), normalize) for t in terms], normalize)
    spans = [sp for found in term_spans(ref, patterns).values() for sp in found]
    errors, words = context_errors(ref, hyp, spans)
    return (round(errors / words, 4) if words else None), words


def is_verified(record: dict[str, Any], key: str) -> bool:
    """Whether ``record`` holds a result from the model ``key``."""
    return record.get("verify_model") == key and "verify_wer" in record


def is_flagged(record: dict[str, Any], max_wer: float) -> bool:
    """Over the threshold (a clip without a verification is not flagged)."""
    wer = record.get("verify_wer")
    return wer is not None and float(wer) > max_wer


class Verifier:
    """Transcribes clips with one model (loaded on first use) and scores them."""

    def __init__(self, options: VerifyOptions, out_dir: Path, normalizer: str = "clinical") -> None:
        self.options = options
        self.out_dir = out_dir
        self.key = options.key
        self.normalize = get_normalizer(normalizer)
        self._runner: Any = None

    def runner(self) -> Any:
        if self._runner is None:
            from medasr_cli.infer.runner import ModelRunner, RunnerOptions

            runner = ModelRunner(
                RunnerOptions(model=self.options.model, device=self.options.device)
            )
            seconds = runner.load()
            log.info(
                "verify model %s loaded on %s in %.1f s", self.options.model, runner.device, seconds
            )
            self._runner = runner
        return self._runner

    def __call__(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records with their verification fields, in order (one model pass over them)."""
        from medasr_cli.infer.files import BatchLimits, transcribe_paths

        transcripts = transcribe_paths(
            self.runner(),
            [self.out_dir / str(r["audio_filepath"]) for r in records],
            [float(r["duration"]) for r in records],
            limits=BatchLimits(max_batch_size=self.options.batch_size),
        )
        out = []
        for rec, transcript in zip(records, transcripts, strict=True):
            wer, words = context_wer(
                str(rec["text"]), transcript.text, rec.get("terms") or [], self.normalize
            )
            out.append(
                {
                    **rec,
                    "verify_model": self.key,
                    "verify_text": transcript.text,
                    "verify_wer": wer,
                    "verify_words": words,
                    "verify_flag": is_flagged({"verify_wer": wer}, self.options.max_wer),
                }
            )
        return out


def steps(records: Sequence[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    """``records`` in consecutive lists of ``size``."""
    for i in range(0, len(records), max(1, size)):
        yield list(records[i : i + size])


def partition(
    records: Sequence[dict[str, Any]], options: VerifyOptions | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): flags set from the stored WER and the current threshold.

    Without options (no ``--verify-model`` this run) nothing is moved or changed.
    """
    if options is None:
        return list(records), []
    key = options.key
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for rec in records:
        flagged = False
        if is_verified(rec, key):  # only this model's result decides (an older one is left be)
            flagged = is_flagged(rec, options.max_wer)
            rec = {**rec, "verify_flag": flagged}
        (dropped if options.drop and flagged else kept).append(rec)
    return kept, dropped


def verify_records(
    verifier: Verifier,
    records: Sequence[dict[str, Any]],
    save: Callable[[dict[str, Any]], None],
    stop: object,
    progress: Progress | None = None,
) -> int:
    """Verify the records that have no result from this model, a step at a time; returns how many.

    Each step's records go to ``save`` (the ledger) as soon as it is done, so a
    crash loses at most one step; once ``stop`` is true (Ctrl-C), no new step starts.
    """
    pending = [r for r in records if not is_verified(r, verifier.key)]
    log.info("%d clip(s) to verify, %d already verified", len(pending), len(records) - len(pending))
    done = 0
    if progress is not None and pending:
        progress(0, len(pending))
    for step in steps(pending, verifier.options.step):
        if stop:
            break
        for rec in verifier(step):
            save(rec)
        done += len(step)
        if progress is not None:
            progress(done, len(pending))
    return done


def count(
    planned: Sequence[dict[str, Any]],
    dropped: int,
    options: VerifyOptions,
    verified_now: int,
    rejected_jsonl: Path,
) -> VerifyCounts:
    """The summary's verification line over the plan's records (kept and dropped)."""
    key = options.key
    done = [r for r in planned if is_verified(r, key)]
    wers = [float(r["verify_wer"]) for r in done if r.get("verify_wer") is not None]
    flagged = sum(is_flagged(r, options.max_wer) for r in done)
    if done and flagged > len(done) / 2:
        log.warning(
            "%d of %d clips are over --verify-max-wer %g: does %s recognise this speech?",
            flagged,
            len(done),
            options.max_wer,
            options.model,
        )
    return VerifyCounts(
        model=options.model,
        max_wer=options.max_wer,
        drop=options.drop,
        verified=len(done),
        verified_now=verified_now,
        flagged=flagged,
        dropped=dropped,
        median_wer=round(statistics.median(wers), 4) if wers else None,
        rejected_jsonl=rejected_jsonl if dropped else None,
    )
