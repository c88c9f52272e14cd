#!/usr/bin/env bash
# Adapt Parakeet TDT 0.6B v2 to your clinical speech: the production loop, on GPUs.
#
#   recipes/parakeet/run.sh --medical-test clinic=clinic_test.jsonl --llm-base-url URL \
#       --llm-model NAME [--stage N] [--stop-stage M] [--dry-run] [options]
#
# Stages (each one or a few `medasr ...` commands, printed before they run):
#   0  base      compile the target terms (--terms, else the bundled seed vocabulary) and
#                measure the base model on every test set: OUT/eval/base_NAME.json
#   1  lexicon   the terms the base model gets wrong, from the first medical test set's report
#   2  script    dictations that use them, from an OpenAI-compatible LLM (--llm-base-url)
#   3  synth     several TTS voices + hospital noise at 10-25 dB SNR
#   4  manifest  NeMo manifests, split train/val/test by script
#   5  train     fine-tune the base model (DeepSpeed stage 2 on GPUs; --nodes/--gpus/--launcher),
#                with --resume, so a crashed or preempted run continues from its last checkpoint
#   6  eval      the fine-tuned model on every test set: OUT/eval/tuned_NAME.json
#   7  summary   before -> after: WER, medical WER, term recall (all target terms, and the
#                terms stage 1 picked), in OUT/summary.txt
#
# --dry-run prints every command exactly as it would run and the merged training config
# (`medasr train ... --print-config`), checks the inputs, and creates nothing; it needs no
# GPU, no network and no model weights.
#
# Done-markers: a stage that succeeded writes OUT/.done/stage-N; a re-run skips finished
# stages and runs a failed or interrupted stage again. `--stage N` runs stage N and every
# later stage again. Nothing is deleted: stage 5 resumes from OUT/train's last checkpoint,
# so to train afresh (new data, new settings) give a new --out, or move OUT/train away.
#
# Options (--name value, or --name=value; defaults in brackets):
#   --out DIR              output folder, on storage every node sees [runs/parakeet]
#   --terms FILE           target terms: terms.txt (term<TAB>category) or lexicon.jsonl
#                          [the bundled seed vocabulary, ordinary English words left out]
#   --medical-test LIST    required (by stages 0, 1, 6, 7): your clinical test manifest(s),
#                          NAME=MANIFEST or MANIFEST, comma-separated; the first one drives
#                          the lexicon (stage 1)
#   --general-test FILE    a general-speech test manifest, measured before and after (does
#                          general WER suffer?) [none]
#   --general-train FILE   general-speech training manifest mixed into training (replay,
#                          against forgetting; medasr train warns without it) [none]
#   --general-val FILE     general-speech validation manifest: a second validation set, the
#                          checkpoint is picked on the mean of both [none]
#   --base-model MODEL     hub name or .nemo file to start from [nvidia/parakeet-tdt-0.6b-v2]
#   --max-recall R         stage 1 keeps terms whose base recall is at most R [0.8]
#   --min-occurrences N    ... and that occur at least N times in the test set [3]
#   --llm-base-url URL     OpenAI-compatible server for stage 2, .../v1 [$OPENAI_BASE_URL];
#                          its key, if it needs one, in the environment as OPENAI_API_KEY
#   --llm-model NAME       the chat model on that server (required for stage 2)
#   --per-term N           dictations each term appears in [20]
#   --voices LIST          TTS voice plan [espeak:en-gb,espeak:en-029,piper:joe]
#   --noise-dir LIST       folder(s) of your noise recordings, comma-separated [none: the
#                          built-in hospital noise bank]
#   --jobs N               synth worker processes [the number of CPUs]
#   --split SPEC           manifest split [train=0.9,val=0.05,test=0.05]
#   --nodes N              training nodes [1]
#   --gpus G               GPUs per node [all visible; required with --launcher torchrun|srun]
#   --launcher NAME        how stage 5 starts its processes [auto]:
#                            none      `medasr train` (one node; Lightning starts one process per GPU)
#                            torchrun  torchrun on each node (multi-node: run stage 5 on every
#                                      node with --node-rank K, --rdzv-endpoint node 0)
#                            srun      srun from inside a SLURM allocation (one line, every node)
#                            auto      none on one node, torchrun on several
#   --node-rank K          this node's rank for torchrun (0 runs every stage; K > 0 only
#                          stage 5, and writes no markers) [0]
#   --rdzv-endpoint H:P    node 0's address for torchrun's rendezvous (several nodes) [none]
#   --train-config FILE    a training YAML merged over the shipped config (medasr train --config)
#   --train-opts "..."     more `medasr train` options, split on spaces
#                          (e.g. "--epochs 5 --set trainer.val_check_interval=0.25") [none]
#   --mlflow-uri URI       MLflow tracking server [a local store in OUT/train]
#   --stage N              first stage to run [0]
#   --stop-stage M         last stage to run [7]
#   --dry-run              print the commands and the merged training config, run nothing
#   --help                 this text
# Running it on a GPU cluster (one node, torchrun, SLURM, the Kubernetes PyTorchJob):
# docs/recipes.md.

