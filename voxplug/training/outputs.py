"""The files a run leaves in its folder, and finding its checkpoints again.

Layout (``runs/<name>/``)::

    model/                 the trained model (LoRA adapter or full weights) + processor + voxplug.json
    merged/                the merged model, when lora.merge is on
    checkpoints/checkpoint-N/
    train_results.json  eval_results.json  training_config.json  trainer_state.json
    predictions.jsonl   eval_predictions/step-N.jsonl   curves.png   train.log
    data_summary.json      rows trained on and every row skipped, with its reason
    dropped_rows.jsonl     every row the data sources could not use, with the reason (when any was dropped)
    data_split.json        which clips trained and which were held out (``voxplug evaluate`` reads it)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.tempfiles import replaced_atomically, write_json

if TYPE_CHECKING:
    from voxplug.data.interface import Example, RowProblem

MODEL_INFO_FILE = "voxplug.json"
CHECKPOINTS_DIR = "checkpoints"
DROPPED_ROWS_FILE = "dropped_rows.jsonl"
DATA_SPLIT_FILE = "data_split.json"
DROPPED_SHOWN = 5
"""How many dropped rows the console lists before pointing at the file that holds them all."""
SPLIT_RECORD_MAX_ROWS = 200_000
"""Runs on more rows than this record no data split (the file would be larger than it is useful)."""
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Checkpoint folders that finished writing (their ``trainer_state.json`` is written last), oldest first."""
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for folder in checkpoints_dir.iterdir():
        match = _CHECKPOINT_NAME.match(folder.name)
        if match and (folder / "trainer_state.json").is_file():
            found.append((int(match.group(1)), folder))
    return [folder for _step, folder in sorted(found)]


def last_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    checkpoints = complete_checkpoints(checkpoints_dir)
    return checkpoints[-1] if checkpoints else None


