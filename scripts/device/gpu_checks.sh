#!/usr/bin/env bash
# The GPU-only checks of issues #5 (train: DeepSpeed ZeRO stage 2) and #6 (serve on CUDA), as one
# script for a lent GPU machine. Prepare first, here: bash scripts/device/prepare.sh
# Then, with the device tool:
#   run(command="bash scripts/device/gpu_checks.sh", carry=[".whl", ".devdata"], timeout_s=560)
# Everything it measures lands in $OUT (checks.log, results.jsonl, serve_load.jsonl, train.log,
# train_xl.log).
#
# Steps: install the wheels; versions; manifests; the tiny model under DeepSpeed (300 steps);
# the shipped recipe at Parakeet's shape (--from-scratch --arch parakeet-xl, 60 steps, timed
# by scripts/device/train_bench.py); stock-NeMo restore and eval of the tiny model; serve_load.
#
# Local rehearsal on a CPU (the project venv, no wheels, few steps; training goes through
# Lightning's DeepSpeedStrategy on DeepSpeed's CPU accelerator, see tests/deepspeed_cpu_harness.py):
#   MEDASR_CHECKS_LOCAL=1 bash scripts/device/gpu_checks.sh
# Knobs: MEDASR_CHECKS_STEPS (tiny run), MEDASR_CHECKS_XL_ARCH / _XL_STEPS / _XL_BATCH /
# _XL_WARMUP / _XL_TIMEOUT (the recipe run; MEDASR_CHECKS_XL=0 skips it), MEDASR_CHECKS_ROUNDS.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/medasr-gpu-checks}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/checks.log") 2>&1
work=${MEDASR_CHECKS_WORK:-/tmp/medasr-checks}
rm -rf "$work" && mkdir -p "$work"
results="$OUT/results.jsonl"
: >"$results"
say() { printf '\n== %s (%s s)\n' "$*" "$SECONDS"; }
# Show everything; keep only the JSON lines in results.jsonl (NeMo and DeepSpeed log to stdout).
record() {
  local line
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case $line in '{'*) printf '%s\n' "$line" >>"$results" ;; esac
  done
}

strategy=deepspeed precision=bf16-mixed
if [ -n "${MEDASR_CHECKS_LOCAL:-}" ]; then
  py=${PYTHON:-.venv/bin/python}
  device=cpu steps=${MEDASR_CHECKS_STEPS:-20} gpus_flag=()
  train=("$py" tests/deepspeed_cpu_harness.py)
  bench=("$py" scripts/device/train_bench.py --cpu-harness)
  # parakeet-xl (618M parameters) on a CPU needs more than 21 GiB for its first AdamW step (fp32
  # weights, ZeRO-2's fp32 partition, gradients, two moments and AdamW's temporaries of the one
  # 2.5 GB flat partition) and ~10 GB more to consolidate its checkpoint: the rehearsal takes the
  # same code path with --arch small unless MEDASR_CHECKS_XL_ARCH says otherwise.
  xl_arch=${MEDASR_CHECKS_XL_ARCH:-small}
  xl_steps=${MEDASR_CHECKS_XL_STEPS:-3} xl_batch=${MEDASR_CHECKS_XL_BATCH:-2}
  xl_warmup=${MEDASR_CHECKS_XL_WARMUP:-1} xl_timeout=${MEDASR_CHECKS_XL_TIMEOUT:-0}  # 0: none
  export MASTER_ADDR=127.0.0.1 MASTER_PORT=${MASTER_PORT:-29581}
else
  py=python3
  device=cuda steps=${MEDASR_CHECKS_STEPS:-300}
  gpus_flag=(--gpus 1)
  train=("$py" -m medasr_cli)
  bench=("$py" scripts/device/train_bench.py)
  xl_arch=${MEDASR_CHECKS_XL_ARCH:-parakeet-xl}
  xl_steps=${MEDASR_CHECKS_XL_STEPS:-60} xl_batch=${MEDASR_CHECKS_XL_BATCH:-16}
  xl_warmup=${MEDASR_CHECKS_XL_WARMUP:-10} xl_timeout=${MEDASR_CHECKS_XL_TIMEOUT:-240}
  say "install the carried wheels"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  export DS_BUILD_OPS=0
fi
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
medasr() { "$py" -m medasr_cli "$@"; }

