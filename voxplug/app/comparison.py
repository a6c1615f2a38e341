"""Base versus fine-tuned: corpus WER/CER side by side, and what changed utterance by utterance.

The Evaluate tab runs ``voxplug evaluate`` on a run's **eval split**: the clips the run's final evaluation
transcribed (their ids are in ``runs/<run>/predictions.jsonl``). :func:`write_eval_manifest` writes those rows of the
dataset to ``runs/<run>/comparison/eval.jsonl``, with their audio linked beside it (the ``jsonl`` source reads only
audio inside the manifest's folder). ``voxplug evaluate`` then writes ``predictions.jsonl`` (fine-tuned) and
``base_predictions.jsonl`` (the base model; an adapter switched off) into the same folder.

Both sides are prediction files in the shape :mod:`voxplug.evaluation.scoring` writes (one JSON object per
line: ``id``, ``reference``, ``hypothesis``, ``wer``, ``cer``); rows are matched by ``id``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxplug.errors import DataError

COMPARISON_DIR = "comparison"
UTTERANCE_HEADERS = ["id", "reference", "base", "fine-tuned", "base WER", "fine-tuned WER", "change"]
METRIC_HEADERS = ["model", "WER", "CER", "utterances"]


@dataclass
class Comparison:
    """The corpus metrics of both models and the per-utterance rows, worst regressions first."""

    metrics: list[list[Any]]
    utterances: list[list[Any]]
    wer: dict[str, float]

    def summary(self) -> str:
        """One sentence: how much WER moved."""
        if len(self.metrics) < 2:
            return "Evaluate both models to compare them."
        base, tuned = self.wer["base"], self.wer["fine-tuned"]
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
    wers = {}
    for label, rows in (("base", base_rows), ("fine-tuned", tuned_rows)):
        if rows:
            wer, cer = corpus_metrics(rows)
            wers[label] = wer
            metrics.append([label, f"{wer:.1%}", f"{cer:.1%}", len(rows)])
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
    return Comparison(metrics=metrics, utterances=utterances, wer=wers)


@dataclass
class EvalPlan:
    """What the evaluation job reads and where it writes: the manifest, the output folder, and a note for the page."""

    manifest: Path
    out_dir: Path
    note: str


def run_dataset_manifest(run_dir: Path) -> Path:
    """The JSONL manifest a run trained on (``data.jsonl.path`` in its ``training_config.json``)."""
    config_file = Path(run_dir) / "training_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        return Path(config["data"]["jsonl"]["path"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run_dir.name}: cannot tell which dataset it trained on ({exc})") from None


def write_eval_manifest(run_dir: Path) -> EvalPlan:
    """Write the run's eval split as a manifest in ``<run>/comparison/`` (the whole dataset if it had none)."""
    from voxplug.data.manifest import iter_jsonl

    run_dir = Path(run_dir)
    dataset_manifest = run_dataset_manifest(run_dir)
    eval_ids = {str(row["id"]) for row in read_predictions(run_dir / "predictions.jsonl")}
    if not eval_ids:
        note = "The run had no eval split: both models are scored on the whole dataset, its training clips included."
        return EvalPlan(dataset_manifest, run_dir / COMPARISON_DIR, note)
    out_dir = run_dir / COMPARISON_DIR
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rows = [row for _n, row in iter_jsonl(dataset_manifest) if isinstance(row, dict) and str(row.get("id")) in eval_ids]
    lines = []
    for row in rows:
        source = dataset_manifest.parent / str(row["audio_path"])
        target = out_dir / "audio" / source.name
        _link_or_copy(source, target)
        lines.append(json.dumps({**row, "audio_path": f"audio/{source.name}"}, ensure_ascii=False))
    manifest = out_dir / "eval.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    note = f"Scored on the run's eval split: {len(rows)} clip(s) it did not train on."
    return EvalPlan(manifest, out_dir, note)


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def comparison_of_run(run_dir: Path) -> Comparison | None:
    """The base-versus-fine-tuned comparison of a run, once ``voxplug evaluate`` wrote it; else None."""
    out_dir = Path(run_dir) / COMPARISON_DIR
    base, tuned = read_predictions(out_dir / "base_predictions.jsonl"), read_predictions(out_dir / "predictions.jsonl")
    return compare(base, tuned) if base and tuned else None
