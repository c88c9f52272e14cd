"""Record types passed between stages (the stage contracts).

Every field a later stage needs travels in the record; nothing goes through a
side channel. Records are pydantic models so that a malformed JSONL line is
reported with the field that is wrong.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class TermCategory(str, Enum):
    drug = "drug"
    anatomy = "anatomy"
    procedure = "procedure"
    condition = "condition"
    abbreviation = "abbreviation"
    other = "other"


class Term(BaseModel):
    """A target medical term for the adaptation loop."""

    model_config = ConfigDict(extra="forbid")

    text: str
    category: TermCategory = TermCategory.other
    spoken_forms: list[str] = Field(default_factory=list)
    pronunciation: str | None = None
    # who made ``pronunciation`` when a person should review it: ``llm:<model>``; None otherwise
    pronunciation_source: str | None = None
    source: str = "user"
    prior_recall: float | None = None

    @field_validator("text")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("term text is empty")
        return value


class GeneratorInfo(BaseModel):
    """How a script was produced (so a dataset can be reproduced and audited)."""

    model_config = ConfigDict(extra="allow")

    backend: str
    model: str | None = None
    prompt_id: str | None = None
    seed: int | None = None
    temperature: float | None = None


class Script(BaseModel):
    """One clinical dictation text that uses some target terms."""

    model_config = ConfigDict(extra="forbid")

    id: str
    text: str
    terms: list[str] = Field(default_factory=list)
    generator: GeneratorInfo


class Augmentation(BaseModel):
    """One augmentation step applied to an utterance, with its measured parameters."""

    model_config = ConfigDict(extra="allow")

    kind: str  # noise | gain | reverb | gaussian | speed | telephone
    params: dict[str, Any] = Field(default_factory=dict)


class Utterance(BaseModel):
    """One synthesised (or recorded) audio file with its transcript."""

    model_config = ConfigDict(extra="allow")

    id: str
    script_id: str | None = None
    text: str
    audio_filepath: str
    duration: float
    sample_rate: int = 16000
    tts_engine: str | None = None
    voice: str | None = None
    accent: str | None = None
    snr_db: float | None = None
    noise_source: str | None = None
    augmentations: list[Augmentation] = Field(default_factory=list)


class ManifestEntry(BaseModel):
    """One NeMo manifest line: NeMo's keys plus free metadata fields.

    NeMo ignores keys it does not know, so metadata (voice, snr, noise type)
    rides along and lets ``medasr eval`` break results down by it.
    """

    model_config = ConfigDict(extra="allow")

    audio_filepath: str
    duration: float
    text: str
    # where the line came from (``file:line``), for errors found after reading; not written
    _where: str = PrivateAttr(default="")

    @property
    def where(self) -> str:
        """``file:line`` of the manifest line this entry was read from ("" if built in memory)."""
        return self._where

    @field_validator("audio_filepath")
    @classmethod
    def _path_non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("audio_filepath is empty")
        return value

    def metadata(self) -> dict[str, Any]:
        """The extra (non-NeMo) fields of this line."""
        return dict(self.model_extra or {})
