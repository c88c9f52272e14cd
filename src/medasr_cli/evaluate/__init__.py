"""Evaluation: WER/CER, medical-term recall and precision, breakdowns, reports."""

from medasr_cli.evaluate.metrics import EvalReport, evaluate_pairs
from medasr_cli.evaluate.normalize import get_normalizer

__all__ = ["EvalReport", "evaluate_pairs", "get_normalizer"]
