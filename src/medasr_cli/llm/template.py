"""The offline ``template`` backend: seeded, grammar-based clinical dictations.

Each dictation is an opener for its note type, one sentence per target term
(chosen by the term's category and the speaker's style, with the term inserted
verbatim), a few filler sentences with invented dosages, frequencies,
abbreviations and Latin phrases, and sometimes a closing line. The random
generator is seeded from (seed, request id, variant), so the same request
always yields the same text, whatever else is generated around it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import abbreviation_forms
from medasr_cli.llm import grammar as g
from medasr_cli.llm.base import DictationRequest, Outcome, generator_info
from medasr_cli.llm.match import missing_terms

MODEL = "medasr-template-v1"

_EXPANSION_GROUPS = (
    ("drug", ("inhibitor", "blocker", "anticoagulant", "heparin", "trinitrate", "drug")),
    ("imaging", ("scopy", "graphy", "gram", "imaging", "x-ray", "echocardiogram")),
    ("lab", ("count", "ratio", "protein", "hormone", "antigen", "gas", "test", "level")),
    ("procedure", ("resection", "replacement", "bypass", "intervention", "fixation", "puncture")),
)


class _Slots(dict[str, str]):
    """Slot values for ``str.format_map``; unknown slots are drawn lazily from the banks."""

    def __init__(self, rng: random.Random, style: str, fixed: dict[str, str]) -> None:
        super().__init__(fixed)
        self.rng = rng
        self.style = style

    def __missing__(self, key: str) -> str:
        value = self._draw(key.lower())
        return value[:1].upper() + value[1:] if key[:1].isupper() else value

    def _draw(self, key: str) -> str:
        r = self.rng
        style = self.style
        draws: dict[str, Any] = {
            "dose": lambda: f"{r.choice(g.DOSES)} {r.choice(g.UNITS)}",
            "num": lambda: r.choice(g.DOSES),
            "freq": lambda: r.choice(g.FREQS[style]),
            "route": lambda: r.choice(g.ROUTES[style]),
            "dur": lambda: r.choice(g.DURATIONS),
            "drug": lambda: r.choice(g.EVERYDAY_DRUGS),
            "cond": lambda: r.choice(g.EVERYDAY_CONDITIONS),
            "proc": lambda: r.choice(g.EVERYDAY_PROCEDURES),
            "site": lambda: r.choice(g.SITES),
            "value": lambda: r.choice(g.VALUES),
            "month": lambda: r.choice(g.MONTHS),
            "date": lambda: f"{r.randint(1, 28)} {r.choice(g.MONTHS)}",
            "doc": lambda: r.choice([n for n in g.SURNAMES if n != self.get("surname")]),
            "symptom": lambda: r.choice(g.SYMPTOMS),
            "mrn": lambda: f"{r.randint(100, 999)} {r.randint(100, 999)} {r.randint(1000, 9999)}",
        }
        if key not in draws:
            raise KeyError(key)
        value = str(draws[key]())
        self[key] = value  # one value per dictation, so a slot reads consistently
        return value


def _patient(rng: random.Random, req: DictationRequest) -> dict[str, str]:
    female = rng.random() < 0.5
    surname = rng.choice(g.SURNAMES)
    return {
        "P": "She" if female else "He",
        "p": "she" if female else "he",
        "obj": "her" if female else "him",
        "pos": "Her" if female else "His",
        "pos_low": "her" if female else "his",
        "sex": "woman" if female else "man",
        "name": f"{rng.choice(('Mrs', 'Ms')) if female else 'Mr'} {surname}",
        "surname": surname,
        "age": str(rng.randint(19, 94)),
        "spec": req.specialty,
    }


def abbreviation_group(term: Term) -> str | None:
    """How an abbreviation is used in a sentence (unit, frequency, lab, ...), if known."""
    key = term.text.lower()
    for group, members in g.ABBREVIATION_GROUPS.items():
        if key in members:
            return group
    expansion = " ".join([*term.spoken_forms, *abbreviation_forms(term.text)]).lower()
    for group, words in _EXPANSION_GROUPS:
        if any(w in expansion for w in words):
            return group
    return None


def term_sentences(term: Term, style: str) -> Sequence[str]:
    """The sentence templates that can carry ``term``."""
    if term.category is TermCategory.abbreviation:
        special = g.SPECIAL_ABBREVIATIONS.get(term.text.lower())
        if special:
            return special
        group = abbreviation_group(term)
        if group:
            return g.ABBREVIATION_SENTENCES[group]
    bank = g.TERM_SENTENCES.get(term.category.value, g.TERM_SENTENCES["other"])
    return bank.get(style) or bank["formal"]


def _fill(template: str, slots: _Slots, term: Term | None = None) -> str:
    if term is not None:
        slots["term"] = term.text
        if term.text.lower() in g.VITALS:
            slots["vital"] = g.VITALS[term.text.lower()]
    sentence = template.format_map(slots)
    if sentence.endswith(".."):  # "... b.i.d.." when a slot value ends with a full stop
        sentence = sentence[:-1]
    abbreviation = term is not None and term.category is TermCategory.abbreviation
    if abbreviation and term is not None and sentence.startswith(term.text):
        return sentence  # an abbreviation such as "c/o" keeps its case
    return sentence[:1].upper() + sentence[1:]


def compose(req: DictationRequest) -> str:
    """The dictation text for ``req``: deterministic for its (seed, id, variant)."""
    rng = random.Random(f"{req.seed}:{req.id}:{req.variant}")
    slots = _Slots(rng, req.style, _patient(rng, req))
    opener = _fill(rng.choice(g.OPENERS[req.note_type]), slots)
    used: set[str] = set()
    body = []
    for term in req.terms:
        options = term_sentences(term, req.style)
        template = rng.choice([o for o in options if o not in used] or list(options))
        used.add(template)
        body.append(_fill(template, slots, term))
    fillers = g.FILLERS[req.style]
    body += [_fill(s, slots) for s in rng.sample(fillers, k=rng.randint(1, min(3, len(fillers))))]
    rng.shuffle(body)
    closer = [_fill(rng.choice(g.CLOSERS[req.note_type]), slots)] if rng.random() < 0.6 else []
    return " ".join([opener, *body, *closer])


class TemplateBackend:
    """Offline dictations from phrase banks; records are labelled ``template_generated``."""

    name = "template"

    def generate(self, requests: Sequence[DictationRequest]) -> Iterator[Outcome]:
        for req in requests:
            yield self.generate_one(req)

    def generate_one(self, req: DictationRequest) -> Outcome:
        """One dictation; an error outcome only if a term somehow went missing."""
        text = compose(req)
        missing = missing_terms(text, req.terms)
        if missing:
            return Outcome(req, error=f"template lost term(s): {', '.join(missing)}")
        info = generator_info(
            req,
            self.name,
            model=MODEL,
            prompt_id=f"template/{req.note_type}",
            seed=req.seed,
            template_generated=True,
        )
        return Outcome(req, text=text, generator=info)

    def close(self) -> None:
        """Nothing to release."""
