"""``medasr synth``: multi-voice TTS with hospital noise at 10-25 dB SNR; ``synth noise-bank``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import TaskID, TextColumn
from rich.table import Table

from medasr_cli.cli.common import (
    console,
    err_console,
    new_progress,
    progress_bar,
    progress_enabled,
)
from medasr_cli.core.errors import InputError
from medasr_cli.infer.runner import OPTION_HELP
from medasr_cli.tts import ENGINES, CoquiOptions, EngineOptions

if TYPE_CHECKING:  # the synth library pulls in scipy: import it only when a command runs
    from medasr_cli.synth import SynthSummary
    from medasr_cli.synth.run import Progress as ProgressFn
    from medasr_cli.synth.run import VerifyProgress

app = typer.Typer(
    help="Synthesise scripts with several TTS voices and augment them with hospital noise.",
    invoke_without_command=True,
)


@contextlib.contextmanager
def _synth_progress() -> Iterator[tuple[ProgressFn, VerifyProgress]]:
    """A bar with utterances done, audio hours produced and the ETA; a second one for verify."""
    if not progress_enabled():
        yield (lambda done, total, audio_s: None), (lambda done, total: None)
        return
    with new_progress(TextColumn("{task.fields[hours]:.3f} h audio")) as progress:
        task = progress.add_task("synth", total=None, hours=0.0)
        check: list[TaskID] = []

        def update(done: int, total: int, audio_s: float) -> None:
            progress.update(task, completed=done, total=total, hours=audio_s / 3600)

        def verify(done: int, total: int) -> None:
            if not check:
                check.append(progress.add_task("verify", total=total, hours=0.0))
            progress.update(check[0], completed=done, total=total)

        yield update, verify


def _print_summary(s: SynthSummary) -> None:
    console.print(f"[bold]{s.jsonl}[/]: {s.utterances} utterances, {s.hours:.3f} h", soft_wrap=True)
    table = Table(title="hours per voice")
    table.add_column("voice")
    table.add_column("hours", justify="right")
    for voice, hours in s.hours_by_voice.items():
        table.add_row(voice, f"{hours:.4f}")
    console.print(table)
    if s.snr_histogram:
        hist = Table(title="measured SNR (dB)")
        for col in ("dB", "count", ""):
            hist.add_column(col, justify="right" if col == "count" else "left")
        peak = max(c for _, _, c in s.snr_histogram) or 1
        for lo, hi, count in s.snr_histogram:
            hist.add_row(f"{lo:5.1f} – {hi:5.1f}", str(count), "█" * round(30 * count / peak))
        console.print(hist)
    peak_txt = "n/a" if s.max_peak_dbfs is None else f"{s.max_peak_dbfs:.2f} dBFS"
    console.print(
        f"rendered {s.rendered}, resumed {s.skipped}, failed {len(s.failures)}, no noise "
        f"{s.no_noise}; max peak {peak_txt}, clipped samples {s.clipped_samples}; "
        f"{s.produced_s / 3600:.4f} h in {s.wall_s:.1f} s ({s.realtime_factor:.1f}x real time)",
        soft_wrap=True,
    )
    if s.max_utterance_s:
        console.print(
            f"split {s.split_scripts} script(s) into {s.parts} part(s) at sentence boundaries; "
            f"{s.over_limit} utterance(s) measure over --max-utterance-s {s.max_utterance_s:g} s",
            soft_wrap=True,
        )
    if s.verify is not None:
        _print_verify(s)
    for uid, err in list(s.failures.items())[:20]:
        err_console.print(f"[yellow]failed[/] {uid}: {err}", highlight=False, markup=False)


def _print_verify(s: SynthSummary) -> None:
    v = s.verify
    assert v is not None
    median = "n/a" if v.median_wer is None else f"{v.median_wer:.3f}"
    console.print(
        f"verified {v.verified} clip(s) with {v.model} ({v.verified_now} transcribed now), "
        f"median WER {median} on the words other than the terms; {v.flagged} over "
        f"--verify-max-wer {v.max_wer:g} flagged, {v.dropped} dropped"
        + (f" (listed in {v.rejected_jsonl})" if v.rejected_jsonl else ""),
        soft_wrap=True,
        highlight=False,
    )
    if v.flagged and not v.drop:
        err_console.print(
            f"[yellow]{v.flagged} flagged clip(s) stay in {s.jsonl} with verify_flag: true[/]; "
            "--drop-unverified moves them out of the training data",
            soft_wrap=True,
            highlight=False,
        )


@app.callback(invoke_without_command=True)
def synth(
    ctx: typer.Context,
    scripts: Path | None = typer.Option(
        None, "--scripts", help="scripts.jsonl from `medasr script`, or a text file of sentences."
    ),
    terms: Path | None = typer.Option(
        None, "--terms", help="terms.txt or lexicon.jsonl: dictations are generated offline first."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (audio/ + utterances.jsonl)."
    ),
    voices: str | None = typer.Option(
        None, "--voices", help="Voice plan, e.g. espeak:en-gb,espeak:en-029,piper:joe."
    ),
    voice_file: Path | None = typer.Option(
        None, "--voice-file", help="Weighted voice plan: 'engine:voice \\[weight]' per line."
    ),
    engine: str | None = typer.Option(
        None, "--engine", help=f"Use one engine's default voices ({', '.join(sorted(ENGINES))})."
    ),
    voice_order: str = typer.Option(
        "round-robin", "--voice-order", help="round-robin (weighted) or random (seeded)."
    ),
    per_script: int = typer.Option(
        1, "--per-script", min=1, help="Renditions (voices) per script."
    ),
    per_term: int = typer.Option(3, "--per-term", min=1, help="Dictations per term with --terms."),
    snr: str | None = typer.Option(
        None, "--snr", help="Background-noise SNR range LO:HI in dB (default 10:25)."
    ),
    noise_dir: list[Path] = typer.Option(
        [], "--noise-dir", help="Folder of noise recordings (repeatable: MUSAN, DEMAND …)."
    ),
    noise_bank: Path | None = typer.Option(
        None, "--noise-bank", help="Noise bank from `synth noise-bank` (default: OUT/noise-bank)."
    ),
    auto_bank: bool = typer.Option(
        True,
        "--auto-noise-bank/--no-auto-noise-bank",
        help="Build the hospital noise bank when no noise source is given.",
    ),
    rir_dir: list[Path] = typer.Option(
        [], "--rir-dir", help="Folder of room impulse responses (else rooms are simulated)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Augmentation YAML over the defaults."
    ),
    set_: list[str] = typer.Option([], "--set", help="Config override KEY=VALUE (repeatable)."),
    respellings: Path | None = typer.Option(
        None, "--respellings", help="term<TAB>respelling TSV or lexicon.jsonl (TTS input only)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same audio."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    threads: int = typer.Option(
        1, "--threads", min=1, help="CPU threads per worker for neural TTS."
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="Only shard K of N (K/N), by utterance id."
    ),
    audio_format: str = typer.Option("wav", "--format", help="wav or flac (16-bit PCM)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N scripts."),
    max_utterance_s: float = typer.Option(
        20.0,
        "--max-utterance-s",
        min=0.0,
        metavar="SECONDS",
        help="Split a script whose estimated spoken length is over SECONDS into utterances at "
        "sentence boundaries, so long dictations stay trainable (train drops utterances over "
        "24 s); 0 turns it off.",
    ),
    verify_model: str | None = typer.Option(
        None,
        "--verify-model",
        metavar="PATH|NAME",
        help="Check every clip: transcribe it with this ASR model (.nemo file or hub name, "
        "e.g. nvidia/parakeet-tdt-0.6b-v2) after rendering and record its WER on the words "
        "other than the target terms (verify_wer, verify_text, verify_flag). A re-run only "
        "transcribes clips this model has not checked yet.",
    ),
    verify_device: str = typer.Option(
        "auto", "--verify-device", help="For --verify-model: " + OPTION_HELP["device"]
    ),
    verify_max_wer: float = typer.Option(
        0.5,
        "--verify-max-wer",
        min=0.0,
        help="Flag a clip whose WER outside the terms is over this (a good clip of a good "
        "model is near 0, a broken one near 1). Changing it needs no new transcription.",
    ),
    drop_unverified: bool = typer.Option(
        False,
        "--drop-unverified/--keep-unverified",
        help="Move flagged clips from utterances.jsonl to rejected.jsonl (not training data), "
        "or keep them there marked verify_flag: true.",
    ),
    verify_batch_size: int = typer.Option(
        16, "--verify-batch-size", min=1, help="Clips per model call for --verify-model."
    ),
    coqui_model: str | None = typer.Option(None, "--coqui-model", help="Coqui model name."),
    coqui_model_path: Path | None = typer.Option(
        None, "--coqui-model-path", help="Local Coqui checkpoint."
    ),
    coqui_config_path: Path | None = typer.Option(
        None, "--coqui-config-path", help="Its config.json."
    ),
    coqui_language: str | None = typer.Option(None, "--coqui-language", help="Language for XTTS."),
    allow_downloads: bool = typer.Option(
        False, "--allow-downloads", help="Let Coqui download models."
    ),
) -> None:
    """Synthesise scripts (or terms) into augmented 16 kHz audio + utterances.jsonl."""
    if ctx.invoked_subcommand is not None:
        return
    from medasr_cli.core.shard import parse_shard
    from medasr_cli.synth import SynthRequest, load_config, parse_snr, run_synth
    from medasr_cli.synth.verify import VerifyOptions
    from medasr_cli.synth.voices import voice_plan

    if out is None:
        raise InputError("--out is required (the output folder)")
    coqui = CoquiOptions(
        model_name=coqui_model,
        model_path=str(coqui_model_path) if coqui_model_path else None,
        config_path=str(coqui_config_path) if coqui_config_path else None,
        language=coqui_language,
        allow_download=allow_downloads,
    )
    request = SynthRequest(
        out_dir=out,
        scripts=scripts,
        terms=terms,
        voices=voice_plan(voices, voice_file, engine),
        voice_order=voice_order,
        per_script=per_script,
        scripts_per_term=per_term,
        config=load_config(config, set_, parse_snr(snr) if snr else None),
        noise_dirs=noise_dir,
        noise_bank=noise_bank,
        auto_noise_bank=auto_bank,
        rir_dirs=rir_dir,
        respellings=respellings,
        engine_options=EngineOptions(threads=threads, coqui=coqui),
        seed=seed,
        jobs=jobs,
        shard=parse_shard(shard),
        audio_format=audio_format,
        limit=limit,
        max_utterance_s=max_utterance_s,
        verify=VerifyOptions(
            model=verify_model,
            device=verify_device,
            max_wer=verify_max_wer,
            drop=drop_unverified,
            batch_size=verify_batch_size,
        )
        if verify_model
        else None,
    )
    with _synth_progress() as (update, verify):
        summary = run_synth(request, progress=update, verify_progress=verify)
    _print_summary(summary)


@app.command("noise-bank")
def noise_bank_command(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for the bank (one sub-folder per category)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same bank."),
    per_category: int = typer.Option(4, "--per-category", min=1, help="Files per category."),
    seconds: float = typer.Option(20.0, "--seconds", min=1.0, help="Length of each file (s)."),
    category: list[str] = typer.Option(
        [], "--category", help="Only these categories (babble, monitor, pump, hvac, transient)."
    ),
) -> None:
    """Generate the offline hospital noise bank: babble, alarms, pumps, HVAC, transients."""
    from medasr_cli.synth import build_noise_bank

    with progress_bar("noise bank") as update:
        result = build_noise_bank(
            out,
            seed=seed,
            per_category=per_category,
            seconds=seconds,
            categories=category or None,
            progress=update,
        )
    table = Table(title=f"noise bank → {result.folder}")
    table.add_column("category")
    table.add_column("files", justify="right")
    for cat, files in result.files.items():
        table.add_row(cat, str(len(files)))
    console.print(table)
    console.print(f"{result.seconds / 60:.1f} min of noise")
