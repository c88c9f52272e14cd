"""Text for the TTS engine: numbers, dosages, abbreviations and respellings spoken out.

The manifest keeps the written form (``Metoprolol 25 mg b.i.d.``), which is
what Parakeet must learn to output; the engine gets what a clinician says
(``metoprolol twenty-five milligrams b i d``). Respellings from the lexicon
(``apixaban -> uh-PIX-uh-ban``) go to the engine only, with their stress
capitals: :func:`engine_text` keeps them for an engine that places the stress
(espeak-ng) and lower-cases them for the others.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.spoken import drop_stress_marks, keep_stress_marks
from medasr_cli.synth.numbers import (
    clock_words,
    digits_to_words,
    number_to_words,
    ordinal_words,
    year_words,
)

log = logging.getLogger(__name__)

# unit -> (singular, plural); compound units join with "per" (mg/kg/min).
UNITS: dict[str, tuple[str, str]] = {
    "mg": ("milligram", "milligrams"), "mcg": ("microgram", "micrograms"),
    "µg": ("microgram", "micrograms"), "ug": ("microgram", "micrograms"),
    "ng": ("nanogram", "nanograms"), "g": ("gram", "grams"), "kg": ("kilogram", "kilograms"),
    "ml": ("millilitre", "millilitres"), "mL": ("millilitre", "millilitres"),
    "L": ("litre", "litres"), "l": ("litre", "litres"), "dL": ("decilitre", "decilitres"),
    "mmol": ("millimole", "millimoles"), "mol": ("mole", "moles"),
    "mEq": ("milliequivalent", "milliequivalents"), "IU": ("international unit", "international units"),
    "units": ("unit", "units"), "unit": ("unit", "units"), "mmHg": ("millimetre of mercury",
    "millimetres of mercury"), "kPa": ("kilopascal", "kilopascals"), "cm": ("centimetre",
    "centimetres"), "mm": ("millimetre", "millimetres"), "h": ("hour", "hours"),
    "hr": ("hour", "hours"), "hrs": ("hour", "hours"), "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"), "bpm": ("beat per minute", "beats per minute"),
    "%": ("percent", "percent"), "°C": ("degree Celsius", "degrees Celsius"),
    "kcal": ("kilocalorie", "kilocalories"), "puffs": ("puff", "puffs"),
}  # fmt: skip
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?|\.\d+"
_DOSE = re.compile(rf"(?<![\w.])({_NUM})\s?((?:{_UNIT_ALT})(?:/(?:{_UNIT_ALT}))*)(?![\w/])")
_RATIO = re.compile(r"(?<![\w./])(\d{2,3})/(\d{2,3})(?![\w/])")
_RANGE = re.compile(rf"(?<![\w.])({_NUM})\s?[-–]\s?({_NUM})(?![\w.])")
_CLOCK = re.compile(r"(?<![\w:])([01]?\d|2[0-3]):([0-5]\d)(?![\w:])")
_ORDINAL = re.compile(r"(?<![\w.])(\d+)(?:st|nd|rd|th)\b")
_NUMBER = re.compile(rf"(?<![\w.\ue000])({_NUM})(?![\d])")
_ACRONYM = re.compile(r"\b([A-Z][A-Z0-9]*[A-Z][A-Z0-9]*s?|[A-Z]+\d[A-Z0-9]*)\b")
_MARK = re.compile("\ue000(\\d+)\ue001")
_SAY_AS_WORD = frozenset({"COVID", "AIDS", "NICE", "MRSA", "SARS", "STEMI", "CPAP", "BiPAP"})
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees ",
            "×": " times ", "%": " percent ", "~": " about "}  # fmt: skip


def _norm(s: str) -> str:
    return re.sub(r"[\s.\-]", "", s.lower())


def choose_spoken_form(abbreviation: str, forms: list[str]) -> str:
    """The form a clinician says when the transcript shows ``abbreviation``.

    Spelled letters (``b i d`` for ``b.i.d.``) or the word itself (``stat``)
    when the lexicon lists one; otherwise the usual expansion (``milligrams``).
    """
    same = [f for f in forms if _norm(f) == _norm(abbreviation)]
    spelled = [f for f in same if " " in f.strip()]
    return (spelled or same or forms)[0]


@functools.lru_cache(maxsize=1)
def packaged_abbreviations() -> dict[str, str]:
    """Spoken forms from the lexicon's ``abbreviations.tsv`` (empty if the file is absent)."""
    try:
        text = (
            resources.files("medasr_cli.data")
            .joinpath("lexicon/abbreviations.tsv")
            .read_text("utf-8")
        )
    except (FileNotFoundError, ModuleNotFoundError):
        return {}
    out = {}
    for line in text.splitlines():
        abbr, sep, forms = line.partition("\t")
        if line.startswith("#") or not sep or abbr.strip() in UNITS:
            continue
        options = [f.strip() for f in forms.split("|") if f.strip()]
        if options:
            out[abbr.strip()] = choose_spoken_form(abbr.strip(), options)
    return out


def _abbreviation_pattern(table: Mapping[str, str]) -> re.Pattern[str] | None:
    if not table:
        return None
    keys = sorted(table, key=len, reverse=True)
    alt = "|".join(re.escape(k) for k in keys)
    return re.compile(rf"(?<![\w.])({alt})(s?)(?![\w])")


#: Engines that speak a stress-marked respelling (``uh-PIX-uh-ban``) with that stress:
#: espeak-ng through phoneme input (:func:`medasr_cli.tts.espeak.with_phonemes`). Piper
#: phonemises with espeak-ng's text rules, which spell capitals out letter by letter, and a
#: Coqui model reads characters: both get the respelling lower-cased, as before.
STRESS_ENGINES = frozenset({"espeak"})


