#!/usr/bin/env bash
# Prepare, on this (networked, CPU) machine, what scripts/device/gpu_checks.sh carries to a
# lent GPU machine, which has no network and no espeak-ng:
#   .whl/      Python 3.12 x86-64 wheels the device image lacks (scripts/device/wheels.txt);
#              two sdist-only packages are built into wheels here
#   .devdata/  a small synthetic clinical dataset: utterances.jsonl + 16 kHz FLAC
# Both are git-ignored; the device tool carries them with carry=[".whl", ".devdata"].
# Needs the project venv (make demo / make test create it) and espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$py"):$PATH"

platforms=()
for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
         manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
rm -rf .whl && mkdir -p .whl
grep -v '^#' scripts/device/wheels.txt | grep . | while read -r req; do
  if ! "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${platforms[@]}" -d .whl "$req" >/dev/null 2>&1; then
    echo "building a wheel for $req (no binary distribution)"
    DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$req"
  fi
done
echo "wheels: $(ls .whl | wc -l), $(du -sh .whl | cut -f1)"

rm -rf .devdata && mkdir -p .devdata
medasr lexicon --seed --category drug --exclude-common --limit 8 -o .devdata/lexicon
medasr script --backend template --terms .devdata/lexicon/lexicon.jsonl --per-term 3 \
  --style terse --max-terms 1 --seed 11 --out .devdata/scripts.jsonl
medasr synth --scripts .devdata/scripts.jsonl \
  --voices espeak:en-us,espeak:en-gb,espeak:en-029,piper:joe \
  --respellings .devdata/lexicon/lexicon.jsonl --per-script 2 --snr 10:25 --seed 11 --jobs 2 \
  --format flac --out .devdata/synth
rm -rf .devdata/synth/noise-bank  # only the utterances travel
echo "data: $(wc -l <.devdata/synth/utterances.jsonl) utterances, $(du -sh .devdata | cut -f1)"
echo "total to carry: $(du -shc .whl .devdata | tail -1 | cut -f1) (the device tool allows 64 MiB with the tree)"
