#!/usr/bin/env bash
# The closed-loop experiment: does one turn of the loop make a model recognise the medical
# terms it missed, on speech it has never heard, without hurting general speech?
# A CPU-sized stand-in for the production run (recipes/parakeet): medasr builds its own base
# model, then runs one turn of the loop on it and writes the before/after report.
#
#   recipes/closed-loop/run.sh [--stage N] [--stop-stage M] [options]
#
# Stages (each prints its `medasr ...` commands before running them):
#   1  terms     target terms (--terms, else the rarest bundled drugs, conditions, procedures
#                and anatomy) and the base vocabulary: seed terms sharing no word with them
#   2  text      template dictations: the base domain (no target term) split into
#                train/val/general-test by script, and the medical test (target terms)
#   3  audio     noise banks (training: babble, pump, hvac; held out: monitor, transient);
#                base train/val in the seen voices; each test set twice: seen voices with
#                training noise, held-out voices with held-out noise
#   4  manifest  NeMo manifests; training data keeps apart from every test sentence
#   5  base      the base model: FastConformer-TDT (arch base-cpu) from scratch on the base
#                domain (skipped with --base-model)
#   6  eval      the base model on every test set
#   7  select    lexicon --from-eval: the terms the base model missed (recall <= --max-recall)
#   8  turn data script -> synth (turn voices, training noise) -> manifest for those terms
#   9  tune      train --init base --replay base-train; and the same without replay
#  10  eval      both tuned models on every test set
#  11  report    OUT/results.{json,md,png}: term recall and WER before/after, sizes, times
#
# Done-markers as in every recipe (OUT/.done/stage-N): a re-run skips finished stages,
# `--stage N` runs N onward again, nothing is deleted. Stage wall times go to OUT/times.tsv.
# A later turn reuses the base model: `--stage 6` with other turn options (--seed,
# --turn-per-term, ...). Stages 2, 3 and 8 top up what is there, so when their options or
# inputs changed since the run that made their outputs, those move to OUT/old/ first.
#
# Options (--name value, or --name=value; defaults in brackets):
#   --out DIR             output folder [closed-loop]
#   --terms FILE          target terms: terms.txt or lexicon.jsonl [the bundled vocabulary's
#                         rarest: 10 drugs, 4 conditions, 3 procedures, 3 anatomy terms]
#   --medical-test LIST   medical test sets, NAME=MANIFEST, comma-separated; the first picks the
#                         terms of the turn [medical_seen and medical_heldout, built in stage 3]
#   --general-test LIST   general control sets (no target terms), NAME=MANIFEST, comma-separated
#                         [general_seen and general_heldout, built in stage 3]
#   --base-model MODEL    start the turn from this .nemo instead of training one [none]
#   --replay FILE         general-domain manifest replayed while tuning
#                         [OUT/manifests/base_train.jsonl]
#   --base-terms N        size of the base vocabulary [150]
#   --base-per-term N     base dictations per base term [8]
#   --base-steps N        optimizer steps of the base model [900]
#   --test-per-term N     medical test dictations per target term [4]
#   --turn-per-term N     dictations per selected term in the turn's training data [30]
#   --turn-steps N        optimizer steps of each tuned model [400]
#   --max-recall R        select terms whose recall on the first medical set is at most R [0.5]
#   --seen-voices LIST    voices of all training data and the seen-voice test sets
#                         [espeak:en-us,espeak:en-gb,espeak:en-us+m3,espeak:en-gb+f2]
#   --turn-voices LIST    voices of the turn's training data: the seen voices and two accents
#                         the base model never heard (no voice may use a held-out accent)
#                         [the seen voices,espeak:en-gb-x-rp+m1,espeak:en-gb-x-gbcwmd+f1]
#   --heldout-voices LIST voices of the held-out test sets, never trained on
#                         [espeak:en-029,espeak:en-gb-scotland+f4,espeak:en-gb-x-gbclan+m7]
#   --snr LO:HI           noise SNR range of every set [10:25]
#   --jobs N              synthesis worker processes [2]
#   --seed N              seed of text, audio and training [1]
#   --stage N             first stage to run [1]
#   --stop-stage M        last stage to run [11]
#   --dry-run             print each stage's commands, run nothing
#   --help                this text

# shellcheck source-path=SCRIPTDIR
set -euo pipefail