say "versions"
"$py" - <<'PY' | record
import json, platform
import torch, lightning, nemo
info = {"check": "versions", "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "lightning": lightning.__version__, "nemo": nemo.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
for name in ("deepspeed", "numba", "resampy"):  # resampy: the shipped speed perturbation
    try:
        info[name] = __import__(name).__version__
    except Exception as exc:  # reported, and the runs below that need it fail loudly
        info[name] = f"import failed: {exc}"
print(json.dumps(info))
PY

say "manifests from the carried synthetic data"
medasr manifest build .devdata/synth/utterances.jsonl --out "$work/splits" \
  --split train=0.85,val=0.15 --seed 11 || exit 1
medasr manifest build .devdata/general/utterances.jsonl --out "$work/general" \
  --split replay=0.75,val=0.25 --seed 11 || exit 1

say "train: tiny FastConformer-TDT, strategy=$strategy, precision=$precision, $steps steps"
start=$SECONDS
"${train[@]}" --verbose train --config tiny-cpu --train-manifest "$work/splits/train.jsonl" \
  --val-manifest "$work/splits/val.jsonl" "${gpus_flag[@]}" --strategy "$strategy" \
  --precision "$precision" --batch-size 16 --max-steps "$steps" --out "$work/run" \
  --set exp_manager.create_mlflow_logger=false 2>&1 | tee "$OUT/train.log"
train_rc=${PIPESTATUS[0]}
train_s=$((SECONDS - start))
"$py" - "$work/run" "$train_rc" "$train_s" "$strategy" <<'PY' | record
import json, sys
from pathlib import Path
run, rc, wall, strategy = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ckpts = sorted(str(p.relative_to(run)) for p in run.rglob("*.ckpt"))
print(json.dumps({"check": "train", "rc": rc, "wall_s": wall, "strategy": strategy,
                  "model_nemo": (run / "model.nemo").is_file(),
                  "deepspeed_checkpoint_dirs": [c for c in ckpts if (run / c).is_dir()],
                  "checkpoints": ckpts[:6]}))
PY
grep -i -E "deepspeed|zero|autocast|strategy|utt/s|audio-s/s|throughput" "$OUT/train.log" | tail -20

if [ "${MEDASR_CHECKS_XL:-1}" != 0 ]; then
  say "train: the shipped config, --from-scratch --arch $xl_arch (random weights), strategy auto, $precision, $xl_steps steps of $xl_batch"
  # One epoch must outlast the run, so that the steps are timed without epoch restarts and
  # the one validation (both sets) comes at the last step: the clinical training split
  # repeated (each copy draws its own speed perturbation and SpecAugment masks). Overrides of
  # the shipped config: validation at the last step only, no MLflow (not carried), and no
  # second copy of the ~10 GB ZeRO checkpoint as "last" (the best one becomes model.nemo).
  "$py" - "$work" "$xl_steps" "$xl_batch" <<'PY' || exit 1
import math, sys
from pathlib import Path
work, steps, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lines = (work / "splits/train.jsonl").read_text().splitlines()
repeat = math.ceil(steps * batch / len(lines))
(work / "xl_train.jsonl").write_text("\n".join(lines * repeat) + "\n")
print(f"xl_train.jsonl: {len(lines)} utterances x {repeat}")
PY
  n_results=$(wc -l <"$results")
  MASTER_PORT=$((${MASTER_PORT:-29581} + 1)) timeout --kill-after=30 "$xl_timeout" \
    "${bench[@]}" --check train_shipped_recipe --result "$results" --warmup-steps "$xl_warmup" -- \
    --verbose train --from-scratch --arch "$xl_arch" --train-manifest "$work/xl_train.jsonl" \
    --val-manifest medical="$work/splits/val.jsonl" --val-manifest general="$work/general/val.jsonl" \
    --replay "$work/general/replay.jsonl" "${gpus_flag[@]}" --precision "$precision" \
    --batch-size "$xl_batch" --max-steps "$xl_steps" --out "$work/xl" \
    --set trainer.val_check_interval="$xl_steps" --set exp_manager.create_mlflow_logger=false \
    --set exp_manager.checkpoint_callback_params.save_last=false \
    2>&1 | tee "$OUT/train_xl.log"
  xl_rc=${PIPESTATUS[0]}
  if [ "$(wc -l <"$results")" = "$n_results" ]; then  # killed before it could write its line
    printf '{"check": "train_shipped_recipe", "rc": %s, "timed_out": %s, "timeout_s": %s}\n' \
      "$xl_rc" "$([ "$xl_rc" = 124 ] || [ "$xl_rc" = 137 ] && echo true || echo false)" \
      "$xl_timeout" | record
  fi
  rm -rf "$work/xl"  # ZeRO checkpoints of a 0.6B model: ~10 GB each
fi

say "stock NeMo restores model.nemo and transcribes on $device; WER on the training split"
medasr eval --manifest "$work/splits/train.jsonl" --model "$work/run/model.nemo" \
  --device "$device" --report "$work/eval_train.json" && "$py" - "$work" <<'PY' | record
import json, sys
from pathlib import Path
import torch
from nemo.collections.asr.models import ASRModel
work = Path(sys.argv[1])
model = ASRModel.restore_from(str(work / "run/model.nemo"), map_location="cpu")
overall = json.loads((work / "eval_train.json").read_text())["overall"]
print(json.dumps({"check": "restore_and_eval", "class": type(model).__name__,
                  "loss": type(model.loss._loss).__name__ if hasattr(model, "loss") else None,
                  "wer_train": overall["wer"], "cer_train": overall["cer"],
                  "utterances": overall["utterances"], "cuda": torch.cuda.is_available()}))
PY

say "serve: bench/serve_load.py on $device with the trained model"
mkdir -p "$work/clips"
"$py" - "$work" <<'PY'
import json, sys
from pathlib import Path
import soundfile as sf
work = Path(sys.argv[1])
for i, line in enumerate(open(work / "splits/train.jsonl")):
    if i == 16:
        break
    audio, sr = sf.read(json.loads(line)["audio_filepath"], dtype="float32")
    sf.write(work / "clips" / f"clip{i:02d}.wav", audio, sr, subtype="PCM_16")
PY
threads=$([ "$device" = cuda ] && echo 4 || echo 1)
rounds=${MEDASR_CHECKS_ROUNDS:-3}
"$py" bench/serve_load.py --device "$device" --model "$work/run/model.nemo" \
  --clips-dir "$work/clips" --clips 16 --repeat 8 --clients 16 --batch-size 16 \
  --threads "$threads" --rounds "$rounds" | tee "$OUT/serve_load.jsonl"

say "done: $OUT"
