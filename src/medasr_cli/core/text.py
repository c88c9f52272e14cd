"""Text normalisers, applied identically to references, hypotheses and term lists.

One place for every stage that compares text: ``eval`` (WER, term recall,
M-WER), ``lexicon`` (spoken forms from an eval report) and the ``script``
backends (checking that a dictation uses its terms).

``whisper`` is the English normaliser used by the Hugging Face Open ASR
Leaderboard (Whisper's EnglishTextNormalizer): it lower-cases, strips
punctuation, spells numbers as digits and maps British to American spelling.
Note it also rewrites some terms ("haemoglobin" -> "hemoglobin", "Crohn's" ->
"crohn is"), which is why terms must go through the same function.

``clinical`` is ``whisper`` plus the rewrites in :data:`CLINICAL_RULES`, for
what Whisper's rules get wrong in clinical text: it deletes "mm" (a filler on
its list, so "a 5 mm lesion" becomes "a 5 lesion"), splits dotted abbreviations
("b.i.d." -> "b i d" but "BID" -> "bid") and keeps "mg" and "milligrams" apart.
Each rule maps every written or spoken form of a unit or abbreviation to one
canonical token: units only right after a number (digits or a spelled number,
so "5mg", "5 mg" and "five milligrams" all become "5 mg") or after "per" (the
second half of "mg/kg"); dotted abbreviations anywhere. A rule's match is
swapped for a placeholder before the Whisper pass and restored after it, so
Whisper cannot delete or split it; everything else, numbers included, is
exactly Whisper's output (text no rule matches normalises exactly as with
``whisper``).

``basic`` only lower-cases and strips punctuation; ``none`` only collapses
whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from medasr_cli.core.errors import InputError

Normalizer = Callable[[str], str]
NORMALIZERS = ("clinical", "whisper", "basic", "none")


@dataclass(frozen=True)
class ClinicalRule:
    """One rewrite of the ``clinical`` normaliser: every form in ``pattern`` becomes ``canonical``.

    ``kind`` says where it applies: ``unit`` right after a number (or "per"),
    ``abbreviation`` anywhere as whole words, ``compound`` a slash between two
    units, ``percent`` a space between a number and "%". ``examples`` are inputs
    that all normalise to ``expected`` with the ``clinical`` normaliser.
    """

    canonical: str
    forms: str  # the spellings recognised, as listed in docs/eval.md
    pattern: str  # regex alternatives, matched on lower-cased text
    kind: str
    examples: tuple[str, ...]
    expected: str
    note: str = ""


def _dotted(letters: str) -> str:
    """Letters separated by dots, optional spaces after each dot, final dot optional."""
    return r"\s*\.\s*".join(letters) + r"(?:\s*\.)?"


def _abbreviation(
    letters: str, note: str, more_forms: tuple[str, ...] = (), more_pattern: str = ""
) -> ClinicalRule:
    dotted = ".".join(letters) + "."
    spaced = ". ".join(letters) + "."
    forms = (dotted, spaced, letters.upper(), letters, *more_forms)
    return ClinicalRule(
        canonical=letters,
        forms=", ".join(forms),
        pattern="|".join(p for p in (more_pattern, _dotted(letters)) if p),
        kind="abbreviation",
        examples=tuple(
            f"given {form}" for form in (dotted, spaced.upper(), letters.upper(), *more_forms)
        ),
        expected=f"given {letters}",
        note=note,
    )


# Applied in this order: longer forms before the shorter forms they contain.
CLINICAL_RULES: tuple[ClinicalRule, ...] = (
    ClinicalRule(
        "per", "mg/kg, mmol/L, ... (a slash between two units of this table)",
        r"/", "compound",
        ("5 mg/kg", "five milligrams per kilogram", "5mg / kg"), "5 mg per kg",
        "Whisper turns the slash into a space; spoken dosing says 'per'.",
    ),
    ClinicalRule(
        "%", "50 % (a space before %)",
        r"(?<=\d)\s+%", "percent",
        ("50 %", "50%", "fifty percent", "50 per cent"), "50%",
        "Whisper already writes '50%' for 'fifty percent' and 'per cent', but drops a "
        "detached '%'.",
    ),
    ClinicalRule(
        "fahrenheit", "°F, ℉, degrees Fahrenheit, degrees F, Fahrenheit",
        r"degrees?\s+(?:fahrenheit|f)|[°º]\s*f|℉|fahrenheit", "unit",
        ("101°F", "101 °F", "one hundred and one degrees fahrenheit"), "101 fahrenheit",
    ),
    ClinicalRule(
        "degrees", "°C, ℃, degrees Celsius, degrees centigrade, degrees C, deg C, °, degree(s)",
        r"degrees?\s+(?:celsius|centigrade|c)|deg\s*c|[°º]\s*c|℃|[°º]|degrees?", "unit",
        ("38.5°C", "38.5 ° C", "thirty eight point five degrees celsius",
         "38.5 degrees centigrade", "38.5 degrees"), "38.5 degrees",
        "Whisper turns '38°C' into '38 c'; a bare 'degrees' after a number is read as Celsius.",
    ),
    ClinicalRule(
        "mmhg", "mmHg, mm Hg, millimetres/millimeters of mercury, mm of mercury",
        r"mm\s*hg|(?:millimet(?:re|er)s?|mm)\s+of\s+mercury", "unit",
        ("150/95 mmHg", "150/95 mm Hg", "150/95 millimetres of mercury"), "150 95 mmhg",
        "Whisper deletes the 'mm' of 'mm Hg'.",
    ),
    ClinicalRule(
        "mmol", "mmol, mmols, millimole(s), millimol",
        r"mmols?|millimoles?|millimol", "unit",
        ("5.9 mmol/L", "5.9 millimoles per litre", "5.9 mmol per liter"), "5.9 mmol per l",
    ),
    ClinicalRule(
        "mcg", "mcg, µg, μg, ug, microgram(s), microgramme(s)",
        r"mcgs?|[µμ]g|ug|microgram(?:me)?s?", "unit",
        ("500 mcg", "500µg", "500 ug", "five hundred micrograms"), "500 mcg",
    ),
    ClinicalRule(
        "mg", "mg, mgs, milligram(s), milligramme(s)",
        r"mgs?|milligram(?:me)?s?", "unit",
        ("5mg", "5 mg", "five milligrams", "5 milligrammes"), "5 mg",
    ),
    ClinicalRule(
        "kg", "kg, kgs, kilogram(s), kilogramme(s), kilo(s)",
        r"kgs?|kilogram(?:me)?s?|kilos?", "unit",
        ("70kg", "70 kg", "seventy kilograms", "70 kilos"), "70 kg",
    ),
    ClinicalRule(
        "g", "g, gm, gms, gram(s), gramme(s)",
        r"gms?|g|gram(?:me)?s?", "unit",
        ("2 g", "2g", "two grams", "2 gm"), "2 g",
        "Only after a number, so 'Gram stain' and 'Gram-negative' are left alone.",
    ),
    ClinicalRule(
        "ml", "ml, mL, mls, millilitre(s), milliliter(s)",
        r"mls?|millilit(?:re|er)s?", "unit",
        ("10 mL", "10mls", "ten millilitres", "10 milliliters"), "10 ml",
    ),
    ClinicalRule(
        "dl", "dl, dL, decilitre(s), deciliter(s)",
        r"dl|decilit(?:re|er)s?", "unit",
        ("90 mg/dL", "ninety milligrams per decilitre"), "90 mg per dl",
    ),
    ClinicalRule(
        "l", "l, L, litre(s), liter(s)",
        r"l|lit(?:re|er)s?", "unit",
        ("2 L", "2l", "two litres", "2 liters"), "2 l",
    ),
    ClinicalRule(
        "mm", "mm, millimetre(s), millimeter(s)",
        r"mm|millimet(?:re|er)s?", "unit",
        ("a 5 mm lesion", "a 5mm lesion", "a five millimetre lesion", "a 5-millimeter lesion"),
        "a 5 mm lesion",
        "Whisper deletes 'mm' as a filler; kept only after a number, so the filler still goes.",
    ),
    ClinicalRule(
        "cm", "cm, cms, centimetre(s), centimeter(s)",
        r"cms?|centimet(?:re|er)s?", "unit",
        ("3 cm", "3cm", "three centimetres", "3 centimeters"), "3 cm",
    ),
    ClinicalRule(
        "units", "units, unit, IU, i.u., international unit(s)",
        r"units?|iu|i\s*\.\s*u(?:\s*\.)?|international\s+units?", "unit",
        ("10 units", "10 IU", "10 i.u.", "ten international units"), "10 units",
        "IU and units are read alike at the bedside (insulin, heparin).",
    ),
    # Dotted abbreviations: longer before the shorter ones they contain (q.d.s. before q.d.).
    _abbreviation("qds", "four times daily"),
    _abbreviation("qhs", "at bedtime"),
    _abbreviation("npo", "nil by mouth"),
    _abbreviation("prn", "as required"),
    _abbreviation("bid", "twice daily"),
    _abbreviation("tid", "three times daily"),
    _abbreviation("qid", "four times daily"),
    _abbreviation("tds", "three times daily"),
    _abbreviation("bd", "twice daily (UK)"),
    _abbreviation("qd", "once daily"),
    _abbreviation("od", "once daily"),
    _abbreviation("po", "by mouth"),
    _abbreviation("pr", "rectally"),
    _abbreviation("iv", "intravenous"),
    _abbreviation("im", "intramuscular"),
    _abbreviation("sc", "subcutaneous", ("subcut", "sub-cut", "s/c"), r"sub[\s-]?cut|s\s*/\s*c"),
    _abbreviation("sl", "sublingual"),
    ClinicalRule(
        "stat", "STAT, stat", r"stat", "abbreviation",
        ("given STAT", "given stat"), "given stat", "immediately (a case change only)",
    ),
)  # fmt: skip

# Spelled numbers after which a unit is a unit (Whisper turns them into digits later).
_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    "hundred", "thousand", "million", "half",
)  # fmt: skip
_QUANTITY = r"(?P<q>\d|(?<![\w'])(?:" + "|".join(_NUMBER_WORDS) + r"|per)\b)(?P<sep>[\s-]*)"
_UNIT_FORMS = "|".join(f"(?:{r.pattern})" for r in CLINICAL_RULES if r.kind == "unit")


def _placeholder(index: int) -> str:
    """A letters-only token no Whisper rule touches, standing for rule ``index``."""
    digits = ""
    while True:
        index, rest = divmod(index, 26)
        digits = chr(ord("a") + rest) + digits
        if not index:
            return f"qqz{digits}zqq"


_PLACEHOLDER = re.compile(r"qqz([a-z]+)zqq")


def _compile(index: int, rule: ClinicalRule) -> tuple[re.Pattern[str], str]:
    mark = _placeholder(index)
    if rule.kind == "unit":
        return re.compile(_QUANTITY + f"(?:{rule.pattern})(?!\\w)"), rf"\g<q> {mark} "
    if rule.kind == "abbreviation":
        return re.compile(rf"(?<![\w.])(?:{rule.pattern})(?!\w)"), f" {mark} "
    if rule.kind == "compound":
        return re.compile(
            rf"(?<![^\W\d_])({_UNIT_FORMS})\s*/\s*(?=(?:{_UNIT_FORMS})(?!\w))"
        ), r"\1 per "
    if rule.kind == "percent":
        return re.compile(rule.pattern), "%"
    raise ValueError(f"unknown clinical rule kind {rule.kind!r}")


_COMPILED = tuple(_compile(i, rule) for i, rule in enumerate(CLINICAL_RULES))


def clinical_rules_applied(text: str) -> list[str]:
    """The canonical forms of the :data:`CLINICAL_RULES` that rewrite ``text`` (empty: none)."""
    applied: list[str] = []
    _protect(text, applied)
    return applied


def _protect(text: str, applied: list[str] | None = None) -> str:
    """Apply the clinical rules to lower-cased ``text``, leaving placeholders for Whisper to keep."""
    text = text.lower()
    for rule, (rx, replacement) in zip(CLINICAL_RULES, _COMPILED, strict=True):
        text, n = rx.subn(replacement, text)
        if n and applied is not None:
            applied.append(rule.canonical)
    return text


def _restore(text: str) -> str:
    def canonical(m: re.Match[str]) -> str:
        index = 0
        for ch in m.group(1):
            index = index * 26 + ord(ch) - ord("a")
        return CLINICAL_RULES[index].canonical

    return _PLACEHOLDER.sub(canonical, text)


def _collapse(text: str) -> str:
    return " ".join(text.split())


@cache
def get_normalizer(name: str) -> Normalizer:
    """Return the normaliser called ``name`` (clinical | whisper | basic | none)."""
    if name == "none":
        return _collapse
    if name == "basic":
        from whisper_normalizer.basic import BasicTextNormalizer

        basic = BasicTextNormalizer()
        return lambda text: _collapse(basic(text))
    if name in ("whisper", "clinical"):
        from whisper_normalizer.english import EnglishTextNormalizer

        english = EnglishTextNormalizer()
        if name == "clinical":
            return lambda text: _collapse(_restore(english(_protect(text))))
        return lambda text: _collapse(english(text))
    raise InputError(f"--normalize: unknown normaliser '{name}' (use {', '.join(NORMALIZERS)})")


def words(text: str) -> list[str]:
    """Whitespace tokens of already-normalised text."""
    return text.split()
