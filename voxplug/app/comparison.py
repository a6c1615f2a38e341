"""Base versus fine-tuned: corpus WER/CER side by side, and what changed utterance by utterance.

Both sides are prediction files in the shape :mod:`voxplug.evaluation.scoring` writes (one JSON object per
line: ``id``, ``reference``, ``hypothesis``, ``wer``, ``cer``); rows are matched by ``id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UTTERANCE_HEADERS = ["id", "reference", "base", "fine-tuned", "base WER", "fine-tuned WER", "change"]
METRIC_HEADERS = ["model", "WER", "CER", "utterances"]


@dataclass
class Comparison:
    """The corpus metrics of both models and the per-utterance rows, worst regressions first."""

    metrics: list[list[Any]]
    utterances: list[list[Any]]

    def summary(self) -> str:
        """One sentence: how much WER moved."""
        if len(self.metrics) < 2:
            return "Evaluate both models to compare them."
        base, tuned = self.metrics[0][1], self.metrics[1][1]
        better = sum(1 for row in self.utterances if row[6] < 0)
        worse = sum(1 for row in self.utterances if row[6] > 0)
        return (
            f"WER {base:.1%} → {tuned:.1%} ({tuned - base:+.1%}); "
            f"{better} utterance(s) improved, {worse} got worse, {len(self.utterances) - better - worse} unchanged."
        )


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """The rows of a predictions JSONL (unreadable lines skipped); empty when the file does not exist."""
    if not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows.append(row)
    return rows


def corpus_metrics(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Corpus WER and CER of prediction rows, from their error counts when present, else the mean of row rates."""
    from voxplug.data.text import wer_cer

    if not rows:
        return 0.0, 0.0
    report = wer_cer([str(row.get("reference", "")) for row in rows], [str(row.get("hypothesis", "")) for row in rows])
    return float(report["wer"]), float(report["cer"])


def compare(base_rows: list[dict[str, Any]], tuned_rows: list[dict[str, Any]]) -> Comparison:
    """Join the two prediction lists by ``id`` and compute the per-utterance WER change (fine-tuned − base)."""
    base_by_id = {str(row["id"]): row for row in base_rows}
    metrics = []
    for label, rows in (("base", base_rows), ("fine-tuned", tuned_rows)):
        if rows:
            wer, cer = corpus_metrics(rows)
            metrics.append([label, round(wer, 4), round(cer, 4), len(rows)])
    utterances = []
    for row in tuned_rows:
        base = base_by_id.get(str(row["id"]))
        if base is None:
            continue
        base_wer, tuned_wer = float(base.get("wer", 0.0)), float(row.get("wer", 0.0))
        utterances.append(
            [
                row["id"],
                row.get("reference", ""),
                base.get("hypothesis", ""),
                row.get("hypothesis", ""),
                round(base_wer, 3),
                round(tuned_wer, 3),
                round(tuned_wer - base_wer, 3),
            ]
        )
    utterances.sort(key=lambda item: item[6], reverse=True)
    return Comparison(metrics=metrics, utterances=utterances)
