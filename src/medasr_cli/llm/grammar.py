"""Phrase banks of the template backend: clinical dictation in three speaking styles.

Slots in braces are filled by :mod:`medasr_cli.llm.template`: ``{term}`` is the
target term (inserted verbatim), ``{P}``/``{p}`` the patient's pronoun
(capitalised or not), ``{pos}`` its possessive, ``{dose}``, ``{freq}``,
``{route}``, ``{dur}``, ``{drug}``, ``{cond}``, ``{proc}``,
``{site}``, ``{name}``, ``{doc}``, ``{date}``, ``{age}``, ``{sex}``, ``{mrn}``,
``{value}``, ``{num}``, ``{vital}``, ``{symptom}`` and ``{spec}``; a capitalised
slot name (``{Drug}``) capitalises the value. Every name, date and number is invented.
"""

from __future__ import annotations

NOTE_TYPES = (
    "history",
    "medications",
    "examination",
    "assessment and plan",
    "discharge summary",
    "referral letter",
    "operative note",
    "clinic letter",
)
SPECIALTIES = (
    "cardiology", "gastroenterology", "respiratory medicine", "general practice", "neurology",
    "endocrinology", "oncology", "emergency medicine", "general surgery", "orthopaedics",
    "renal medicine", "rheumatology", "obstetrics and gynaecology", "geriatric medicine",
)  # fmt: skip
STYLES = ("formal", "conversational", "terse")

SURNAMES = (
    "Okafor", "Lindqvist", "Marchetti", "Brennan", "Haddad", "Nakamura", "Kowalczyk", "Osei",
    "Fairweather", "Delacroix", "Thorsen", "Abernethy", "Castellano", "Mbeki", "Rasmussen",
    "Quinlan", "Varga", "Oyelaran", "Petrakis", "Whitcombe",
)  # fmt: skip
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
DOSES = ("2.5", "5", "10", "20", "25", "40", "50", "75", "100", "200", "250", "400", "500")
UNITS = ("mg", "milligrams", "mg", "micrograms", "units")
FREQS = {
    "formal": ("once daily", "twice daily", "three times daily", "at night", "as required"),
    "conversational": ("once a day", "twice a day", "in the mornings", "at bedtime", "when needed"),
    "terse": ("o.d.", "b.i.d.", "t.i.d.", "q.d.", "p.r.n.", "nocte", "mane"),
}
ROUTES = {
    "formal": ("orally", "intravenously", "subcutaneously", "by mouth"),
    "conversational": ("by mouth", "as tablets", "as an injection", "through the drip"),
    "terse": ("p.o.", "IV", "s.c.", "p.o.", "IM"),
}
DURATIONS = ("two days", "three weeks", "six months", "about a year", "ten days", "four years")
EVERYDAY_DRUGS = ("paracetamol", "aspirin", "ibuprofen", "amoxicillin", "omeprazole", "insulin")
EVERYDAY_CONDITIONS = ("hypertension", "asthma", "type 2 diabetes", "osteoarthritis", "migraine")
EVERYDAY_PROCEDURES = (
    "an appendicectomy",
    "a knee arthroscopy",
    "a hernia repair",
    "a colonoscopy",
)
SITES = ("the left knee", "the lower back", "the right shoulder", "the abdomen", "the chest")
VALUES = ("140 over 90", "98 percent", "72", "14", "6.2", "38.4")

