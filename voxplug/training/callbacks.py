"""Trainer callbacks: plugin hooks for logged metrics, and the progress display on the main process.

This module imports transformers at the top: only the training run imports it, never plugin loading.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
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


class ProgressDisplay(TrainerCallback):
    """Progress on the main process: a bar in an interactive terminal, one line per logged event elsewhere.

    ``mode`` is ``auto`` (the bar in a terminal, lines elsewhere), ``lines`` (lines always: ``--no-progress``) or
    ``off``. The bar takes two rows, so that it reads at any width: the step count, the bar and the ETA on the
    first, the latest metrics on the second, cut short with an ellipsis where the terminal ends. Lines are
    written whole, never wrapped, whatever the width (the app parses them). Every logged event also goes to the
    ``voxplug.training`` logger, which the run writes to ``train.log``. :meth:`close` stops the bar and shows the
    cursor again; the run calls it however it ends (an interruption included).
    """

    def __init__(self, *, mode: str = "auto") -> None:
        self.mode = mode
        self._progress: Any = None
        self._task: Any = None
        self._latest: dict[str, float] = {}

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the bar at the current step (non-zero when resuming)."""
        if self.mode != "auto" or not state.is_world_process_zero:
            return
        console = Console(file=sys.stderr)
        if console.is_terminal:
            self._progress = TwoRowProgress(console)
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
        values = numeric_logs(logs)
        line = format_log_line(values, state.global_step, state.max_steps)
        logger.info(line)
        if self._progress is not None:  # the bar shows the latest value of each metric, training and eval alike
            self._latest.update({key: value for key, value in values.items() if key in _SHOWN_KEYS})
            metrics = format_log_line(self._latest, state.global_step, state.max_steps).partition("  ")[2]
            self._progress.update(self._task, metrics=metrics)
        elif self.mode != "off" and "  " in line:  # a log with none of the shown metrics is not worth a line
            print(line, file=sys.stderr, flush=True)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Close the bar."""
        self.close()

    def close(self) -> None:
        """Stop the bar (the cursor shows again); nothing when no bar is running."""
        if self._progress is not None:
            progress, self._progress = self._progress, None
            progress.stop()


class TwoRowProgress(Progress):
    """``training ━━━━━ 12/40 0:00:03 eta 0:00:07`` over a row of metrics cut short at the terminal's width."""

    def __init__(self, console: Console) -> None:
        super().__init__(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            expand=True,
        )

    def get_renderables(self) -> Iterator[RenderableType]:
        """The bar's table, then each task's metrics on one row of their own."""
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            yield Text(str(task.fields.get("metrics", "")), no_wrap=True, overflow="ellipsis")


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
