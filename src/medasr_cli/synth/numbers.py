"""Numbers as English words, the way a clinician reads them aloud."""

from __future__ import annotations

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
        if n:
            words.append("and")
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def int_to_words(n: int) -> str:
    """``125`` -> ``one hundred and twenty-five`` (British "and"; negative numbers say minus)."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n < 1000:
        return _below_thousand(n)
    parts = []
    for value, name in _SCALES:
        if n >= value:
            parts.append(f"{int_to_words(n // value)} {name}")
            n %= value
    if n:
        parts.append(("and " if n < 100 else "") + _below_thousand(n))
    return " ".join(parts)


def digits_to_words(digits: str) -> str:
    """``05`` -> ``zero five`` (for decimals and codes)."""
    return " ".join(_ONES[int(d)] for d in digits if d.isdigit())


def number_to_words(text: str) -> str:
    """A written number (``2.5``, ``1,000``, ``0.125``) as words."""
    text = text.replace(",", "")
    whole, _, frac = text.partition(".")
    words = int_to_words(int(whole or "0"))
    if frac:
        words += " point " + digits_to_words(frac)
    return words


def ordinal_words(n: int) -> str:
    """``21`` -> ``twenty-first``."""
    words = int_to_words(n)
    head, sep, last = words.rpartition(" ")
    hyphen_head, hsep, last_part = last.rpartition("-")
    if last_part in _ORDINAL_IRREGULAR:
        ordinal = _ORDINAL_IRREGULAR[last_part]
    elif last_part.endswith("y"):
        ordinal = last_part[:-1] + "ieth"
    else:
        ordinal = last_part + "th"
    return head + sep + hyphen_head + hsep + ordinal


def year_words(n: int) -> str:
    """``1998`` -> ``nineteen ninety-eight``, ``2005`` -> ``two thousand and five``."""
    if 2000 <= n < 2010:
        return int_to_words(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return f"{int_to_words(hi)} hundred"
    tail = f"oh {_ONES[lo]}" if lo < 10 else int_to_words(lo)
    return f"{int_to_words(hi)} {tail}"


def clock_words(hours: int, minutes: int) -> str:
    """``8:30`` -> ``eight thirty``, ``14:00`` -> ``fourteen hundred``, ``8:05`` -> ``eight oh five``."""
    if minutes == 0:
        return f"{int_to_words(hours)} " + ("o'clock" if hours <= 12 else "hundred")
    tail = f"oh {_ONES[minutes]}" if minutes < 10 else int_to_words(minutes)
    return f"{int_to_words(hours)} {tail}"