# Sentences that use a target term, by term category and style.
TERM_SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "drug": {
        "formal": (
            "{P} was started on {term} {dose} {freq}.",
            "We will continue {term} {dose} {route} {freq}.",
            "{pos} {term} has been increased to {dose} {freq}.",
            "{P} stopped the {term} {dur} ago because of side effects.",
            "Please note that {p} is intolerant of {term}.",
            "The plan is to wean the {term} over the next {dur}.",
        ),
        "conversational": (
            "{P}'s been on {term} for {dur} now and says it's helping a bit.",
            "So we've bumped up the {term} to {dose} {freq}.",
            "{P} wasn't keen on the {term}, says it made {obj} feel rubbish.",
            "I've asked {obj} to keep taking the {term} {freq} and see how it goes.",
        ),
        "terse": (
            "{term} {dose} {route} {freq}.",
            "Commenced {term} {dose} {freq}.",
            "Held {term} while nil by mouth.",
            "Rx {term} {dose} {freq}, review in {dur}.",
        ),
    },
    "condition": {
        "formal": (
            "{P} has a background of {term} and {cond}.",
            "The working diagnosis is {term}.",
            "Differentials include {term} and {cond}.",
            "{P} was diagnosed with {term} {dur} ago.",
            "There is a family history of {term}.",
        ),
        "conversational": (
            "{P} tells me {p} was told years ago that {p} had {term}.",
            "Honestly, I think this is probably {term}, but we'll see what the bloods say.",
            "The main worry is {term}, so I've explained that to {obj} and {pos_low} family.",
        ),
        "terse": (
            "Known {term}, stable.",
            "Impression: {term}.",
            "PMH: {term}, {cond}.",
            "Query {term}, to rule out.",
        ),
    },
    "anatomy": {
        "formal": (
            "There is tenderness over the {term}.",
            "Imaging demonstrates a small lesion involving the {term}.",
            "Examination of the {term} was unremarkable.",
            "The {term} appeared normal at the time of surgery.",
            "{P} describes pain radiating towards the {term}.",
        ),
        "conversational": (
            "{P} points to the {term} when I ask where it hurts.",
            "It's really sore around the {term}, especially at night.",
            "The scan of the {term} looked fine, which was reassuring.",
        ),
        "terse": (
            "{term}: NAD.",
            "Tender {term}, no swelling.",
            "Ultrasound {term}: no collection.",
        ),
    },
    "procedure": {
        "formal": (
            "{P} underwent {term} in {month} without complication.",
            "We have listed {obj} for {term}.",
            "I would be grateful if you could consider {obj} for {term}.",
            "{term} was performed under general anaesthesia.",
            "The plan is for {term} within the next {dur}.",
        ),
        "conversational": (
            "We talked through the {term} and {p}'s happy to go ahead.",
            "{P} had the {term} done last {month} and has been fine since.",
            "I've explained what the {term} involves, and {p} had a few questions.",
        ),
        "terse": (
            "Booked for {term}.",
            "Status post {term}.",
            "Plan: {term}, consent obtained.",
        ),
    },
    "abbreviation": {
        "formal": (
            "The notes record {term} on admission.",
            "The referral letter mentions {term}.",
        ),
        "conversational": ("The GP letter says {term}, so I've gone with that.",),
        "terse": ("Noted {term}.", "Hx {term}."),
    },
    "other": {
        "formal": (
            "We discussed {term} at length with {obj}.",
            "The report specifically comments on {term}.",
            "{term} will be reviewed at the next appointment.",
        ),
        "conversational": ("{P} asked me about {term}, so we went through it together.",),
        "terse": ("Re {term}: discussed.", "{term} noted."),
    },
}

# Abbreviations, grouped by how they are used in a sentence (keys lower-cased).
ABBREVIATION_GROUPS: dict[str, frozenset[str]] = {
    "unit": frozenset({"mg", "mcg", "g", "kg", "ml", "l", "iu"}),
    "frequency": frozenset({"b.i.d.", "t.i.d.", "q.i.d.", "q.d.", "o.d.", "q.h.s.", "q.4.h.", "p.r.n."}),
    "route": frozenset({"p.o.", "i.v.", "i.m.", "s.c.", "s.l.", "p.r."}),
    "vital": frozenset({"bp", "hr", "rr", "spo2", "gcs", "bmi"}),
    "imaging": frozenset({"ecg", "ekg", "eeg", "ct", "mri", "cxr", "toe", "tte"}),
    "lab": frozenset({"fbc", "cbc", "u&es", "lfts", "crp", "esr", "inr", "egfr", "hba1c", "tsh",
                      "psa", "abg", "wbc", "hb"}),
    "condition": frozenset({"copd", "chf", "ckd", "mi", "nstemi", "stemi", "acs", "af", "dvt",
                            "pe", "tia", "cva", "uti", "gerd", "gord", "ibd", "ibs", "t2dm",
                            "t1dm", "htn", "aki", "dka", "oa", "ra", "sle"}),
    "procedure": frozenset({"cabg", "pci", "ercp", "ogd", "egd", "turp", "orif", "tkr", "thr",
                            "lp", "niv", "cpap"}),
    "drug": frozenset({"nsaid", "ace inhibitor", "arb", "ppi", "ssri", "doac", "lmwh", "gtn"}),
}  # fmt: skip
ABBREVIATION_SENTENCES: dict[str, tuple[str, ...]] = {
    "unit": ("{Drug} {num} {term} {freq}.", "Give {num} {term} of {drug} {route}."),
    "frequency": ("{Drug} {dose} {term}.", "{Drug} {dose} {route} {term}."),
    "route": ("{Drug} {dose} {term} {freq}.", "Switch the {drug} to {term} when able."),
    "vital": ("{term} {vital} on arrival.", "Observations: {term} {vital}, otherwise stable."),
    "imaging": ("The {term} showed no acute changes.", "I have requested an urgent {term}."),
    "lab": ("The {term} came back at {value}.", "Please repeat the {term} in the morning."),
    "condition": ("Background of {term} and {cond}.", "{P} has {term}, under follow-up."),
    "procedure": ("{P} is status post {term}.", "Listed for {term} next {month}."),
    "drug": ("Avoid {term} therapy given the renal function.", "{P} is already on {term} therapy."),
}
# Abbreviations with a sentence of their own.
SPECIAL_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "n.p.o.": ("Keep {term} from midnight.",),
    "stat": ("Give {drug} {dose} {term}.",),
    "mmhg": ("Blood pressure was 150 over 95 {term}.",),
    "bpm": ("Pulse 88 {term}, regular.",),
    "mmol/l": ("Potassium was 5.9 {term} this morning.",),
    "c/o": ("{P} {term} {symptom}.",),
    "s/p": ("{P} is {term} {proc}.",),
    "r/o": ("Admit to {term} {cond}.",),
    "dx": ("{term}: {cond}.",),
    "hx": ("{term} of {cond}.",),
    "rx": ("{term}: {drug} {dose} {freq}.",),
    "tx": ("{term} options discussed with {obj}.",),
    "sob": ("{P} reports {term} on minimal exertion.",),
    "soboe": ("{P} describes {term} after one flight of stairs.",),
    "nad": ("Chest {term}.",),
    "hpi": ("{term}: {symptom} for {dur}.",),
    "pmh": ("{term}: {cond}.",),
    "dnacpr": ("A {term} decision is in place.",),
}
VITALS = {
    "bp": "140 over 90", "hr": "72", "rr": "16", "spo2": "96 percent on room air",
    "gcs": "15 out of 15", "bmi": "31",
}  # fmt: skip