out=closed-loop
terms=
medical_test=
general_test=
base_model=
replay=
base_terms=150
base_per_term=8
base_steps=900
test_per_term=4
turn_per_term=30
turn_steps=400
max_recall=0.5
seen_voices=espeak:en-us,espeak:en-gb,espeak:en-us+m3,espeak:en-gb+f2
turn_voices=
heldout_voices=espeak:en-029,espeak:en-gb-scotland+f4,espeak:en-gb-x-gbclan+m7
snr=10:25
jobs=2
seed=1
stage=1
stop_stage=11
dry_run=false

# shellcheck source=../utils/parse_options.sh
. "$(dirname "${BASH_SOURCE[0]}")/../utils/parse_options.sh" # every variable above is an option
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
utils=$here/../utils
# shellcheck source=../utils/stages.sh
. "$utils/stages.sh"
# shellcheck source=../utils/inputs.sh
. "$utils/inputs.sh"
stages_begin 1 11

for name in base_terms base_per_term base_steps test_per_term turn_per_term turn_steps jobs; do
  [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "--${name//_/-} must be a positive number, not '${!name}'"
done
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a number, not '$seed'"
[[ $max_recall =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "--max-recall must be in [0, 1], not '$max_recall'"
[[ $snr =~ ^[0-9.]+:[0-9.]+$ ]] || die "--snr must be LO:HI in dB, not '$snr'"
[ -z "$terms" ] || need_file --terms "$terms"
[ -z "$replay" ] || need_file --replay "$replay"

data=$out/data
manifests=$out/manifests
replay=${replay:-$manifests/base_train.jsonl}
turn_voices=${turn_voices:-$seen_voices,espeak:en-gb-x-rp+m1,espeak:en-gb-x-gbcwmd+f1}
for voice in ${seen_voices//,/ } ${turn_voices//,/ }; do # held-out accents stay unheard
  for held in ${heldout_voices//,/ }; do
    [ "${voice%%+*}" != "${held%%+*}" ] || die "voice $voice: its accent is held out ($held)"
  done
done
target_lexicon=$out/lexicon/target/lexicon.jsonl
base_lexicon=$out/lexicon/base/lexicon.jsonl
turn_lexicon=$out/lexicon/turn/lexicon.jsonl
base=${base_model:-$out/base/model.nemo}
py=python3
[ ! -x "$(dirname "$(command -v medasr)")/python" ] || py=$(dirname "$(command -v medasr)")/python

# Test sets: NAME=MANIFEST lists into names[] and paths[]; kinds[] says medical or general.
test_names=()
test_paths=()
test_kinds=()
add_sets() { # KIND LIST
  local item
  local -a items
  IFS=, read -ra items <<<"$2"
  for item in "${items[@]}"; do
    [[ $item == *=* ]] || die "--$1-test: give NAME=MANIFEST, not '$item'"
    [[ ${item%%=*} =~ ^[A-Za-z0-9_.-]+$ ]] || die "--$1-test: bad set name '${item%%=*}'"
    test_names+=("${item%%=*}")
    test_paths+=("${item#*=}")
    test_kinds+=("$1")
  done
}
add_sets medical "${medical_test:-medical_seen=$manifests/medical_seen.jsonl,medical_heldout=$manifests/medical_heldout.jsonl}"
add_sets general "${general_test:-general_seen=$manifests/general_seen.jsonl,general_heldout=$manifests/general_heldout.jsonl}"
if [ "$dry_run" != true ] && { in_range 6 || in_range 10; }; then
  for i in "${!test_paths[@]}"; do
    [ "$stage" -le 4 ] && [[ ${test_paths[$i]} == "$manifests"/* ]] && continue # built below
    need_file "--${test_kinds[$i]}-test" "${test_paths[$i]}"
  done
fi
[ -z "$base_model" ] || [ "$dry_run" = true ] || [[ $base_model != *.nemo ]] ||
  need_file --base-model "$base_model"

# Stage wall times: OUT/times.tsv (stage, name, seconds), read by the report.
stage_started=0
begin() { # N TEXT
  stage_wanted "$1" "$2" || return 1
  stage_started=$(date +%s)
}
finish() { # N NAME
  if [ "$dry_run" != true ]; then
    printf '%s\t%s\t%s\n' "$1" "$2" "$(($(date +%s) - stage_started))" >>"$out/times.tsv"
  fi
  stage_done "$1"
}

sums() { # FILE...: one checksum per file that exists (what a stage's outputs were made from)
  local f
  for f in "$@"; do [ ! -f "$f" ] || printf '%s:%s ' "${f##*/}" "$(cksum <"$f" | cut -d' ' -f1)"; done
}

synth_set() { # NAME SCRIPTS VOICES NOISE_BANK LEXICON SEED
  run medasr synth --scripts "$2" --voices "$3" --noise-bank "$4" --no-auto-noise-bank \
    --respellings "$5" --per-script 1 --snr "$snr" --max-utterance-s 10 --seed "$6" \
    --jobs "$jobs" --out "$data/audio/$1"
}

eval_all() { # MODEL PREFIX
  local i lexicon
  for i in "${!test_names[@]}"; do
    lexicon=$target_lexicon
    [ "${test_kinds[$i]}" = medical ] || lexicon=$base_lexicon # the control's own vocabulary
    run medasr eval --manifest "${test_paths[$i]}" --model "$1" --terms "$lexicon" \
      --report "$out/eval/$2_${test_names[$i]}.json"
  done
}

if begin 1 "terms: target terms and the base vocabulary (no word in common)"; then
  if [ -n "$terms" ]; then
    run medasr lexicon --terms-file "$terms" -o "$out/lexicon/target"
  else
    for pick in drug:10 condition:4 procedure:3 anatomy:3; do
      run medasr lexicon --seed --exclude-common --category "${pick%%:*}" --limit "${pick#*:}" \
        -o "$out/lexicon/pick-${pick%%:*}"
    done
    run medasr lexicon --terms-file "$out/lexicon/pick-drug/lexicon.jsonl" \
      --terms-file "$out/lexicon/pick-condition/lexicon.jsonl" \
      --terms-file "$out/lexicon/pick-procedure/lexicon.jsonl" \
      --terms-file "$out/lexicon/pick-anatomy/lexicon.jsonl" -o "$out/lexicon/target"
  fi
  run medasr lexicon --seed --exclude-common -o "$out/lexicon/seed"
  run "$py" "$here/local/data.py" base-terms "$out/lexicon/seed/lexicon.jsonl" "$target_lexicon" \
    --count "$base_terms" --seed "$seed" --out "$out/lexicon/base-pick.jsonl"
  run medasr lexicon --terms-file "$out/lexicon/base-pick.jsonl" -o "$out/lexicon/base"
  finish 1 terms
fi

if begin 2 "text: base-domain dictations (train/val/general test) and the medical test"; then
  stage_inputs 2 "seed=$seed base-per-term=$base_per_term test-per-term=$test_per_term \
$(sums "$base_lexicon" "$target_lexicon")" "$data/text/base.jsonl" "$data/text/base" \
    "$data/text/medical_test.jsonl"
  run medasr script --backend template --terms "$base_lexicon" --per-term "$base_per_term" \
    --max-terms 2 --style terse --seed "$seed" --out "$data/text/base.jsonl"
  run "$py" "$here/local/data.py" split-scripts "$data/text/base.jsonl" \
    --split train=0.85,val=0.05,test=0.10 --seed "$seed" --out "$data/text/base"
  run medasr script --backend template --terms "$target_lexicon" --per-term "$test_per_term" \
    --max-terms 2 --style terse --seed "$((seed + 1000))" --out "$data/text/medical_test.jsonl"
  finish 2 text
fi

if begin 3 "audio: noise banks; base train/val (seen voices); test sets in seen and held-out voices"; then
  stage_inputs 3 "seed=$seed seen=$seen_voices heldout=$heldout_voices snr=$snr \
$(sums "$data/text/base/train.jsonl" "$data/text/base/val.jsonl" "$data/text/base/test.jsonl" \
    "$data/text/medical_test.jsonl" "$base_lexicon" "$target_lexicon")" "$data/noise" "$data/audio"
  run medasr synth noise-bank --category babble --category pump --category hvac --seed "$seed" --out "$data/noise/train"
  run medasr synth noise-bank --category monitor --category transient --seed "$((seed + 1))" \
    --out "$data/noise/heldout"
  synth_set base_train "$data/text/base/train.jsonl" "$seen_voices" "$data/noise/train" \
    "$base_lexicon" "$seed"
  synth_set base_val "$data/text/base/val.jsonl" "$seen_voices" "$data/noise/train" \
    "$base_lexicon" "$((seed + 1))"
  synth_set general_seen "$data/text/base/test.jsonl" "$seen_voices" "$data/noise/train" \
    "$base_lexicon" "$((seed + 2))"
  synth_set general_heldout "$data/text/base/test.jsonl" "$heldout_voices" "$data/noise/heldout" \
    "$base_lexicon" "$((seed + 3))"
  synth_set medical_seen "$data/text/medical_test.jsonl" "$seen_voices" "$data/noise/train" \
    "$target_lexicon" "$((seed + 4))"
  synth_set medical_heldout "$data/text/medical_test.jsonl" "$heldout_voices" "$data/noise/heldout" \
    "$target_lexicon" "$((seed + 5))"
  finish 3 audio
fi

if begin 4 "manifest: NeMo manifests; training data kept apart from every test sentence"; then
  for name in base_val general_seen general_heldout medical_seen medical_heldout; do
    run medasr manifest build "$data/audio/$name/utterances.jsonl" --out "$manifests/$name.jsonl"
  done
  run medasr manifest build "$data/audio/base_train/utterances.jsonl" \
    --out "$data/base_train_all.jsonl"
  tests=()
  for path in "${test_paths[@]}"; do tests+=(--test "$path"); done
  run "$py" "$here/local/data.py" keep-apart "$data/base_train_all.jsonl" "${tests[@]}" \
    --absent "$target_lexicon" --out "$manifests/base_train.jsonl"
  for name in base_train base_val general_seen general_heldout medical_seen medical_heldout; do
    run medasr manifest validate "$manifests/$name.jsonl"
  done
  finish 4 manifest
fi

if begin 5 "base: FastConformer-TDT (base-cpu) from scratch, $base_steps steps (MLflow in $out/base)"; then
  if [ -n "$base_model" ]; then
    echo "--base-model $base_model: no base model to train"
  else
    run medasr train --config closed-loop-cpu --from-scratch --arch base-cpu \
      --train-manifest "$manifests/base_train.jsonl" --val-manifest "$manifests/base_val.jsonl" \
      --max-steps "$base_steps" --set "seed=$seed" --out "$out/base"
  fi
  finish 5 base
fi

if begin 6 "eval: the base model on every test set"; then
  eval_all "$base" base
  finish 6 eval-base
fi

if begin 7 "select: the terms the base model missed on ${test_names[0]} (recall <= $max_recall)"; then
  run medasr lexicon --from-eval "$out/eval/base_${test_names[0]}.json" \
    --max-recall "$max_recall" -o "$out/lexicon/turn"
  finish 7 select
fi

if begin 8 "turn data: dictations for the selected terms, turn voices, training noise"; then
  stage_inputs 8 "seed=$seed turn-per-term=$turn_per_term voices=$turn_voices snr=$snr \
$(sums "$turn_lexicon")" "$data/text/turn.jsonl" "$data/audio/turn" "$data/turn"
  run medasr script --backend template --terms "$turn_lexicon" --per-term "$turn_per_term" \
    --max-terms 2 --style terse --seed "$((seed + 2000))" --out "$data/text/turn.jsonl"
  synth_set turn "$data/text/turn.jsonl" "$turn_voices" "$data/noise/train" "$turn_lexicon" \
    "$((seed + 6))"
  run medasr manifest build "$data/audio/turn/utterances.jsonl" --out "$data/turn" \
    --split train=0.9,val=0.1 --seed "$seed"
  tests=()
  for path in "${test_paths[@]}"; do tests+=(--test "$path"); done
  run "$py" "$here/local/data.py" keep-apart "$data/turn/train.jsonl" "${tests[@]}" \
    --out "$manifests/turn_train.jsonl"
  run "$py" "$here/local/data.py" keep-apart "$data/turn/val.jsonl" "${tests[@]}" \
    --out "$manifests/turn_val.jsonl"
  finish 8 turn-data
fi

if begin 9 "tune: train --init base --replay (and without replay), $turn_steps steps each"; then
  for variant in tuned tuned_noreplay; do
    extra=(--replay "$replay")
    [ "$variant" = tuned ] || extra=()
    run medasr train --config closed-loop-cpu --init "$base" "${extra[@]}" \
      --train-manifest "$manifests/turn_train.jsonl" \
      --val-manifest "medical=$manifests/turn_val.jsonl" \
      --val-manifest "general=$manifests/base_val.jsonl" \
      --max-steps "$turn_steps" --lr 5e-4 --set model.optim.sched.warmup_ratio=0.05 \
      --set "seed=$seed" --out "$out/$variant"
  done
  finish 9 tune
fi

if begin 10 "eval: both tuned models on every test set"; then
  eval_all "$out/tuned/model.nemo" tuned
  eval_all "$out/tuned_noreplay/model.nemo" tuned_noreplay
  finish 10 eval-tuned
fi

if begin 11 "report: $out/results.{json,md,png}"; then
  sets=()
  for i in "${!test_names[@]}"; do sets+=(--set "${test_kinds[$i]}:${test_names[$i]}"); done
  run "$py" "$here/local/report.py" "$out" "${sets[@]}"
  finish 11 report
fi

stages_end
[ "$dry_run" != true ] || exit 0
[ ! -f "$out/results.md" ] || cat "$out/results.md"
