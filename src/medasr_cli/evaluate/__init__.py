"""Evaluation: WER/CER, medical-term recall and precision, breakdowns, reports."""

from medasr_cli.core.text import get_normalizer
from medasr_cli.evaluate.metrics import EvalReport, evaluate_pairs

__all__ = ["EvalReport", "evaluate_pairs", "get_normalizer"]
