"""Score transcripts against references and write the per-utterance predictions JSONL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxplug.data.text import wer_cer


@dataclass(frozen=True)
class Utterance:
    """One evaluated clip: what was said and what the model wrote."""

    id: str
    language: str | None
    reference: str
    hypothesis: str


@dataclass
class Scores:
    """Corpus WER/CER and one row per utterance (``id``, texts, ``wer``, ``cer``, ``errors``)."""

    wer: float
    cer: float
    samples: int
    rows: list[dict[str, Any]]

    def metrics(self) -> dict[str, float]:
        """``{"wer", "cer", "samples"}``: what evaluation hooks and result files report."""
        return {"wer": self.wer, "cer": self.cer, "samples": self.samples}


def score_utterances(utterances: Sequence[Utterance]) -> Scores:
    """WER and CER on normalised text (case and punctuation ignored), with per-utterance error counts."""
    report = wer_cer([u.reference for u in utterances], [u.hypothesis for u in utterances])
    rows = [_row(u, score) for u, score in zip(utterances, report["utterances"], strict=True)]
    return Scores(wer=report["wer"], cer=report["cer"], samples=len(rows), rows=rows)


def _row(utterance: Utterance, score: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": utterance.id,
        "language": utterance.language,
        "reference": utterance.reference,
        "hypothesis": utterance.hypothesis,
        "wer": score["wer"],
        "cer": score["cer"],
        "errors": {
            "reference_words": score["reference_words"],
            "substitutions": score["substitutions"],
            "deletions": score["deletions"],
            "insertions": score["insertions"],
        },
    }


def write_predictions(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write one JSON object per utterance to ``path`` (UTF-8, parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Read a predictions JSONL written by :func:`write_predictions`."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
