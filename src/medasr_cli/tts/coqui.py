"""Coqui TTS (``coqui-tts``, the ``TTS.api.TTS`` API): a named model or a local checkpoint.

The model comes from engine options: ``model_name`` (e.g.
``tts_models/multilingual/multi-dataset/xtts_v2``) or a local ``model_path`` +
``config_path``. Voices are ``default``, ``SPEAKER`` (multi-speaker models),
``SPEAKER@LANG`` (XTTS and other multilingual models) or ``@LANG``. Downloads
are off unless ``allow_download``: a model that is not in the local Coqui cache
fails up front with one line instead of a network error deep in a worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medasr_cli.core.errors import InputError, require
from medasr_cli.tts.base import Synthesis, check_audio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoquiOptions:
    """Which Coqui model to load and whether it may be downloaded."""

    model_name: str | None = None
    model_path: str | None = None
    config_path: str | None = None
    language: str | None = None
    allow_download: bool = False

    @property
    def label(self) -> str:
        return self.model_name or str(self.model_path or "?")


def offline_error(name: str) -> InputError:
    """The one-line error for a model that would need a download."""
    return InputError(
        f"model {name} is not available locally; pass --model-path or allow downloads"
    )


def check_local_model(name: str) -> None:
    """Raise the offline error unless ``name`` (and its default vocoder) is already cached."""
    from TTS.utils.manage import ModelManager

    manager = ModelManager(progress_bar=False)
    try:
        item, full_name, _ = manager._set_model_item(name)
    except (KeyError, ValueError) as exc:
        raise InputError(f"unknown coqui model '{name}' (see `tts --list_models`)") from exc
    if "repo_id" in item:
        _check_hf_cache(name, item)
        if item.get("tos_required") and os.environ.get("COQUI_TOS_AGREED") != "1":
            tos = manager.output_prefix / full_name / "tos_agreed.txt"
            if not tos.exists():
                raise InputError(
                    f"model {name} needs the Coqui CPML licence accepted: set COQUI_TOS_AGREED=1"
                )
        return
    folder = manager.output_prefix / full_name
    if not (folder / "config.json").is_file() and not any(folder.rglob("config.json")):
        raise offline_error(name)
    vocoder = item.get("default_vocoder")
    if vocoder:
        check_local_model(vocoder)


def _check_hf_cache(name: str, item: Mapping[str, Any]) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(
            item["repo_id"],
            allow_patterns=item.get("allow"),
            ignore_patterns=item.get("ignore"),
            local_files_only=True,
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        raise offline_error(name) from exc


class CoquiEngine:
    """Synthesise with one Coqui model, loaded on first use in each process."""

    name = "coqui"

    def __init__(self, options: CoquiOptions, threads: int = 1) -> None:
        if not options.model_name and not options.model_path:
            raise InputError("coqui needs --coqui-model NAME or --coqui-model-path PATH")
        self.options = options
        self.threads = threads
        self._tts: Any = None
        self._checked = False

    def list_voices(self) -> list[str]:
        tts = self._load()
        return [str(s) for s in (tts.speakers or ["default"])]

    def check_voice(self, voice: str) -> None:
        """Check the model is available offline (speakers are checked when it loads)."""
        require("TTS.api", "coqui")
        if self._checked:
            return
        opts = self.options
        if opts.model_path:
            for what, path in (("model", opts.model_path), ("config", opts.config_path)):
                if not path or not Path(path).is_file():
                    raise InputError(f"coqui {what} file not found: {path}")
        elif opts.model_name and not opts.allow_download:
            check_local_model(opts.model_name)
        self._checked = True

    def _load(self) -> Any:
        if self._tts is not None:
            return self._tts
        import torch
        from TTS.api import TTS

        torch.set_num_threads(self.threads)
        opts = self.options
        if not opts.allow_download:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if opts.model_path:
            self._tts = TTS(
                model_path=opts.model_path, config_path=opts.config_path, progress_bar=False
            )
        else:
            self._tts = TTS(model_name=opts.model_name or "", progress_bar=False)
        return self._tts

    def _speaker_language(self, voice: str) -> tuple[str | None, str | None]:
        tts = self._load()
        speaker, _, language = (voice if voice != "default" else "").partition("@")
        speakers = tts.speakers or []
        if speaker and speaker not in speakers:
            raise InputError(f"coqui speaker '{speaker}' not in {self.options.label}: {speakers}")
        if not speaker and tts.is_multi_speaker and speakers:
            speaker = speakers[0]
        chosen: str | None = language or self.options.language
        if not tts.is_multi_lingual:
            return speaker or None, None
        return speaker or None, chosen or (tts.languages or ["en"])[0]

    def synthesize(
        self, text: str, voice: str, params: Mapping[str, float], seed: int
    ) -> Synthesis:
        """Run ``TTS.tts`` with the voice's speaker/language; torch is seeded per utterance."""
        import torch

        tts = self._load()
        speaker, language = self._speaker_language(voice)
        torch.manual_seed(seed % 2**63)
        wav = tts.tts(text, speaker=speaker, language=language, split_sentences=True)
        audio = check_audio(np.asarray(wav, dtype=np.float32), f"coqui:{voice}")
        sr = int(tts.synthesizer.output_sample_rate)
        used = {"model": self.options.label, "speaker": speaker, "language": language}
        return Synthesis(audio, sr, accent=language, params={**dict(params), **used})
