"""Fixtures of the ``medasr serve`` tests, registered once by ``pytest_plugins`` in conftest.py.

- ``wordy_model``: the conftest ``tiny_model`` with its joint network re-initialised from a
  fixed seed and a louder encoder (:func:`helpers.perturb_model`), so the untrained model emits
  many different "words" (an untrained model repeats one token, which cannot exercise word and
  segment timestamps). Still a real NeMo FastConformer-TDT ``.nemo``, decoded by NeMo's own
  ``transcribe()``.
- ``server``: one real uvicorn server (:class:`helpers.ServerThread`) on that model for the
  whole session.
- ``long_wav``: ~20 s of espeak-ng speech.
- ``serve_logs``: caplog for ``medasr_cli`` records (:func:`helpers.keep_from_nemo` when the
  real model runs: NeMo resets the level of handlers on its logger).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from helpers import API_KEY, ServerThread, perturb_model, server_settings


@pytest.fixture(scope="session")
def wordy_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return perturb_model(tiny_model, tmp_path_factory.mktemp("wordy") / "model.nemo")


@pytest.fixture(scope="session")
def server(wordy_model: Path) -> Iterator[ServerThread]:
    """The shared server: API key on, 2 MiB uploads, chunking above 8 s, strong keyword boost."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    settings = server_settings(
        wordy_model, api_keys=[API_KEY], max_upload_mb=2, max_single_pass_s=8,
        chunk_overlap_s=2, max_segment_s=5, keyword_boost_alpha=5.0, keyword_context_score=5.0,
    )  # fmt: skip
    srv = ServerThread(settings).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def long_wav(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~20 s of speech (all espeak sentences with pauses): longer than the 8 s single pass."""
    parts = []
    for wav in sorted(speech_dir.glob("utt*.wav")):
        audio, _ = sf.read(wav, dtype="float32")
        parts += [audio, np.zeros(8000, dtype=np.float32)]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path


@pytest.fixture
def serve_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """caplog at INFO for ``medasr_cli``.

    pytest also attaches caplog's handler to non-propagating loggers, NeMo's ``nemo_logger``
    among them, and every NeMo ``transcribe()`` sets the level of all that logger's handlers
    (to ERROR once the server has quietened NeMo). A test that runs the real model and expects
    records below ERROR calls :func:`helpers.keep_from_nemo` first.
    """
    caplog.set_level(logging.INFO, logger="medasr_cli")
    return caplog
