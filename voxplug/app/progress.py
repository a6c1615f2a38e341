"""Training progress as the app shows it: the step, the total, and loss/WER curves.

Two sources, one shape:

* live, from the run's output stream: ``voxplug train`` prints one line per logged event when it is not
  attached to a terminal (``voxplug.training.callbacks.format_log_line``), e.g.
  ``step 12/60  loss 3.4120  eval_wer 0.4500``; :meth:`TrainingProgress.feed` parses those lines;
* afterwards, from the run folder: ``trainer_state.json``'s ``log_history`` and ``global_step``/``max_steps``
  (:func:`progress_from_run_dir`), so a finished run or one started before a server restart still has its curves.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_LINE = re.compile(r"\bstep (\d+)/(\d+)\b(.*)$")
METRIC_PAIR = re.compile(r"\b([a-z][a-z0-9_]*) (-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf))\b", re.IGNORECASE)
PLOTTED_METRICS = ("loss", "eval_loss", "eval_wer", "eval_cer")
"""The metrics drawn in the loss/WER plot."""
RESOURCE_READINGS = (("samples_per_s", "{:.2f} samples/s"), ("audio_s_per_s", "{:.1f} audio s/s"),
                     ("gpu_mem_gb", "GPU {:.1f} GB"), ("gpu_util_pct", "GPU busy {:.0f} %"))  # fmt: skip
"""Resource readings the run logs (voxplug.training.monitoring) and how the progress caption shows them."""


@dataclass(frozen=True)
class MetricPoint:
    """One logged value of one metric at one optimizer step."""

    step: int
    metric: str
    value: float


@dataclass
class TrainingProgress:
    """Steps done, total steps and the logged metrics of one run; safe to read while another thread feeds it."""

    step: int = 0
    max_steps: int = 0
    points: list[MetricPoint] = field(default_factory=list)
    readings: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def feed(self, line: str) -> bool:
        """Parse one output line; returns True when it was a progress line."""
        match = STEP_LINE.search(line)
        if not match:
            return False
        step, total, rest = int(match.group(1)), int(match.group(2)), match.group(3)
        with self._lock:
            self.step = max(self.step, step)
            self.max_steps = max(self.max_steps, total)
            for name, raw in METRIC_PAIR.findall(rest):
                self._add(step, name, float(raw))
        return True

    def _add(self, step: int, metric: str, value: float) -> None:
        if metric in PLOTTED_METRICS and math.isfinite(value):
            self.points.append(MetricPoint(step, metric, value))
        elif any(metric == name for name, _shown in RESOURCE_READINGS):
            self.readings[metric] = value

    def resources_caption(self) -> str:
        """The latest resource readings, e.g. ``2.10 samples/s · 6.3 audio s/s · GPU 12.1 GB`` (empty if none)."""
        with self._lock:
            readings = dict(self.readings)
        return " · ".join(shown.format(readings[name]) for name, shown in RESOURCE_READINGS if name in readings)

    def mark_complete(self) -> None:
        """The run ended successfully: the bar shows 100 %."""
        with self._lock:
            if self.max_steps:
                self.step = self.max_steps

    @property
    def fraction(self) -> float:
        """Share of the steps done, 0 to 1 (0 while the total is unknown)."""
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0

    def latest(self, metric: str) -> float | None:
        """The last logged value of ``metric``, or None."""
        with self._lock:
            values = [point.value for point in self.points if point.metric == metric]
        return values[-1] if values else None

    def rows(self) -> list[dict[str, Any]]:
        """The points as ``{"step", "metric", "value"}`` rows, for a line plot."""
        with self._lock:
            return [{"step": p.step, "metric": p.metric, "value": p.value} for p in self.points]


def progress_from_run_dir(run_dir: Path) -> TrainingProgress | None:
    """A run's progress from ``trainer_state.json`` in ``run_dir`` (or its newest checkpoint); None if absent."""
    state = _read_trainer_state(Path(run_dir))
    if state is None:
        return None
    progress = TrainingProgress(step=int(state.get("global_step") or 0), max_steps=int(state.get("max_steps") or 0))
    for entry in state.get("log_history") or []:
        step = entry.get("step")
        if isinstance(step, int):
            for metric in PLOTTED_METRICS:
                value = entry.get(metric)
                if isinstance(value, (int, float)):
                    progress._add(step, metric, float(value))
    return progress


def _read_trainer_state(run_dir: Path) -> dict[str, Any] | None:
    candidates = [run_dir / "trainer_state.json"]
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir():
        candidates += sorted(checkpoints.glob("checkpoint-*/trainer_state.json"), key=lambda p: p.stat().st_mtime)[::-1]
    for path in candidates:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
    return None
