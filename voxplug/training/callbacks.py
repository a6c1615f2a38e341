"""Trainer callbacks: plugin hooks for logged metrics, and the progress display on the main process.

This module imports transformers at the top: only the training run imports it, never plugin loading.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from voxplug.training.monitoring import LIVE_KEYS

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from voxplug.plugins import PluginHost

logger = logging.getLogger("voxplug.training")

_SHOWN_KEYS = ("loss", "eval_loss", "eval_wer", "eval_cer", "learning_rate", "grad_norm", *LIVE_KEYS)


def numeric_logs(logs: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a Trainer log dict, as floats."""
    return {key: float(value) for key, value in logs.items() if isinstance(value, (int, float))}


def format_log_line(logs: dict[str, float], step: int, max_steps: int) -> str:
    """``step 12/60  loss 3.412  eval_wer 0.450 ...``: one readable line per logged event."""
    parts = [f"step {step}/{max_steps}"]
    for key in _SHOWN_KEYS:
        if key in logs:
            value = logs[key]
            parts.append(f"{key} {value:.2e}" if key == "learning_rate" else f"{key} {value:.4f}")
    return "  ".join(parts)


class PluginHookCallback(TrainerCallback):
    """Fire the ``on_log`` hook on the main process for every logged event."""

    def __init__(self, host: PluginHost, run_dir: Path) -> None:
        self.host = host
        self.run_dir = run_dir

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        """Forward numeric metrics to plugins."""
        if state.is_world_process_zero and logs:
            self.host.on_log(logs=numeric_logs(logs), step=state.global_step, run_dir=self.run_dir)


class TrainingProgress(TrainerCallback):
    """A rich progress bar (step, loss, WER, ETA) on the main process of an interactive terminal.

    Without a terminal (CI, log files, a subprocess) it prints one line per logged event instead. Every
    logged event also goes to the ``voxplug.training`` logger, which the run writes to ``train.log``.
    """

    def __init__(self, *, show: bool = True) -> None:
        self.show = show
        self._progress: Any = None
        self._task: Any = None
        self._console: Any = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the bar at the current step (non-zero when resuming)."""
        if not (self.show and state.is_world_process_zero):
            return
        from rich.console import Console

        self._console = Console(file=sys.stderr)
        if self._console.is_terminal:
            self._progress = _rich_progress(self._console)
            self._progress.start()
            self._task = self._progress.add_task(
                "training", total=state.max_steps, completed=state.global_step, metrics=""
            )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Advance the bar."""
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        """Show the latest metrics and write them to the run log."""
        if not (state.is_world_process_zero and logs):
            return
        line = format_log_line(numeric_logs(logs), state.global_step, state.max_steps)
        logger.info(line)
        metrics = line.partition("  ")[2]
        if self._progress is not None and metrics:  # a log without shown metrics keeps the last ones on the bar
            self._progress.update(self._task, metrics=metrics)
        elif self._console is not None and self._progress is None:
            self._console.print(line, highlight=False)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Close the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _rich_progress(console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=console,
    )


class RunLog:
    """Copy voxplug's and transformers' log records to ``train.log`` in the run folder (main process only)."""

    LOGGERS = ("voxplug", "transformers")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler: logging.Handler | None = None

    def __enter__(self) -> RunLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self.handler)
        voxplug_logger = logging.getLogger("voxplug")
        if voxplug_logger.getEffectiveLevel() > logging.INFO:
            voxplug_logger.setLevel(logging.INFO)  # transformers keeps its own level (warnings and up)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self.handler)
            self.handler.close()