OPENERS: dict[str, tuple[str, ...]] = {
    "history": (
        "This is a {age}-year-old {sex} who presents with {symptom}, going on for {dur}.",
        "{name} is a {age}-year-old {sex} seen today with {symptom}.",
    ),
    "medications": ("Medication review for {name}, hospital number {mrn}.",),
    "examination": ("On examination {p} was alert and comfortable at rest.",),
    "assessment and plan": ("Assessment and plan for {name}, {age}-year-old {sex}.",),
    "discharge summary": (
        "Discharge summary for {name}, admitted on {date} under {spec}.",
        "{name} was admitted on {date} with {symptom} and is now ready for discharge.",
    ),
    "referral letter": (
        "Dear Dr {doc}, thank you for seeing {name}, a {age}-year-old {sex} with {symptom}.",
        "Dear colleague, I would be grateful for your opinion on {name}.",
    ),
    "operative note": ("Operation note, {date}. Surgeon Mr {doc}, {spec}.",),
    "clinic letter": (
        "I reviewed {name} in the {spec} clinic on {date}.",
        "Thank you for referring {name}, whom I saw in clinic today.",
    ),
}
FILLERS: dict[str, tuple[str, ...]] = {
    "formal": (
        "{P} denies chest pain, palpitations or syncope.",
        "Observations were within normal limits.",
        "{P} lives independently and is a non-smoker.",
        "Bloods including renal function and a full blood count are pending.",
        "Allergies: no known drug allergies.",
        "{P} is usually on {drug} for {cond}.",
        "There is a past history of {cond}.",
        "{P} is status post {proc}.",
        "The cannula remains in situ.",
        "Oral fluids ad libitum, and {drug} pro re nata for pain.",
        "This appears to be a de novo presentation.",
    ),
    "conversational": (
        "{P}'s been a bit off {pos_low} food and generally feeling run down.",
        "To be honest, the pain hasn't really settled since last week.",
        "{P} says it's like a tight band across {pos_low} chest.",
        "{pos} daughter's been helping out at home, which is good.",
        "{P} takes {drug} now and then for the aches.",
    ),
    "terse": (
        "Obs stable, afebrile.",
        "NKDA.",
        "SOB on exertion, no orthopnoea.",
        "Chest clear, HS I plus II plus zero.",
        "Abdo soft, non-tender.",
        "Keep nil by mouth.",
        "Fluids ad lib.",
        "Drain in situ.",
    ),
}
CLOSERS: dict[str, tuple[str, ...]] = {
    "history": ("I will review {obj} once the results are back.",),
    "medications": ("All other medications are unchanged.",),
    "examination": ("The remainder of the examination was unremarkable.",),
    "assessment and plan": ("Review in {dur}, sooner if concerned.",),
    "discharge summary": ("Follow-up in the {spec} clinic in {dur}.",),
    "referral letter": ("Many thanks for your help. Yours sincerely, Dr {doc}.",),
    "operative note": ("Estimated blood loss minimal. Post-op: routine observations.",),
    "clinic letter": ("I have not arranged further follow-up, but I am happy to see {obj} again.",),
}
SYMPTOMS = (
    "shortness of breath", "central chest pain", "abdominal pain", "headaches", "a cough",
    "back pain", "dizziness", "swollen ankles", "weight loss", "palpitations",
)  # fmt: skip