def normalise_respelling(respelling: str) -> str:
    """``uh-PIX-uh-ban`` stays (its capitals mark the stress); anything else is lower-cased.

    See :func:`medasr_cli.core.spoken.keep_stress_marks`; :func:`engine_text`
    lower-cases the rest for engines that cannot use the stress.
    """
    return keep_stress_marks(respelling.strip())


def engine_text(tts_text: str, engine: str) -> str:
    """What ``engine`` is given for ``tts_text``: stress capitals kept only where it uses them."""
    return tts_text if engine in STRESS_ENGINES else drop_stress_marks(tts_text)


def load_respellings(path: Path) -> dict[str, str]:
    """Read ``term<TAB>respelling`` (TSV) or Term records with ``pronunciation`` (JSONL)."""
    from medasr_cli.core.terms import load_terms

    if path.suffix.lower() == ".jsonl":
        return {t.text: t.pronunciation for t in load_terms(path) if t.pronunciation}
    if not path.is_file():
        raise InputError(f"{path}: respellings file not found")
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        term, sep, spelling = line.partition("\t")
        if not sep or not spelling.strip():
            raise InputError(f"{path}:{lineno}: expected term<TAB>respelling")
        out[term.strip()] = spelling.strip()
    return out


def packaged_respellings() -> dict[str, str]:
    """The lexicon's default respellings (``data/lexicon/pronunciations.tsv``), if present."""
    try:
        ref = resources.files("medasr_cli.data").joinpath("lexicon/pronunciations.tsv")
        with resources.as_file(ref) as p:
            return load_respellings(Path(p)) if Path(p).is_file() else {}
    except (FileNotFoundError, ModuleNotFoundError, InputError) as exc:
        log.debug("no packaged respellings: %s", exc)
        return {}


class Verbalizer:
    """Turn a written dictation into TTS input; deterministic, no randomness."""

    def __init__(
        self,
        respellings: Mapping[str, str] | None = None,
        abbreviations: Mapping[str, str] | None = None,
    ) -> None:
        self.respellings = {
            k.lower(): normalise_respelling(v) for k, v in (respellings or {}).items()
        }
        table = dict(packaged_abbreviations() if abbreviations is None else abbreviations)
        self.abbreviations = table
        self._abbr_re = _abbreviation_pattern(table)
        alt = "|".join(re.escape(k) for k in sorted(self.respellings, key=len, reverse=True))
        self._respell_re = re.compile(rf"\b({alt})\b", re.IGNORECASE) if alt else None

    def __call__(self, text: str) -> str:
        """The TTS input for ``text``."""
        out = text
        spoken: list[str] = []  # respellings and abbreviation expansions, kept from later rules
        if self._respell_re is not None:
            out = self._respell_re.sub(
                lambda m: _mark(self.respellings[m.group(1).lower()], spoken), out
            )
        out = _RANGE.sub(lambda m: f"{m.group(1)} to {m.group(2)}", out)
        out = _DOSE.sub(_say_dose, out)
        out = _RATIO.sub(lambda m: f"{m.group(1)} over {m.group(2)}", out)
        out = _CLOCK.sub(lambda m: clock_words(int(m.group(1)), int(m.group(2))), out)
        out = _ORDINAL.sub(lambda m: ordinal_words(int(m.group(1))), out)
        if self._abbr_re is not None:
            out = self._abbr_re.sub(lambda m: self._protect(m, spoken), out)
        out = _NUMBER.sub(lambda m: _say_number(m.group(1)), out)
        out = _ACRONYM.sub(_say_acronym, out)
        for sym, words in _SYMBOLS.items():
            out = out.replace(sym, words)
        out = re.sub(r"(?<=[A-Za-z])/(?=[A-Za-z])", " or ", out)
        out = _MARK.sub(lambda m: spoken[int(m.group(1))], out)
        return re.sub(r"\s+", " ", out).strip()

    def _protect(self, m: re.Match[str], spoken: list[str]) -> str:
        form = self.abbreviations[m.group(1)] + m.group(2)
        return _mark(_NUMBER.sub(lambda d: _say_number(d.group(1)), form), spoken)


def _mark(text: str, spoken: list[str]) -> str:
    """Keep ``text`` out of the later rules (the acronym rule would spell ``PIX`` out)."""
    spoken.append(text)
    return f"\ue000{len(spoken) - 1}\ue001"


def _say_number(text: str) -> str:
    plain = text.replace(",", "")
    if re.fullmatch(r"(19|20)\d\d", plain):
        return year_words(int(plain))
    if re.fullmatch(r"0\d+", plain):  # codes such as 07 read digit by digit
        return digits_to_words(plain)
    return number_to_words(plain)


def _say_dose(m: re.Match[str]) -> str:
    value, units = m.group(1), m.group(2).split("/")
    one = value.replace(",", "") in ("1", "1.0")
    first = UNITS[units[0]][0 if one else 1]
    rest = [UNITS[u][0] for u in units[1:]]
    return " ".join([_say_number(value), first, *(f"per {u}" for u in rest)])


def _say_acronym(m: re.Match[str]) -> str:
    token = m.group(1)
    if token in _SAY_AS_WORD:
        return token.lower()
    plural = token.endswith("s") and token[:-1].isupper()
    core = token[:-1] if plural else token
    spoken = " ".join(digits_to_words(c) if c.isdigit() else c for c in core)
    return spoken + ("'s" if plural else "")
