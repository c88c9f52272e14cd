#!/usr/bin/env bash
# The medasr demo: the whole loop on built-in defaults, offline, on a CPU (`make demo`).
#
#   recipes/demo/run.sh [--stage N] [--stop-stage M] [options]
#
# Stages (each prints its `medasr ...` commands before running them):
#   1  lexicon   rare drug names from the bundled seed vocabulary (or --terms)
#   2  script    clinical dictations that use every term twice (offline template backend)
#   3  synth     three voices (espeak en-us, en-gb, piper) + hospital noise at 10-25 dB SNR
#   4  manifest  NeMo train/val/test manifests, split by script, validated
#   5  train     a tiny FastConformer-TDT from scratch on CPU (or --base-model), MLflow in OUT/run
#   6  eval      WER and term recall on the training split and every test set
#   7  serve     the OpenAI-compatible API, one file through curl, a test set through the API
# The last lines are the WER and term recall of the model, read from its eval reports.
#
# Done-markers: a stage that succeeded writes OUT/.done/stage-N; a re-run skips finished
# stages (a finished demo does no work and says so) and runs a failed or interrupted stage
# again. `--stage N` runs stage N and every later stage again (e.g. --stage 5 retrains).
# Nothing is deleted at the start: to start over, use another --out or remove it.
#
# Options (--name value, or --name=value; defaults in brackets):
#   --out DIR             output folder [$MEDASR_DEMO_DIR, else demo]
#   --terms FILE          target terms: terms.txt (term<TAB>category) or lexicon.jsonl
#                         [the bundled seed vocabulary, drug names only]
#   --num-terms K         keep the K hardest (rarest) terms [6]
#   --medical-test LIST   medical test manifest(s), NAME=MANIFEST or MANIFEST, comma-separated;
#                         each gives OUT/eval_NAME.json [test=OUT/splits/test.jsonl, the
#                         demo's held-out split]; the first is also scored through the API
#   --general-test FILE   a general-speech test manifest, scored as OUT/eval_general.json [none]
#   --base-model MODEL    fine-tune this .nemo or hub model instead of training the tiny model
#                         from scratch [none: from scratch]
#   --steps N             training steps [$MEDASR_DEMO_STEPS, else 300]
#   --port PORT           port of the demo server on 127.0.0.1 [$MEDASR_DEMO_PORT, else 8765]
#   --stage N             first stage to run [1]
#   --stop-stage M        last stage to run [7]
#   --dry-run             print each stage's commands, run nothing
#   --help                this text

# shellcheck source-path=SCRIPTDIR
set -euo pipefail

out=${MEDASR_DEMO_DIR:-demo}
terms=
num_terms=6
medical_test=
general_test=
base_model=
steps=${MEDASR_DEMO_STEPS:-300}
port=${MEDASR_DEMO_PORT:-8765}
stage=1
stop_stage=7
dry_run=false

# shellcheck source=../utils/parse_options.sh
. "$(dirname "${BASH_SOURCE[0]}")/../utils/parse_options.sh" # every variable above is an option
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)
# shellcheck source=../utils/stages.sh
. "$utils/stages.sh"
# shellcheck source=../utils/inputs.sh
. "$utils/inputs.sh"
stages_begin 1 7

[[ $num_terms =~ ^[1-9][0-9]*$ ]] || die "--num-terms must be a positive number, not '$num_terms'"
[[ $steps =~ ^[1-9][0-9]*$ ]] || die "--steps must be a positive number, not '$steps'"
[ -z "$terms" ] || need_file --terms "$terms"
parse_test_sets "${medical_test:-test=$out/splits/test.jsonl}" "$general_test"
if in_range 6; then # a given test manifest must exist (the demo's own split comes from stage 4)
  for i in "${!test_paths[@]}"; do
    [ -z "$medical_test" ] && [ "${test_options[$i]}" = --medical-test ] && continue
    need_file "${test_options[$i]}" "${test_paths[$i]}"
  done
fi

lexicon=$out/lexicon/lexicon.jsonl
model=$out/run/model.nemo

if stage_wanted 1 "lexicon: the $num_terms rarest target terms, with spoken forms and respellings"; then
  if [ -n "$terms" ]; then
    run medasr lexicon --terms-file "$terms" --limit "$num_terms" -o "$out/lexicon"
  else
    run medasr lexicon --seed --category drug --exclude-common --limit "$num_terms" -o "$out/lexicon"
  fi
  stage_done 1
