# Checks of a recipe's inputs, each failing with one line (source it after stages.sh).
# shellcheck shell=bash

# need_file OPTION PATH: PATH must be a readable file.
need_file() {
  [ -n "$2" ] || die "$1 is required (see --help)"
  [ -f "$2" ] && [ -r "$2" ] || die "$1: $2 is not a readable file"
}

# need_value OPTION VALUE [WHAT]: VALUE must not be empty.
need_value() {
  [ -n "$2" ] || die "$1 is required${3:+: $3} (see --help)"
}

# parse_test_sets MEDICAL [GENERAL]: MEDICAL is a comma-separated list of NAME=MANIFEST or
# MANIFEST (NAME: the file name without .jsonl); GENERAL one manifest, named "general".
# Sets the arrays test_names, test_paths and test_options (the option each came from),
# medical sets first, in order.
parse_test_sets() {
  local item
  local -a items
  test_names=()
  test_paths=()
  test_options=()
  IFS=, read -ra items <<<"$1"
  for item in "${items[@]}"; do
    [ -z "$item" ] || _add_test_set --medical-test "$item"
  done
  [ "${#test_names[@]}" -gt 0 ] || die "no medical test manifest given (see --help)"
  [ -z "${2-}" ] || _add_test_set --general-test "general=$2"
}

_add_test_set() {
  local option=$1 item=$2 name path seen
  if [[ $item == *=* ]]; then
    name=${item%%=*}
    path=${item#*=}
  else
    path=$item
    name=$(basename "$path" .jsonl)
  fi
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] ||
    die "$option: test set name '$name' (from '$item'): use letters, digits, '.', '_' or '-'"
  for seen in "${test_names[@]}"; do
    [ "$seen" != "$name" ] || die "$option: two test sets are named '$name': name them apart with NAME=MANIFEST"
  done
  test_names+=("$name")
  test_paths+=("$path")
  test_options+=("$option")
}
