"""Stage contracts, JSONL I/O, errors and audio helpers shared by every stage."""