def model_info(
    *,
    family: str,
    base_model: str,
    method: str,
    kind: str,
    languages: list[str],
    datasets: list[str],
    dataset_licenses: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``voxplug.json`` that says what a model folder holds and how to load it.

    ``datasets`` are Hub ids or, for local data, names (never paths); ``dataset_licenses`` maps those whose
    licence is known to it.
    """
    from voxplug import __version__

    return {
        "family": family,
        "base_model": base_model,
        "method": method,
        "kind": kind,
        "languages": languages,
        "datasets": datasets,
        "dataset_licenses": dict(dataset_licenses or {}),
        "voxplug_version": __version__,
    }


def read_model_info(model_dir: Path) -> dict[str, Any] | None:
    """The ``voxplug.json`` of a model folder, or None when it has none."""
    path = Path(model_dir) / MODEL_INFO_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def plot_curves(log_history: list[dict[str, Any]], path: Path, *, kept_step: int | None = None) -> Path | None:
    """Draw training loss, eval loss and eval WER against the step into a PNG; None when nothing was logged.

    ``kept_step`` (the step of the model the run kept) is marked on both plots with a labelled line.
    """
    series = {
        key: [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
        for key in ("loss", "eval_loss", "eval_wer", "eval_cer")
    }
    if not any(series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, wer_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axis in (("loss", loss_axis), ("eval_loss", loss_axis), ("eval_wer", wer_axis), ("eval_cer", wer_axis)):
        if series[key]:
            steps, values = zip(*series[key], strict=True)
            axis.plot(steps, values, marker="o" if len(steps) < 30 else None, label=key)
    if kept_step is not None:
        for axis in (loss_axis, wer_axis):
            axis.axvline(kept_step, color="grey", linestyle="--", linewidth=1, label=f"kept model (step {kept_step})")
    loss_axis.set(title="loss", xlabel="optimizer step")
    wer_axis.set(title="error rate (eval)", xlabel="optimizer step", ylim=(0, None))
    for axis in (loss_axis, wer_axis):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


@dataclass
class DroppedRows:
    """The rows a run could not use, against the rows it kept: what the console says before training starts."""

    kept: int
    problems: Sequence[RowProblem]

    @property
    def total(self) -> int:
        """Rows read: kept plus dropped."""
        return self.kept + len(self.problems)

    @property
    def share(self) -> float:
        """The dropped share of the rows read (0 when nothing was read)."""
        return len(self.problems) / self.total if self.total else 0.0

    def records(self) -> list[dict[str, str]]:
        """One ``{"row", "reason"}`` per dropped row; ``row`` names the file (or source) and the line."""
        return [{"row": problem.row, "reason": problem.reason} for problem in self.problems]

    def write(self, run_dir: Path) -> Path | None:
        """Write every dropped row to ``dropped_rows.jsonl`` in ``run_dir`` (removing a stale one); None if none."""
        path = run_dir / DROPPED_ROWS_FILE
        if not self.problems:
            path.unlink(missing_ok=True)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in self.records())
        with replaced_atomically(path) as handle:
            handle.write(text.encode("utf-8"))
        return path

    def lines(self, file: Path | None) -> list[str]:
        """``kept 11 of 14 rows; dropped 3:`` and the first few with their reasons (all in ``file``); [] if none."""
        if not self.problems:
            return []
        lines = [f"data: kept {self.kept} of {self.total} rows; dropped {len(self.problems)}:"]
        lines += [f"  {problem.row}: {problem.reason}" for problem in self.problems[:DROPPED_SHOWN]]
        if len(self.problems) > DROPPED_SHOWN:
            lines.append(f"  ... and {len(self.problems) - DROPPED_SHOWN} more")
        if file is not None:
            lines.append(f"  every dropped row, with the reason: {file}")
        return lines


def clip_key(example: Example) -> str:
    """What identifies a clip across manifests: its audio file's absolute path, else the row id."""
    if example.audio_path is not None:
        return str(Path(example.audio_path).resolve())
    return f"id:{example.id}"


def write_data_split(run_dir: Path, train: Sequence[Example], evaluation: Sequence[Example]) -> Path | None:
    """Record which clips trained and which were held out, so that ``voxplug evaluate`` can tell them apart.

    Nothing is written for runs on more than :data:`SPLIT_RECORD_MAX_ROWS` rows (a stale record is removed).
    """
    if len(train) + len(evaluation) > SPLIT_RECORD_MAX_ROWS:
        (run_dir / DATA_SPLIT_FILE).unlink(missing_ok=True)
        return None
    split = {"train": sorted({clip_key(e) for e in train}), "eval": sorted({clip_key(e) for e in evaluation})}
    return write_json(run_dir / DATA_SPLIT_FILE, split)


def read_data_split(run_dir: Path) -> dict[str, set[str]] | None:
    """The clips a run trained on and held out (``{"train", "eval"}``), or None when the run recorded none."""
    path = Path(run_dir) / DATA_SPLIT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {key: set(data.get(key) or []) for key in ("train", "eval")}


RANKED_METRICS = ("eval_wer", "eval_cer", "eval_loss")
"""The metrics that decide which checkpoint is best, all lower-is-better; the chosen one goes first."""
_METRIC_LABELS = {"eval_wer": "WER", "eval_cer": "CER", "eval_loss": "eval loss"}


def checkpoint_rank(metrics: dict[str, Any], primary: str, step: int) -> tuple[float, ...]:
    """Sort key of an evaluated checkpoint, lower is better: ``primary``, then the other metrics of
    :data:`RANKED_METRICS` in order (WER, CER, loss), then the later step. A missing or NaN value ranks last.

    With the one or two eval clips of a small personal dataset WER ties are the norm; the tie-breaks keep the
    checkpoint that is closer on characters, then on loss, then the one that trained longest.
    """
    order = [primary, *(name for name in RANKED_METRICS if name != primary)]
    return (*(_finite(metrics.get(name)) for name in order), -float(step))


def _finite(value: Any) -> float:
    if isinstance(value, (int, float)) and value == value:  # NaN != NaN
        return float(value)
    return float("inf")


def evaluation_at(log_history: list[dict[str, Any]], step: int | None) -> dict[str, Any] | None:
    """The evaluation logged at ``step`` (the latest one, if several were), or None."""
    if step is None:
        return None
    return next((e for e in reversed(log_history) if "eval_loss" in e and e.get("step") == step), None)


def kept_checkpoint_reason(log_history: list[dict[str, Any]], kept_step: int, final_step: int, primary: str) -> str:
    """Why the model at ``kept_step`` was kept, in a sentence: its metric, and how a tie was broken."""
    kept = evaluation_at(log_history, kept_step)
    evaluations = {e["step"]: e for e in log_history if "eval_loss" in e and "step" in e}
    if kept is None:
        return f"the final model (step {final_step}): it was not evaluated during training"
    label = _METRIC_LABELS.get(primary, primary)
    value = kept.get(primary)
    where = "the final model" if kept_step == final_step else f"checkpoint-{kept_step}"
    text = f"{where} (step {kept_step} of {final_step}) has the lowest {label}"
    text += f" ({value:.3f})" if isinstance(value, (int, float)) else ""
    if len(evaluations) == 1:
        return f"{where} (step {kept_step} of {final_step}): the only evaluated model"
    tied = [step for step, e in sorted(evaluations.items()) if step != kept_step and e.get(primary) == value]
    if not tied:
        return text
    return text + f", tied with step {', '.join(map(str, tied))}; " + _tie_break(evaluations, kept_step, tied, primary)


def _tie_break(evaluations: dict[int, dict[str, Any]], kept_step: int, tied: list[int], primary: str) -> str:
    """Which tie-break decided between ``kept_step`` and the ``tied`` steps (see :func:`checkpoint_rank`)."""
    kept = evaluations[kept_step]
    for name in (n for n in RANKED_METRICS if n != primary):
        rivals = [evaluations[step].get(name) for step in tied]
        if any(_finite(value) != _finite(kept.get(name)) for value in rivals):
            shown = ", ".join(f"{_finite(value):.3f}" for value in rivals)
            return f"kept for its lower {_METRIC_LABELS[name]} ({_finite(kept.get(name)):.3f} against {shown})"
    return "the same on every metric: kept the later step"


def logged_losses(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """``final_loss`` (the last logged training loss) and ``train_loss`` (the mean over every step of the run).

    Both come from the log history, which a resumed run carries over, so they cover the whole run; the Trainer's
    own ``train_loss`` covers only the steps since the last resume.
    """
    logged = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]
    if not logged:
        return {}
    weighted, previous = 0.0, 0
    for step, loss in logged:
        weighted += loss * max(step - previous, 0)
        previous = step
    return {"final_loss": logged[-1][1], "train_loss": weighted / previous if previous else logged[-1][1]}
