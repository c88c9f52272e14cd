"""``medasr lexicon``: compile the target terms (low-recall, rare, normalisation-aware)."""

from medasr_cli.lexicon.build import (
    LexiconOptions,
    LexiconResult,
    build_lexicon,
    parse_categories,
    write_lexicon,
)
from medasr_cli.lexicon.spoken import spoken_forms

__all__ = [
    "LexiconOptions",
    "LexiconResult",
    "build_lexicon",
    "parse_categories",
    "spoken_forms",
    "write_lexicon",
]