# shellcheck source-path=SCRIPTDIR
set -euo pipefail

out=runs/parakeet
terms=
medical_test=
general_test=
general_train=
general_val=
base_model=nvidia/parakeet-tdt-0.6b-v2
max_recall=0.8
min_occurrences=3
llm_base_url=${OPENAI_BASE_URL:-}
llm_model=
per_term=20
voices=espeak:en-gb,espeak:en-029,piper:joe
noise_dir=
jobs=$(nproc 2>/dev/null || echo 4)
split=train=0.9,val=0.05,test=0.05
nodes=1
gpus=
launcher=auto
node_rank=0
rdzv_endpoint=
train_config=
train_opts=
mlflow_uri=
stage=0
stop_stage=7
dry_run=false

# shellcheck source=../utils/parse_options.sh
. "$(dirname "${BASH_SOURCE[0]}")/../utils/parse_options.sh" # every variable above is an option
utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../utils" && pwd)
# shellcheck source=../utils/stages.sh
. "$utils/stages.sh"
# shellcheck source=../utils/inputs.sh
. "$utils/inputs.sh"
stages_begin 0 7

# --- inputs: each checked where a stage in [--stage, --stop-stage] needs it -----------------
for opt in nodes per_term jobs min_occurrences; do
  [[ ${!opt} =~ ^[1-9][0-9]*$ ]] || die "--${opt//_/-} must be a positive number, not '${!opt}'"
done
[ -z "$gpus" ] || [[ $gpus =~ ^[1-9][0-9]*$ ]] || die "--gpus must be a positive number, not '$gpus'"
[[ $node_rank =~ ^[0-9]+$ ]] && [ "$node_rank" -lt "$nodes" ] ||
  die "--node-rank must be 0..$((nodes - 1)) for --nodes $nodes, not '$node_rank'"
[ "$launcher" != auto ] || { launcher=none; [ "$nodes" -eq 1 ] || launcher=torchrun; }
case $launcher in
  none) [ "$nodes" -eq 1 ] || die "--nodes $nodes needs a launcher on every node: --launcher torchrun or srun" ;;
  torchrun | srun) need_value --gpus "$gpus" "GPUs per node, for $launcher" ;;
  *) die "--launcher must be auto, none, torchrun or srun, not '$launcher'" ;;
esac
if [ "$launcher" = torchrun ] && [ "$nodes" -gt 1 ]; then
  need_value --rdzv-endpoint "$rdzv_endpoint" "node 0's HOST:PORT, for torchrun on $nodes nodes"
fi
if [ "$node_rank" -gt 0 ]; then # a worker node of a torchrun run: stage 5 only, no markers
  [ "$stage" = 5 ] && [ "$stop_stage" = 5 ] ||
    die "--node-rank $node_rank runs only the training stage: add --stage 5 --stop-stage 5"
  markers=false
fi
[ -z "$terms" ] || need_file --terms "$terms"
if in_range 0 || in_range 1 || in_range 6 || in_range 7; then # the stages that use the test sets
  need_value --medical-test "$medical_test" "your clinical test manifest(s), NAME=MANIFEST"
  parse_test_sets "$medical_test" "$general_test"
  if in_range 0 || in_range 6; then
    for i in "${!test_paths[@]}"; do need_file "${test_options[$i]}" "${test_paths[$i]}"; done
  fi
fi
if in_range 0 || in_range 5; then
  [[ $base_model != *.nemo ]] || need_file --base-model "$base_model"
fi
if in_range 2; then
  need_value --llm-base-url "$llm_base_url" "an OpenAI-compatible server (.../v1) for stage 2"
  need_value --llm-model "$llm_model" "the chat model that writes the dictations (stage 2)"
fi
IFS=, read -ra noise_dirs <<<"$noise_dir"
if in_range 3; then
  for dir in "${noise_dirs[@]}"; do [ -d "$dir" ] || die "--noise-dir: $dir is not a folder"; done
fi
if in_range 5; then
  [ -z "$general_train" ] || need_file --general-train "$general_train"
  [ -z "$general_val" ] || need_file --general-val "$general_val"
  [ -z "$train_config" ] || need_file --train-config "$train_config"
fi

targets=$out/terms/lexicon.jsonl # every target term, with spoken forms: what eval measures
lexicon=$out/lexicon/lexicon.jsonl # the hard ones: what the data is made for
model=$out/train/model.nemo