fi

if stage_wanted 2 "script: clinical dictations that use every term twice (offline template backend)"; then
  run medasr script --backend template --terms "$lexicon" --per-term 2 \
    --style terse --max-terms 1 --seed 7 --out "$out/scripts.jsonl"
  stage_done 2
fi

if stage_wanted 3 "synth: three voices (espeak en-us, en-gb, piper neural) + hospital noise at 10-25 dB SNR"; then
  run medasr synth --scripts "$out/scripts.jsonl" --voices espeak:en-us,espeak:en-gb,piper:joe \
    --respellings "$lexicon" --per-script 2 --snr 10:25 --seed 7 --jobs 2 --out "$out/synth"
  stage_done 3
fi

if stage_wanted 4 "manifest: NeMo manifests, split by script, validated"; then
  run medasr manifest build "$out/synth/utterances.jsonl" --out "$out/splits" \
    --split train=0.8,val=0.1,test=0.1 --seed 7
  for split in train val test; do run medasr manifest validate "$out/splits/$split.jsonl"; done
  run medasr manifest stats "$out/splits/train.jsonl" --by voice
  stage_done 4
fi

if stage_wanted 5 "train: ${base_model:-a tiny FastConformer-TDT from scratch} on CPU ($steps steps; MLflow in $out/run)"; then
  init=()
  [ -z "$base_model" ] || init=(--init "$base_model")
  run medasr train --config tiny-cpu "${init[@]}" --train-manifest "$out/splits/train.jsonl" \
    --val-manifest "$out/splits/val.jsonl" --max-steps "$steps" --out "$out/run"
  stage_done 5
fi

if stage_wanted 6 "eval: WER and term recall on the training split and every test set"; then
  run medasr eval --manifest "$out/splits/train.jsonl" --model "$model" --terms "$lexicon" \
    --by voice --report "$out/eval_train.json"
  for i in "${!test_names[@]}"; do
    run medasr eval --manifest "${test_paths[$i]}" --model "$model" --terms "$lexicon" \
      --report "$out/eval_${test_names[$i]}.json" --plot "$out/eval_${test_names[$i]}.png"
  done
  stage_done 6
fi

if stage_wanted 7 "serve: the OpenAI-compatible API on 127.0.0.1:$port, one file transcribed through it"; then
  serve=(medasr serve --model "$model" --host 127.0.0.1 --port "$port" --model-id medasr-demo)
  printf '$ %s >%s 2>&1 &\n' "$(quote_cmd "${serve[@]}")" "$out/serve.log"
  first_test=${test_paths[0]}
  if [ "$dry_run" = true ]; then
    echo "\$ curl -fsS http://127.0.0.1:$port/v1/audio/transcriptions -F file=@AUDIO -F model=medasr-demo"
  else
    "${serve[@]}" >"$out/serve.log" 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 1 120); do
      curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
      kill -0 "$server" 2>/dev/null || { cat "$out/serve.log"; exit 1; }
      sleep 1
    done
    audio=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["audio_filepath"])' \
      "$out/splits/train.jsonl")
    run curl -fsS "http://127.0.0.1:$port/v1/audio/transcriptions" -F "file=@$audio" \
      -F model=medasr-demo -F response_format=json
    echo
  fi
  run medasr eval --manifest "$first_test" --endpoint "http://127.0.0.1:$port/v1" \
    --endpoint-model medasr-demo --terms "$lexicon" --report "$out/eval_${test_names[0]}_endpoint.json"
  if [ "$dry_run" != true ]; then
    kill "$server"
    wait "$server" 2>/dev/null || true
    trap - EXIT
  fi
  stage_done 7
fi

stages_end
[ "$dry_run" != true ] || exit 0
reports=()
for name in train "${test_names[@]}"; do
  [ ! -f "$out/eval_$name.json" ] || reports+=("$out/eval_$name.json")
done
if [ "${#reports[@]}" -gt 0 ]; then
  printf '\n%s== %s: WER and term recall (from %s/eval_*.json; MLflow store %s)%s\n' \
    "$bold" "$model" "$out" "$out/run/mlflow.db" "$plain"
  python3 "$utils/summary.py" "${reports[@]}"
fi
