"""Spoken and written variants of a term, so that ``eval`` and ``script`` recognise it.

``medasr eval`` normalises references, hypotheses and terms with one function
(the Whisper normaliser by default). That function maps only the British
spellings it knows ("haemoglobin" -> "hemoglobin"; not "oedema") and turns a
possessive into two words ("Crohn's" -> "crohn is"). A term therefore carries
its other spellings, its possessive forms and, for an abbreviation, what a
clinician says aloud ("b.i.d." -> "twice daily"), each of which ``eval``
normalises in turn and counts as the same term.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import resources

from medasr_cli.core.records import Term, TermCategory

# British -> American rewrites, applied to lower-cased words.
_TO_AMERICAN: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"\boe(?=[dsx]|str)", "e"),  # oedema, oesophagus, oestrogen
        (r"ooes(?=[oa]ph)", "oes"),  # gastrooesophageal
        (r"(rrh|pn)oea", r"\1ea"),  # diarrhoea, dyspnoea, apnoea
        (r"\bfoet", "fet"),
        (r"\bcoel", "cel"),  # coeliac
        (r"\bae(?=tiol)", "e"),  # aetiology
        (r"(?<=[bcdfghklmnprstvz])ae(?=[bcdfghklmnprstvz])", "e"),  # haem-, anaem-, paed-
        (r"isation\b", "ization"),
        (r"(?<=[a-z]{2})(al|ar|ur|un|at|er|in|it)is(ed|es|ing|e)\b", r"\1iz\2"),  # generalised
        (r"\b(tum|hum|col|odo|vap|lab)our", r"\1or"),
        (r"(?<=behavi)our", "or"),
        (r"(lit|met|cen)re\b", r"\1er"),
        (r"(fib|calib)re\b", r"\1er"),
        (r"sulph", "sulf"),
        (r"\baluminium\b", "aluminum"),
        (r"manoeuvre", "maneuver"),
        (r"\bgrey\b", "gray"),
    ]
]

# American -> British rewrites, applied to lower-cased words.
_TO_BRITISH: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"\be(?=dem|sophag|strog|strad)", "oe"),
        (r"(?<=gastro)e(?=sophag)", "-oe"),
        (r"(rrh|pn)ea\b", r"\1oea"),
        (r"\bfet(?=[ua])", "foet"),
        (r"\bcelia", "coelia"),
        (r"\betiol", "aetiol"),
        (r"hem(?=at|o[a-z]|orrh|angi|ophil|olys|optys|arthr)", "haem"),
        (r"(?<=[^a])em(?=ia\b|ic\b)", "aem"),  # anemia, leukemia, ischemic
        (r"(?<=an)esth", "aesth"),
        (r"\bped(?=iatr)", "paed"),
        (r"orthoped", "orthopaed"),
        (r"gynec", "gynaec"),
        (r"\bcesar", "caesar"),
        (r"\bfec(?=al|es)", "faec"),
        (r"ization\b", "isation"),
        (r"(?<=[a-z]{2})(al|ar|ur|un|at|er|in|it)iz(ed|es|ing|e)\b", r"\1is\2"),
        (r"\b(tum|hum|col|odo|vap|lab)or\b", r"\1our"),
        (r"(lit|met|cen)er\b", r"\1re"),
        (r"(?<=fib)er\b", "re"),
        (r"sulf", "sulph"),
        (r"\baluminum\b", "aluminium"),
        (r"maneuver", "manoeuvre"),
    ]
]

_POSSESSIVE = re.compile(r"(?<=\w)(['’]s|s['’])(?=\s|$)")
_EPONYM_HEAD = re.compile(
    r"^([A-Z][a-z]+)(?= (disease|syndrome|palsy|lymphoma|phenomenon|sign|anomaly|contracture)\b)"
)
_LETTERS = re.compile(r"^[A-Z][A-Za-z]{1,5}[0-9]?$")


def _rewrite(text: str, rules: list[tuple[re.Pattern[str], str]]) -> str:
    """Apply spelling rules word by word, keeping the case of untouched words."""
    out = []
    for word in re.split(r"(\s+)", text):
        lower = word.lower()
        new = lower
        for pattern, repl in rules:
            new = pattern.sub(repl, new)
        out.append(word if new == lower else new)
    return "".join(out)


def american(text: str) -> str:
    """The American spelling of ``text`` (medical British spellings rewritten)."""
    return _rewrite(text, _TO_AMERICAN)


def british(text: str) -> str:
    """The British spelling of ``text`` (medical American spellings rewritten)."""
    return _rewrite(text, _TO_BRITISH)


def ascii_fold(text: str) -> str:
    """'Sjögren' -> 'Sjogren', 'Guillain-Barré' -> 'Guillain-Barre'."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def spelling_key(text: str) -> str:
    """A key under which spellings of one term meet ('Anaemia' and 'anemia' alike)."""
    key = american(ascii_fold(text)).lower().replace("’", "'")
    key = re.sub(r"'s\b", "", key).replace("s'", "s")
    return re.sub(r"[\s\-]+", " ", key).strip()


