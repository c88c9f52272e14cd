"""``medasr lexicon``: compile the target terms (low-recall, rare, normalisation-aware)."""

from medasr_cli.core.spoken import spoken_forms
from medasr_cli.lexicon.build import (
    LexiconRequest,
    LexiconResult,
    build_lexicon,
    parse_categories,
    write_lexicon,
)

__all__ = [
    "LexiconRequest",
    "LexiconResult",
    "build_lexicon",
    "parse_categories",
    "spoken_forms",
    "write_lexicon",
]
