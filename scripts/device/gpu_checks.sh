#!/usr/bin/env bash
# The GPU-only checks of issues #5 (train: DeepSpeed ZeRO stage 2) and #6 (serve on CUDA), as one
# script for a lent GPU machine. Prepare first, here: bash scripts/device/prepare.sh
# Then, with the device tool:
#   run(command="bash scripts/device/gpu_checks.sh", carry=[".whl", ".devdata"], timeout_s=560)
# Everything it measures lands in $OUT (checks.log, results.jsonl, serve_load.jsonl, train.log).
#
# Local rehearsal on a CPU (the project venv, no wheels, few steps; training goes through
# Lightning's DeepSpeedStrategy on DeepSpeed's CPU accelerator, see tests/deepspeed_cpu_harness.py):
#   MEDASR_CHECKS_LOCAL=1 bash scripts/device/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/medasr-gpu-checks}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/checks.log") 2>&1
work=${MEDASR_CHECKS_WORK:-/tmp/medasr-checks}
rm -rf "$work" && mkdir -p "$work"
results="$OUT/results.jsonl"
: >"$results"
say() { printf '\n== %s (%s s)\n' "$*" "$SECONDS"; }

strategy=deepspeed precision=bf16-mixed
if [ -n "${MEDASR_CHECKS_LOCAL:-}" ]; then
  py=${PYTHON:-.venv/bin/python}
  device=cpu steps=${MEDASR_CHECKS_STEPS:-20} gpus_flag=()
  train=("$py" tests/deepspeed_cpu_harness.py)
  export MASTER_ADDR=127.0.0.1 MASTER_PORT=${MASTER_PORT:-29581}
else
  py=python3
  device=cuda steps=${MEDASR_CHECKS_STEPS:-300}
  gpus_flag=(--gpus 1)
  train=("$py" -m medasr_cli)
  say "install the carried wheels"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  export DS_BUILD_OPS=0
fi
export OMP_WAIT_POLICY=PASSIVE TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
medasr() { "$py" -m medasr_cli "$@"; }

say "versions"
"$py" - <<'PY' | tee -a "$results"
import json, platform
import torch, lightning, nemo
info = {"check": "versions", "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "lightning": lightning.__version__, "nemo": nemo.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
try:
    import deepspeed
    info["deepspeed"] = deepspeed.__version__
except Exception as exc:  # reported, and the DeepSpeed run below fails loudly
    info["deepspeed"] = f"import failed: {exc}"
print(json.dumps(info))
PY

say "manifests from the carried synthetic data"
medasr manifest build .devdata/synth/utterances.jsonl --out "$work/splits" \
  --split train=0.85,val=0.15 --seed 11 || exit 1

say "train: tiny FastConformer-TDT, strategy=$strategy, precision=$precision, $steps steps"
start=$SECONDS
"${train[@]}" --verbose train --config tiny-cpu --train-manifest "$work/splits/train.jsonl" \
  --val-manifest "$work/splits/val.jsonl" "${gpus_flag[@]}" --strategy "$strategy" \
  --precision "$precision" --batch-size 16 --max-steps "$steps" --out "$work/run" \
  --set exp_manager.create_mlflow_logger=false 2>&1 | tee "$OUT/train.log"
train_rc=${PIPESTATUS[0]}
train_s=$((SECONDS - start))
"$py" - "$work/run" "$train_rc" "$train_s" "$strategy" <<'PY' | tee -a "$results"
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

say "stock NeMo restores model.nemo and transcribes on $device; WER on the training split"
medasr eval --manifest "$work/splits/train.jsonl" --model "$work/run/model.nemo" \
  --device "$device" --report "$work/eval_train.json" && "$py" - "$work" <<'PY' | tee -a "$results"
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
