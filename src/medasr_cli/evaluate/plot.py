"""A PNG summary of an eval report: per-term recall and WER by breakdown."""

from __future__ import annotations

from pathlib import Path

from medasr_cli.core.errors import require
from medasr_cli.core.jsonl import atomic_write
from medasr_cli.evaluate.metrics import EvalReport


def plot_report(report: EvalReport, path: str | Path, max_terms: int = 30) -> None:
    """Bar charts: the lowest-recall terms, and WER per value of each breakdown field."""
    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [t for t in report.per_term if t.recall is not None][:max_terms]
    panels = 1 + len(report.breakdowns)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3 + 0.25 * len(terms) + 3 * (panels - 1)))
    axes = axes if panels > 1 else [axes]
    ax = axes[0]
    if terms:
        names = [t.term or "" for t in terms][::-1]
        ax.barh(names, [t.recall or 0.0 for t in terms][::-1], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("recall")
    else:
        ax.text(0.5, 0.5, "no term occurrences", ha="center", va="center")
    ax.set_title(f"Medical-term recall (lowest {len(terms)}), WER {report.overall.wer:.1%}")
    for ax, (field_name, groups) in zip(axes[1:], report.breakdowns.items(), strict=False):
        ax.bar([g.value for g in groups], [g.counts.wer for g in groups], color="tab:orange")
        ax.set_ylabel("WER")
        ax.set_title(f"WER by {field_name}")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