def possessive_variants(text: str) -> list[str]:
    """'Crohn's disease' -> 'Crohn disease', 'Crohns disease'; 'Gaucher disease' -> "Gaucher's"."""
    if _POSSESSIVE.search(text):

        def bare(m: re.Match[str]) -> str:
            return "" if m.group(1)[0] in "'’" else "s"  # Crohn's -> Crohn; Graves' -> Graves

        no_mark = _POSSESSIVE.sub(bare, text)
        plain = _POSSESSIVE.sub("s", text)  # Crohn's -> Crohns
        return list(dict.fromkeys([no_mark, plain]))
    if _EPONYM_HEAD.match(text):
        return [_EPONYM_HEAD.sub(r"\1's", text)]
    return []


@lru_cache(maxsize=1)
def abbreviation_table() -> dict[str, list[str]]:
    """Bundled abbreviations: lower-cased abbreviation -> spoken forms (first = usual expansion)."""
    path = resources.files("medasr_cli").joinpath("data", "lexicon", "abbreviations.tsv")
    table: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        abbr, _, forms = line.partition("\t")
        table[abbr.strip().lower()] = [f.strip() for f in forms.split("|") if f.strip()]
    return table


def is_abbreviation(text: str) -> bool:
    """True for a known abbreviation or a short all-capitals token like 'COPD'."""
    if text.lower() in abbreviation_table():
        return True
    return bool(_LETTERS.match(text)) and sum(ch.isupper() for ch in text) >= 2


def abbreviation_forms(text: str) -> list[str]:
    """What is said aloud for an abbreviation: bundled expansions, else its letters."""
    known = abbreviation_table().get(text.lower())
    if known:
        return list(known)
    if is_abbreviation(text):
        return [" ".join(text.upper())]
    return []


def spoken_forms(text: str, normalize: Callable[[str], str] | None = None) -> list[str]:
    """Every other way ``text`` is written or said, most useful first, without ``text`` itself.

    With ``normalize`` (the ``eval`` normaliser), its output for ``text`` is included too,
    so a reader of ``lexicon.jsonl`` sees exactly what ``eval`` will match.
    """
    forms: list[str] = [*abbreviation_forms(text)]
    for base in (text, ascii_fold(text)):
        forms += [american(base), british(base)]
        for spelled in (base, american(base), british(base)):
            forms += possessive_variants(spelled)
    forms.append(ascii_fold(text))
    if normalize is not None:
        forms.append(normalize(text))
    return _unique(forms, exclude=text)


def _unique(forms: Iterable[str], exclude: str) -> list[str]:
    seen = {exclude.lower()}
    out = []
    for form in forms:
        form = " ".join(form.split())
        if form and form.lower() not in seen:
            seen.add(form.lower())
            out.append(form)
    return out


def with_spoken_forms(term: Term, normalize: Callable[[str], str] | None = None) -> Term:
    """A copy of ``term`` whose spoken forms include the derived ones (its own come first)."""
    derived = spoken_forms(term.text, normalize)
    merged = _unique([*term.spoken_forms, *derived], exclude=term.text)
    category = term.category
    if category is TermCategory.other and is_abbreviation(term.text):
        category = TermCategory.abbreviation
    return term.model_copy(update={"spoken_forms": merged, "category": category})


# ---- pronunciation respellings (TTS input only) ---------------------------------------------
#
# The lexicon's respellings (``data/lexicon/pronunciations.tsv``, ``Term.pronunciation``) join
# syllables with hyphens and write the stressed one in capitals: ``uh-PIX-uh-ban``. An engine
# that can place stress (espeak-ng, through phoneme input) reads the capitals; any other engine
# gets the respelling lower-cased, since capitals would be spelled out letter by letter.

