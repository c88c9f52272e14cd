"""Throughput of ``medasr synth``, as JSON lines: audio seconds per wall-clock second.

For each engine (espeak, piper, and ``default``: the product's default voice
plan, six espeak accents plus the piper voice at weight 3, which is what
``medasr synth --terms`` uses) and each ``--jobs`` value (1 and 2), one full
``run_synth`` on fresh output with the default augmentation config (noise at
10-25 dB from a pre-built noise bank, reverb/speed/telephone/gain at their
default probabilities, 16 kHz WAV) and one CPU thread per worker. Each line has:

* ``x_realtime``: seconds of audio produced per wall-clock second, end to end
  (worker start-up and voice loading included);
* ``x_realtime_per_core``: the same divided by the number of worker processes;
* ``x_realtime_cpu``: audio seconds per CPU second spent rendering (TTS +
  augmentation + writing, summed over workers and their espeak-ng children):
  a per-core figure that other load on the machine disturbs less;
* ``augment_share``: the share of rendering time spent in the augmentation
  chain (reverb, noise mixing at the measured SNR, telephone channel,
  hiss, gain and peak limiting);
* ``resample_share``: the share spent converting the TTS output to 16 kHz at
  the fixed speech level (needed with or without augmentation; speed
  perturbation is folded into this resampling pass), and
  ``tts_share``/``write_share`` the rest (the four add up to 1). These are
  wall-clock shares, which include waiting for a core when workers compete;
* ``augment_share_cpu``/``resample_share_cpu``: the same from CPU seconds
  (espeak-ng's own child processes included in TTS), which competition for
  the cores does not inflate;
* ``speedup_vs_jobs1`` on the ``--jobs 2`` lines;
* ``load_avg_1min`` before and after: other work on the machine shows up here
  (a 1-minute load above ~0.5 before a run means the figures are disturbed).

Run: ``python bench/synth_speed.py`` (about four minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from medasr_cli.synth import SynthRequest, build_noise_bank, run_synth
from medasr_cli.synth.voices import default_plan
from medasr_cli.tts import EngineOptions, VoiceSpec

SENTENCES = [
    "The patient was started on metoprolol 25 mg b.i.d. for rate control of atrial fibrillation.",
    "Echocardiogram showed mild mitral regurgitation with a preserved ejection fraction of 55%.",
    "Continue apixaban 5 mg twice daily and review in the anticoagulation clinic in two weeks.",
    "BP 132/84, HR 72 bpm, SpO2 96% on room air, temperature 37.4 degrees.",
    "She has a long history of Crohn's disease treated with adalimumab and azathioprine.",
    "Haemoglobin was 94 g/L on admission and ferritin was low, consistent with iron deficiency.",
    "No tenderness in the right iliac fossa and bowel sounds were present and normal.",
    "Chest X-ray showed bibasal consolidation so we started IV co-amoxiclav and clarithromycin.",
]
VOICES = {"espeak": ["en-us", "en-gb", "en-029", "en-gb-scotland"], "piper": ["joe"]}


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}"


def _scripts(folder: Path, n: int) -> Path:
    path = folder / f"scripts_{n}.txt"
    lines = [f"{SENTENCES[i % len(SENTENCES)]} Note {i}." for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bench(engine: str, jobs: int, n: int, tmp: Path, bank: Path) -> dict[str, Any]:
    """One fresh run; returns its JSON line."""
    out = tmp / f"{engine}_j{jobs}"
    req = SynthRequest(
        out_dir=out,
        scripts=_scripts(tmp, n),
        noise_bank=bank,
        jobs=jobs,
        seed=1,
        voices=default_plan()
        if engine == "default"
        else [VoiceSpec(engine, v) for v in VOICES[engine]],
        engine_options=EngineOptions(threads=1),
    )
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    summary = run_synth(req)
    wall = time.perf_counter() - start
    t = summary.timings
    busy = t["tts"] + t["resample"] + t["augment"] + t["write"]
    cpu_busy = sum(t[f"cpu_{k}"] for k in ("tts", "resample", "augment", "write"))
    return {
        "bench": "synth",
        "engine": engine,
        "jobs": jobs,
        "utterances": summary.rendered,
        "failed": len(summary.failures),
        "audio_s": round(summary.produced_s, 1),
        "wall_s": round(wall, 2),
        "x_realtime": round(summary.produced_s / wall, 2),
        "x_realtime_per_core": round(summary.produced_s / wall / jobs, 2),
        "x_realtime_cpu": round(summary.produced_s / t["cpu"], 2),
        "augment_share": round(t["augment"] / busy, 3),
        "resample_share": round(t["resample"] / busy, 3),
        "write_share": round(t["write"] / busy, 3),
        "tts_share": round(t["tts"] / busy, 3),
        "augment_share_cpu": round(t["cpu_augment"] / cpu_busy, 3),
        "resample_share_cpu": round(t["cpu_resample"] / cpu_busy, 3),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": _machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="espeak,piper,default")
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--espeak-utterances", type=int, default=1000)
    parser.add_argument("--piper-utterances", type=int, default=64)
    parser.add_argument("--default-utterances", type=int, default=90)
    args = parser.parse_args()
    counts = {
        "espeak": args.espeak_utterances,
        "piper": args.piper_utterances,
        "default": args.default_utterances,
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bank = tmp / "bank"
        build_noise_bank(bank, seed=0)
        for engine in args.engines.split(","):
            base: float | None = None
            for jobs in (int(j) for j in args.jobs.split(",")):
                line = bench(engine, jobs, counts[engine], tmp, bank)
                if jobs == 1:
                    base = line["x_realtime"]
                elif base:
                    line["speedup_vs_jobs1"] = round(line["x_realtime"] / base, 2)
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
