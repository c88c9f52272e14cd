#!/usr/bin/env bash
# Prepare, on this (networked, CPU) machine, what scripts/device/gpu_checks.sh carries to a
# lent GPU machine, which has no network and no espeak-ng:
#   .whl/      Python 3.12 x86-64 wheels the device image lacks (scripts/device/wheels.txt);
#              two sdist-only packages are built into wheels here
#   .devdata/  small synthetic datasets, utterances.jsonl + 16 kHz FLAC each: synth/ (clinical
#              dictations) and general/ (everyday sentences, the replay set and the general
#              validation set of the parakeet-xl training run)
# Both are git-ignored; the device tool carries them with carry=[".whl", ".devdata"].
# Needs the project venv (make demo / make test create it) and espeak-ng.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
PATH="$(dirname "$py"):$PATH"
export PATH

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
echo "wheels: $(find .whl -type f -name '*.whl' | wc -l), $(du -sh .whl | cut -f1)"

rm -rf .devdata && mkdir -p .devdata
medasr lexicon --seed --category drug --exclude-common --limit 8 -o .devdata/lexicon
medasr script --backend template --terms .devdata/lexicon/lexicon.jsonl --per-term 3 \
  --style terse --max-terms 1 --seed 11 --out .devdata/scripts.jsonl
medasr synth --scripts .devdata/scripts.jsonl \
  --voices espeak:en-us,espeak:en-gb,espeak:en-029,piper:joe \
  --respellings .devdata/lexicon/lexicon.jsonl --per-script 2 --snr 10:25 --seed 11 --jobs 2 \
  --format flac --out .devdata/synth
rm -rf .devdata/synth/noise-bank  # only the utterances travel
# General-domain speech (Harvard sentences, IEEE 1969) for the forgetting guard's replay and the
# second validation set: 12 texts x 2 voices, about 5 s each (a tokenizer trained from scratch
# learns the replay text too).
cat >.devdata/general.txt <<'TXT'
The birch canoe slid on the smooth planks. Take the winding path to reach the lake.
The stale smell of old beer lingers. These days a chicken leg is a rare dish.
Rice is often served in round bowls. The wide road shimmered in the hot sun.
The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage.
Four hours of steady work faced us. A large size in stockings is hard to sell.
The boy was there when the sun rose. A rod is used to catch pink salmon.
The source of the huge river is the clear spring. Kick the ball straight and follow through.
Help the woman get back to her feet. A pot of tea helps to pass the evening.
Smoky fires lack flame and heat. The lazy cow lay in the cool grass.
The salt breeze came across from the sea. The girl at the booth sold fifty bonds.
The small pup gnawed a hole in the sock. The fish twisted and turned on the bent hook.
Press the pants and sew a button on the vest. The swan dive was far short of perfect.
TXT
medasr synth --scripts .devdata/general.txt --voices espeak:en-us,espeak:en-gb,piper:joe \
  --per-script 2 --snr 15:30 --seed 12 --jobs 2 --format flac --out .devdata/general
rm -rf .devdata/general/noise-bank
for set in synth general; do
  echo "data ($set): $(wc -l <".devdata/$set/utterances.jsonl") utterances, $(du -sh ".devdata/$set" | cut -f1)"
done
echo "total to carry: $(du -shc .whl .devdata | tail -1 | cut -f1) (the device tool allows 64 MiB with the tree)"