RESPELLING = re.compile(r"(?<![\w-])[A-Za-z]+(?:-[A-Za-z]+)+(?![\w-])")
"""A hyphenated word that may be a stress-marked respelling (check with :func:`respelling_stress`)."""

PRIMARY, SECONDARY, UNSTRESSED = 2, 1, 0


def respelling_stress(token: str) -> list[tuple[str, int]] | None:
    """``uh-PIX-uh-ban`` -> ``[("uh", 0), ("pix", 2), ("uh", 0), ("ban", 0)]``; None if unmarked.

    A token is a stress-marked respelling when it has two or more syllables of
    ASCII letters, at least one of them in capitals (two letters or more, so
    ``X-ray`` is not one) and at least one not. The last capitalised syllable
    takes the primary stress (:data:`PRIMARY`), earlier ones a secondary stress.
    """
    syllables = token.split("-")
    if len(syllables) < 2 or not all(s.isascii() and s.isalpha() for s in syllables):
        return None
    caps = [len(s) >= 2 and s.isupper() for s in syllables]
    if not any(caps) or all(caps):
        return None
    last = max(i for i, c in enumerate(caps) if c)
    levels = [PRIMARY if i == last else SECONDARY if c else UNSTRESSED for i, c in enumerate(caps)]
    return [(s.lower(), level) for s, level in zip(syllables, levels, strict=True)]


def keep_stress_marks(respelling: str) -> str:
    """A respelling as TTS input: lower-cased except its stress-marked words.

    ``uh-PIX-uh-ban`` stays; ``KROHNZ dih-ZEEZ`` -> ``krohnz dih-ZEEZ`` (a lone
    capitalised word cannot be told from an acronym, and has one syllable anyway).
    """
    return " ".join(
        w if respelling_stress(w) is not None else w.lower() for w in respelling.split()
    )


def drop_stress_marks(text: str) -> str:
    """``text`` with every stress-marked respelling lower-cased (for engines that cannot use it)."""
    return RESPELLING.sub(
        lambda m: m.group().lower() if respelling_stress(m.group()) is not None else m.group(),
        text,
    )


RESPELLING_CONVENTION = (
    "syllables joined by hyphens, the stressed syllable in capitals, plain letters a-z, "
    "words separated by spaces (metoprolol -> meh-TOH-pruh-lol)"
)
MAX_RESPELLING = 120


def check_respelling(value: str, term: str | None = None) -> str:
    """``value`` as a TTS respelling in the project's convention, or ValueError saying why.

    The convention of ``data/lexicon/pronunciations.tsv`` (:data:`RESPELLING_CONVENTION`):
    one line of ASCII letters, hyphens and spaces; each syllable all lower case or all
    capitals; a word of several syllables has its stress marked as :func:`respelling_stress`
    reads it (so ``synth`` can stress it). For checking the answers of an LLM (``lexicon
    --respell llm``) before they reach ``lexicon.jsonl``. Spaces are collapsed; ``term``
    itself (no hyphen, lower case) is refused as no respelling at all.
    """
    if "\n" in value.strip() or "\r" in value:
        raise ValueError("more than one line")
    text = " ".join(value.split())
    if not text:
        raise ValueError("empty respelling")
    if len(text) > MAX_RESPELLING:
        raise ValueError(f"longer than {MAX_RESPELLING} characters")
    for word in text.split(" "):
        for syllable in word.split("-"):
            if not syllable:
                raise ValueError(f"'{word}': an empty syllable (hyphens at an edge or doubled)")
            if not (syllable.isascii() and syllable.isalpha()):
                raise ValueError(f"'{word}': only letters a-z, hyphens and spaces are allowed")
            if not (syllable.islower() or syllable.isupper()):
                raise ValueError(
                    f"'{syllable}': a syllable is all lower case, or all capitals when stressed"
                )
        if "-" in word and respelling_stress(word) is None:
            raise ValueError(
                f"'{word}': mark the stressed syllable in capitals (two letters or more), "
                "not every one"
            )
    if term is not None and "-" not in text and text == term.lower():
        raise ValueError("the term as written, not a respelling")
    return text
