#!/usr/bin/env bash
# The main job on embedded defaults, offline, on a CPU:
#   lexicon -> script -> synth -> manifest -> train (tiny model) -> eval -> serve.
# Everything lands in $MEDASR_DEMO_DIR (default: demo/). MEDASR_DEMO_STEPS sets training steps.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${MEDASR_DEMO_DIR:-demo}
steps=${MEDASR_DEMO_STEPS:-300}
port=${MEDASR_DEMO_PORT:-8765}
rm -rf "$out"
mkdir -p "$out"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. lexicon: rare drug names from the bundled seed vocabulary"
medasr lexicon --seed --category drug --exclude-common --limit 6 -o "$out/lexicon"

step "2. script: clinical dictations that use every term twice (offline template backend)"
medasr script --backend template --terms "$out/lexicon/lexicon.jsonl" --per-term 2 \
  --style terse --max-terms 1 --seed 7 --out "$out/scripts.jsonl"

step "3. synth: three voices (espeak en-us, en-gb, piper neural) + hospital noise at 10-25 dB SNR"
medasr synth --scripts "$out/scripts.jsonl" --voices espeak:en-us,espeak:en-gb,piper:joe \
  --respellings "$out/lexicon/lexicon.jsonl" --per-script 2 --snr 10:25 --seed 7 --jobs 2 \
  --out "$out/synth"

step "4. manifest: NeMo manifests, split by script, validated"
medasr manifest build "$out/synth/utterances.jsonl" --out "$out/splits" \
  --split train=0.8,val=0.1,test=0.1 --seed 7
for split in train val test; do medasr manifest validate "$out/splits/$split.jsonl"; done
medasr manifest stats "$out/splits/train.jsonl" --by voice

step "5. train: a tiny FastConformer-TDT from scratch on CPU ($steps steps; MLflow in $out/run)"
medasr train --config tiny-cpu --train-manifest "$out/splits/train.jsonl" \
  --val-manifest "$out/splits/val.jsonl" --max-steps "$steps" --out "$out/run"

step "6. eval: WER and term recall on the training split and the held-out test split"
medasr eval --manifest "$out/splits/train.jsonl" --model "$out/run/model.nemo" \
  --terms "$out/lexicon/terms.txt" --by voice --report "$out/eval_train.json"
medasr eval --manifest "$out/splits/test.jsonl" --model "$out/run/model.nemo" \
  --terms "$out/lexicon/terms.txt" --report "$out/eval_test.json" --plot "$out/eval_test.png"

step "7. serve: the OpenAI-compatible API on 127.0.0.1:$port, one file transcribed through it"
medasr serve --model "$out/run/model.nemo" --host 127.0.0.1 --port "$port" --model-id medasr-demo \
  >"$out/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$out/serve.log"; exit 1; }
  sleep 1
done
first=$(python -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["audio_filepath"])' \
  "$out/splits/train.jsonl")
echo "POST /v1/audio/transcriptions  file=$first"
curl -fsS "http://127.0.0.1:$port/v1/audio/transcriptions" -F "file=@$first" -F model=medasr-demo \
  -F response_format=json
echo
medasr eval --manifest "$out/splits/test.jsonl" --endpoint "http://127.0.0.1:$port/v1" \
  --endpoint-model medasr-demo --report "$out/eval_test_endpoint.json"
kill "$server"
wait "$server" 2>/dev/null || true
trap - EXIT
step "done: $out/run/model.nemo, reports in $out/eval_*.json, MLflow store $out/run/mlflow.db"
