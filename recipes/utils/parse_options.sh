# Option parsing for recipes, in the convention of Kaldi's utils/parse_options.sh (which
# icefall and ESPnet recipes use). Source it after setting the defaults:
#
#   stage=1
#   out=demo
#   dry_run=false
#   . "$utils/parse_options.sh"    # run.sh --stage 3 --out /data/x --dry-run
#
# - Every variable set before this file is sourced is an option: `--some-name VALUE` or
#   `--some-name=VALUE` sets `some_name`.
# - A boolean (an option whose default is true or false) may be given alone: `--dry-run`
#   is `--dry-run true` (and `--dry-run false` is accepted too).
# - Any other option takes the next argument as its value, even one that starts with `--`:
#   `--train-opts "--epochs 5"`.
# - `--help` (or `-h`) prints the calling script's header comment (the lines after `#!` up to
#   the first line that is not a comment) and exits 0, so the header is the help.
# - An unknown option, a missing or wrong value, or a positional argument: one line on
#   stderr, exit code 2.
# - The names of the options given are in the array `options_given` (e.g. `stage`), so a
#   recipe can tell `--stage 1` from the default.
# shellcheck shell=bash

options_given=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help)
      sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p;}' "$0"
      exit 0
      ;;
    --*=*)
      _po_name=${1%%=*}
      _po_value=${1#*=}
      _po_has_value=true
      _po_inline=true
      shift
      ;;
    --?*)
      _po_name=$1
      _po_value=${2-}
      _po_has_value=false
      _po_inline=false
      [ $# -lt 2 ] || _po_has_value=true
      shift
      ;;
    *)
      echo "$0: unexpected argument '$1' (options are --name value; see --help)" >&2
      exit 2
      ;;
  esac
  _po_var=${_po_name#--}
  _po_var=${_po_var//-/_}
  if ! [[ $_po_var =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!_po_var+set}" ]; then
    echo "$0: unknown option $_po_name (see --help)" >&2
    exit 2
  fi
  _po_default=${!_po_var}
  if [ "$_po_default" = true ] || [ "$_po_default" = false ]; then
    if [ "$_po_inline" = true ]; then
      [ "$_po_value" = true ] || [ "$_po_value" = false ] ||
        { echo "$0: $_po_name takes true or false, not '$_po_value'" >&2; exit 2; }
    elif [ "$_po_has_value" = true ] && { [ "$_po_value" = true ] || [ "$_po_value" = false ]; }; then
      shift # an explicit true/false
    else
      _po_value=true # a bare boolean flag
    fi
  else
    if [ "$_po_has_value" = false ]; then
      echo "$0: $_po_name needs a value (see --help)" >&2
      exit 2
    fi
    [ "$_po_inline" = true ] || shift
  fi
  printf -v "$_po_var" '%s' "$_po_value"
  options_given+=("$_po_var")
done
unset _po_name _po_value _po_has_value _po_inline _po_var _po_default