if stage_wanted 0 "base: the target terms, and the base model $base_model on every test set"; then
  if [ -n "$terms" ]; then
    run medasr lexicon --terms-file "$terms" -o "$out/terms"
  else
    run medasr lexicon --seed --exclude-common -o "$out/terms"
  fi
  for i in "${!test_names[@]}"; do
    run medasr eval --manifest "${test_paths[$i]}" --model "$base_model" --terms "$targets" \
      --report "$out/eval/base_${test_names[$i]}.json"
  done
  stage_done 0
fi

if stage_wanted 1 "lexicon: the terms the base model gets wrong on ${test_names[0]-}"; then
  run medasr lexicon --from-eval "$out/eval/base_${test_names[0]}.json" \
    --max-recall "$max_recall" --min-occurrences "$min_occurrences" -o "$out/lexicon"
  stage_done 1
fi

if stage_wanted 2 "script: $per_term dictations per term from $llm_model"; then
  run medasr script --backend openai --base-url "$llm_base_url" --model "$llm_model" \
    --terms "$lexicon" --per-term "$per_term" --out "$out/scripts.jsonl" \
    --report "$out/scripts_report.json"
  stage_done 2
fi

if stage_wanted 3 "synth: voices $voices, noise at 10-25 dB SNR"; then
  noise=()
  for dir in "${noise_dirs[@]}"; do noise+=(--noise-dir "$dir"); done
  run medasr synth --scripts "$out/scripts.jsonl" --voices "$voices" --respellings "$lexicon" \
    "${noise[@]}" --jobs "$jobs" --out "$out/synth"
  stage_done 3
fi

if stage_wanted 4 "manifest: NeMo manifests, split $split by script"; then
  run medasr manifest build "$out/synth/utterances.jsonl" --out "$out/splits" --split "$split"
  stage_done 4
fi

# `medasr train`'s arguments: one list for the run and for --print-config.
train_args=(train --data "$out/splits" --init "$base_model")
[ -z "$train_config" ] || train_args+=(--config "$train_config")
if [ -n "$general_val" ]; then
  train_args+=(--val-manifest "medical=$out/splits/val.jsonl" --val-manifest "general=$general_val")
fi
[ -z "$general_train" ] || train_args+=(--replay "$general_train")
train_args+=(--nodes "$nodes")
[ -z "$gpus" ] || train_args+=(--gpus "$gpus")
[ -z "$mlflow_uri" ] || train_args+=(--mlflow-uri "$mlflow_uri")
read -ra extra <<<"$train_opts"
train_args+=("${extra[@]}" --out "$out/train" --resume)
case $launcher in
  none) train_cmd=(medasr "${train_args[@]}") ;;
  srun) train_cmd=(srun --nodes "$nodes" --ntasks-per-node "$gpus" medasr "${train_args[@]}") ;;
  torchrun)
    if [ "$nodes" -eq 1 ]; then
      rdzv=(--standalone)
    else
      rdzv=(--node-rank "$node_rank" --rdzv-backend c10d --rdzv-endpoint "$rdzv_endpoint")
    fi
    # A fresh store at each restart (pytorch/pytorch#135712; docs/train.md, "Several nodes").
    train_cmd=(env TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes "$nodes"
      --nproc-per-node "$gpus" "${rdzv[@]}" --max-restarts 3 -m medasr_cli "${train_args[@]}")
    ;;
esac

if stage_wanted 5 "train: fine-tune $base_model on $nodes node(s) (launcher: $launcher)"; then
  if [ "$launcher" = torchrun ] && [ "$nodes" -gt 1 ]; then
    echo "# node $node_rank of $nodes; on every other node K run this line with --node-rank K," \
      "or: $0 <the same options> --node-rank K --stage 5 --stop-stage 5"
  fi
  run "${train_cmd[@]}"
  if [ "$dry_run" = true ]; then
    echo "# the merged training config (\`medasr $(quote_cmd "${train_args[@]}") --print-config\`):"
    medasr "${train_args[@]}" --print-config
  fi
  stage_done 5
fi

if stage_wanted 6 "eval: the fine-tuned model on every test set"; then
  for i in "${!test_names[@]}"; do
    run medasr eval --manifest "${test_paths[$i]}" --model "$model" --terms "$targets" \
      --report "$out/eval/tuned_${test_names[$i]}.json"
  done
  stage_done 6
fi

if stage_wanted 7 "summary: before -> after on every test set"; then
  pairs=()
  for name in "${test_names[@]}"; do
    pairs+=("$out/eval/base_$name.json:$out/eval/tuned_$name.json")
  done
  run python3 "$utils/summary.py" --focus "$lexicon" --out "$out/summary.txt" "${pairs[@]}"
  stage_done 7
fi

stages_end
