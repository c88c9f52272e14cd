# Numbered stages with done-markers, for recipes (source it after parse_options.sh).
#
#   if stage_wanted 5 "train: fine-tune the model"; then
#     run medasr train --data "$out/splits" --out "$out/train"
#     stage_done 5
#   fi
#
# The recipe sets `stage`, `stop_stage`, `out` and `dry_run` (options), calls
# `stages_begin FIRST LAST` right after parsing them, checks its inputs, runs its stages, and
# calls `stages_end` at the end.
#
# - A stage runs when its number is in [--stage, --stop-stage] and it has no done-marker,
#   OUT/.done/stage-N, which `stage_done N` writes after the stage's commands succeeded: a
#   stage that failed or was interrupted (Ctrl-C) runs again on the next run, and a finished
#   one is skipped with a line that says so.
# - `--stage N` given on the command line runs stage N and every later stage again: their
#   markers are removed first, because their inputs are about to change. Nothing else is
#   ever deleted.
# - `run CMD ARGS...` prints the command as one line a user can copy (`$ medasr ...`), then
#   runs it; with --dry-run it only prints it, and no marker is read, written or removed.
# - `stage_inputs N TEXT PATH...`, first in a stage whose commands resume into what is there
#   (`medasr script` and `synth` top up an existing output): TEXT names what shapes those
#   outputs (options, input checksums). When it differs from the TEXT of the run that made
#   them, the PATHs are moved to OUT/old/stage-N-TIME/ first, so a re-run with another --seed
#   starts afresh instead of mixing old and new; with the same TEXT (an interrupted stage, or
#   an unchanged re-run) they are kept and resumed.
# - `markers=false` (set by the recipe) turns the markers off, e.g. on a worker node.
# shellcheck shell=bash disable=SC2154  # stage, stop_stage, out, dry_run: the recipe's options

markers=true
_stages_ran=0
bold='' plain='' # headers in bold on a terminal, plain in a log
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
_stages_skipped=0

# The recipe's one-line error for bad input, exit code 2.
die() {
  echo "$0: error: $*" >&2
  exit 2
}

# Whether an option was given on the command line (parse_options.sh records them).
option_given() {
  local name
  for name in "${options_given[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}

# Whether stage $1 is inside [--stage, --stop-stage] (to check only the inputs it needs).
in_range() {
  [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]
}

# The arguments as one shell line: words that need it are single-quoted.
quote_cmd() {
  local word line=""
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=,@%+^-]+$ ]]; then
      line+="$word "
    else
      line+="'${word//\'/\'\\\'\'}' "
    fi
  done
  printf '%s\n' "${line% }"
}

# Print a command (`$ ...`), then run it unless this is a dry run.
run() {
  printf '$ %s\n' "$(quote_cmd "$@")"
  [ "$dry_run" = true ] || "$@"
}

_marker() { printf '%s/.done/stage-%s' "$out" "$1"; }

# Check --stage/--stop-stage against the recipe's stages FIRST..LAST (call it right after the
# options are parsed, before in_range).
stages_begin() {
  _stages_last=$2
  [[ $stage =~ ^[0-9]+$ ]] || die "--stage must be a stage number ($1..$2), not '$stage'"
  [[ $stop_stage =~ ^[0-9]+$ ]] || die "--stop-stage must be a stage number ($1..$2), not '$stop_stage'"
  [ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop-stage $stop_stage"
  [ "$stage" -le "$2" ] || die "--stage $stage: this recipe's stages are $1..$2"
}

# With --stage N given, remove the markers of stage N onward: they are stale once stage N
# runs again. Done once, by the first stage_wanted, so after the recipe checked its inputs.
_stages_clear() {
  _stages_cleared=true
  if option_given stage && [ "$dry_run" != true ] && [ "$markers" = true ]; then
    local n
    for ((n = stage; n <= _stages_last; n++)); do rm -f "$(_marker "$n")"; done
  fi
}

# Whether stage $1 should run now; prints its header, or why it is skipped.
stage_wanted() {
  local n=$1 title=$2
  [ "${_stages_cleared-}" = true ] || _stages_clear
  in_range "$n" || return 1
  if [ "$markers" = true ] && ! { option_given stage && [ "$dry_run" = true ]; } &&
    [ -f "$(_marker "$n")" ]; then
    printf '== stage %s: %s: done already (%s), skipped\n' "$n" "${title%%:*}" "$(_marker "$n")"
    _stages_skipped=$((_stages_skipped + 1))
    return 1
  fi
  printf '\n%s== stage %s (%s): %s%s\n' "$bold" "$n" "$(date '+%F %T')" "$title" "$plain"
  _stages_ran=$((_stages_ran + 1))
  return 0
}

# Mark stage $1 as done (after its commands succeeded).
stage_done() {
  [ "$dry_run" != true ] && [ "$markers" = true ] || return 0
  mkdir -p "$out/.done"
  date '+%F %T' >"$(_marker "$1")"
}

# Move stage $1's resumable outputs ($3...) aside when what shapes them ($2) changed since the
# run that made them (see the top of this file); record $2 for the next run.
stage_inputs() {
  local n=$1 text=$2 path rel old moved=""
  shift 2
  for path in "$@"; do [ "${path#"$out"/}" != "$path" ] || die "stage_inputs: $path is not inside $out"; done
  [ "$dry_run" != true ] && [ "$markers" = true ] || return 0
  local file before=""
  file=$(_marker "$n").inputs
  [ ! -f "$file" ] || before=$(cat "$file")
  if [ -f "$file" ] && [ "$before" != "$text" ]; then
    old="$out/old/stage-$n-$(date +%Y%m%d-%H%M%S)-$$"
    for path in "$@"; do
      [ -e "$path" ] || continue
      rel=${path#"$out"/}
      mkdir -p "$(dirname "$old/$rel")"
      mv "$path" "$old/$rel"
      moved+=" $rel"
    done
    [ -z "$moved" ] || printf 'stage %s: changed since the last run (%s -> %s); moved%s to %s\n' \
      "$n" "$before" "$text" "$moved" "$old"
  fi
  mkdir -p "$out/.done"
  printf '%s\n' "$text" >"$file"
}

# Whether this run ran any stage (false after a re-run with every stage done already).
stages_ran() {
  [ "$_stages_ran" -gt 0 ]
}

# The closing line: what ran, or that there was nothing to do.
stages_end() {
  if [ "$dry_run" = true ]; then
    echo "dry run: $_stages_ran stage(s) printed, nothing was run"
  elif [ "$_stages_ran" -eq 0 ]; then
    echo "nothing to do: stages $stage..$stop_stage are done already (markers in $out/.done);" \
      "--stage N runs stage N and the later stages again"
  else
    echo "ran $_stages_ran stage(s), skipped $_stages_skipped finished one(s)"
  fi
}
