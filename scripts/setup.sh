#!/usr/bin/env bash
# Install medasr and everything it needs on a fresh Debian/Ubuntu machine:
# system packages (ffmpeg, sox, espeak-ng, libsndfile) and a virtualenv with all extras.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."

need=()
for bin in ffmpeg ffprobe sox espeak-ng; do command -v "$bin" >/dev/null || need+=("$bin"); done
if ((${#need[@]})); then
  echo "setup: installing system packages for: ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg sox espeak-ng libsndfile1 >/dev/null
fi

python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch/torchaudio are pinned in pyproject (torchaudio, needed by Coqui TTS, stops at 2.11.0).
"$venv/bin/python" -m pip install -q -e ".[dev]"
"$venv/bin/python" -m pip check
echo "setup: done ($("$venv/bin/medasr" --version))"
