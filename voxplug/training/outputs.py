"""The files a run leaves in its folder, and finding its checkpoints again.

Layout (``runs/<name>/``)::

    model/                 the trained model (LoRA adapter or full weights) + processor + voxplug.json
    merged/                the merged model, when lora.merge is on
    checkpoints/checkpoint-N/
    train_results.json  eval_results.json  training_config.json  trainer_state.json
    predictions.jsonl   eval_predictions/step-N.jsonl   curves.png   train.log
    data_summary.json      rows trained on and every row skipped, with its reason
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MODEL_INFO_FILE = "voxplug.json"
CHECKPOINTS_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


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
    *, family: str, base_model: str, method: str, kind: str, languages: list[str], datasets: list[str]
) -> dict[str, Any]:
    """The ``voxplug.json`` that says what a model folder holds and how to load it."""
    from voxplug import __version__

    return {
        "family": family,
        "base_model": base_model,
        "method": method,
        "kind": kind,
        "languages": languages,
        "datasets": datasets,
        "voxplug_version": __version__,
    }


def read_model_info(model_dir: Path) -> dict[str, Any] | None:
    """The ``voxplug.json`` of a model folder, or None when it has none."""
    path = Path(model_dir) / MODEL_INFO_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def plot_curves(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Draw training loss, eval loss and eval WER against the step into a PNG; None when nothing was logged."""
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
