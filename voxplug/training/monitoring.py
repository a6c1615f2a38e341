"""Resource monitoring of a training run: memory, GPU utilisation, throughput and the time of each stage.

:class:`ResourceMonitor` is a ``transformers.TrainerCallback`` that the run installs first among its callbacks.
On every logged event it adds its readings to the log dict in place, so the ``on_log`` hook, the terminal progress
line and the app (which parses those lines) all see them:

* ``gpu_mem_gb``, ``gpu_mem_reserved_gb``, ``gpu_mem_peak_gb``: this process's CUDA memory (``torch.cuda``);
* ``gpu_util_pct``: the GPU's utilisation, when ``nvidia-ml-py`` (``pynvml``) is installed;
* ``ram_gb``: this process's resident memory;
* ``samples_per_s`` and ``audio_s_per_s``: training throughput since the previous training log (evaluation time
  left out), audio seconds from the clips' durations;
* ``time_<stage>_s``: how long a stage took, once it finished (``data_loading``, ``model_loading``, ``training``,
  ``evaluation``, ``saving``). Stages before the loop ride on its first log; later ones are sent to the ``on_log``
  hook directly. ``publishing`` ends after ``after_train``, so it goes to ``train_results.json`` only.

:meth:`ResourceMonitor.results` is merged into ``train_results.json`` (and so into the model card): peak memory,
mean utilisation, overall throughput, ``stage_seconds`` and a ``hardware`` line. A stage that ends after the file
is written (``publishing``) is added to it then. Every finished stage is also printed (``stage training took
12.3 s``) and written to ``train.log``.

This module imports transformers at the top: only the training run imports it, never plugin loading.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from transformers import TrainerCallback

from voxplug.tempfiles import raise_if_interrupted

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from voxplug.plugins import PluginHost

logger = logging.getLogger("voxplug.training")
T = TypeVar("T")
GB = 1e9
STAGES = ("data_loading", "model_loading", "training", "evaluation", "saving", "publishing")
LIVE_KEYS = ("samples_per_s", "audio_s_per_s", "gpu_mem_gb", "gpu_mem_peak_gb", "gpu_util_pct")
"""The readings worth a place on the one-line progress display."""


def stage_key(stage: str) -> str:
    """The log key of a stage's duration: ``time_data_loading_s``."""
    return f"time_{stage}_s"


def gpu_memory() -> dict[str, float]:
    """This process's CUDA memory in GB (current, reserved, peak); empty without CUDA."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {
        "gpu_mem_gb": round(torch.cuda.memory_allocated() / GB, 3),
        "gpu_mem_reserved_gb": round(torch.cuda.memory_reserved() / GB, 3),
        "gpu_mem_peak_gb": round(torch.cuda.max_memory_allocated() / GB, 3),
    }


def gpu_utilisation() -> dict[str, float]:
    """The current GPU's utilisation in percent, through NVML; empty without CUDA in use or ``nvidia-ml-py``."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():  # never start CUDA just to ask
        return {}
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        handle = _nvml_handle(pynvml, torch.cuda.current_device())
        return {"gpu_util_pct": float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)}
    except pynvml.NVMLError:
        return {}


def _nvml_handle(pynvml: Any, device: int) -> Any:
    """NVML's handle of torch's ``device`` (matched by UUID: CUDA_VISIBLE_DEVICES renumbers devices)."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is not None:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(device)


def process_memory() -> dict[str, float]:
    """This process's resident memory in GB (psutil comes with accelerate); empty if it cannot be read."""
    try:
        import psutil

        return {"ram_gb": round(psutil.Process().memory_info().rss / GB, 3)}
    except (ImportError, OSError):
        return {}


def hardware_description() -> str:
    """``NVIDIA H100 80GB HBM3 × 2`` or ``CPU (16 cores)``: what the run trained on."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} × {torch.cuda.device_count()}"
    return f"CPU ({os.cpu_count()} cores)"


class ResourceMonitor(TrainerCallback):
    """Times the run's stages and adds resource readings to every log (see the module docstring)."""

    def __init__(
        self,
        host: PluginHost | None = None,
        run_dir: Path | None = None,
        *,
        show: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.host = host
        self.run_dir = run_dir
        self.show = show
        self.clock = clock
        self.stage_seconds: dict[str, float] = {}
        self._unlogged: list[str] = []
        self._results_written = False
        self._loop_started = False
        self._step = 0
        self._throughput = _Throughput(clock)
        self._utilisation: list[float] = []
        self._peak_gpu_gb = 0.0

    # -- stages ---------------------------------------------------------------------------------------------

    def timed(self, stage: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``function(*args, **kwargs)``, record how long it took as ``stage`` and return its result."""
        start = self.clock()
        result = function(*args, **kwargs)
        self._finish_stage(stage, self.clock() - start)
        return result

    def _finish_stage(self, stage: str, seconds: float) -> None:
        if stage == "training":  # evaluations inside the loop count as evaluation, not training
            inside = self._throughput.eval_seconds_total
            seconds -= inside
            self.stage_seconds["evaluation"] = self.stage_seconds.get("evaluation", 0.0) + inside
        self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0) + seconds, 3)
        if self._is_main():
            self._report_stage(stage)

    def _report_stage(self, stage: str) -> None:
        """Print and log a finished stage, and hand it to ``on_log`` or the results file, whichever comes next."""
        total = self.stage_seconds[stage]
        if self.show:
            print(f"stage {stage} took {total:.1f} s", file=sys.stderr, flush=True)
        logger.info("stage %s took %.1f s", stage, total)
        if self._results_written:  # after after_train: no more on_log, the results file is brought up to date
            self._add_to_results_file()
        elif not self._loop_started or self.host is None or self.run_dir is None:
            self._unlogged.append(stage)  # reported with the trainer's next log
        else:
            self.host.on_log(logs={stage_key(stage): total}, step=self._step, run_dir=self.run_dir)

    @staticmethod
    def _is_main() -> bool:
        from voxplug.training.processes import is_main_process

        return is_main_process()

    # -- trainer events -------------------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the throughput clock (from the current epoch when resuming)."""
        self._loop_started = True
        self._throughput.start(state.epoch or 0.0, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Re-raise an interrupt that C code swallowed (see :func:`voxplug.tempfiles.raise_if_interrupted`)."""
        raise_if_interrupted()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict | None = None,
        **kwargs: Any,
    ) -> None:
        """Add memory, utilisation, throughput and finished-stage readings to ``logs`` in place."""
        if logs is None:
            return
        self._step = state.global_step
        readings = {**gpu_memory(), **gpu_utilisation(), **process_memory()}
        if "eval_runtime" in logs:
            self._throughput.add_eval_time(float(logs["eval_runtime"]))
        elif "loss" in logs:
            readings.update(self._throughput.reading(state, args, kwargs.get("train_dataloader")))
        self._note_peaks(readings)
        readings.update({stage_key(stage): self.stage_seconds[stage] for stage in self._unlogged})
        self._unlogged.clear()
        logs.update(readings)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Take the final throughput (covering the whole loop) for :meth:`results`."""
        self._step = state.global_step
        self._throughput.finish(state, args, kwargs.get("train_dataloader"))

    def _note_peaks(self, readings: dict[str, float]) -> None:
        self._peak_gpu_gb = max(self._peak_gpu_gb, readings.get("gpu_mem_peak_gb", 0.0))
        if "gpu_util_pct" in readings:
            self._utilisation.append(readings["gpu_util_pct"])

    # -- results --------------------------------------------------------------------------------------------

    def results(self) -> dict[str, Any]:
        """What ``train_results.json`` records: peak memory, utilisation, throughput, stage times, hardware."""
        self._note_peaks(gpu_memory())
        found: dict[str, Any] = {**self._throughput.totals(), "stage_seconds": dict(self.stage_seconds)}
        if self._peak_gpu_gb:
            found["gpu_mem_peak_gb"] = round(self._peak_gpu_gb, 3)
        if self._utilisation:
            found["gpu_util_mean_pct"] = round(sum(self._utilisation) / len(self._utilisation), 1)
        found["hardware"] = hardware_description()
        self._results_written = True
        return found

    def _add_to_results_file(self) -> None:
        """Bring ``stage_seconds`` of ``train_results.json`` up to date (a stage that ended after it was written)."""
        assert self.run_dir is not None
        path = self.run_dir / "train_results.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        data["stage_seconds"] = dict(self.stage_seconds)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


class _Throughput:
    """Samples and audio seconds per second of training time, between logs and over the whole loop."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.eval_seconds_total = 0.0
        self._eval_since_mark = 0.0
        self._mark: tuple[float, float, int] = (0.0, 0.0, 0)
        self._begin: tuple[float, float, int] = (0.0, 0.0, 0)
        self._eval_at_begin = 0.0
        self._mean_clip_s: float | None = None
        self._totals: dict[str, float] = {}

    def start(self, epoch: float, step: int) -> None:
        """The loop starts (or resumes) at ``epoch`` / ``step``."""
        self._begin = self._mark = (self.clock(), epoch, step)
        self._eval_at_begin = self.eval_seconds_total
        self._eval_since_mark = 0.0

    def add_eval_time(self, seconds: float) -> None:
        """An evaluation inside the loop took ``seconds``: not training time."""
        self.eval_seconds_total += seconds
        self._eval_since_mark += seconds

    def reading(self, state: TrainerState, args: TrainingArguments, dataloader: Any) -> dict[str, float]:
        """Throughput since the previous training log."""
        now = (self.clock(), state.epoch or 0.0, state.global_step)
        found = self._rate(self._mark, now, self._eval_since_mark, args, dataloader)
        self._mark, self._eval_since_mark = now, 0.0
        return found

    def finish(self, state: TrainerState, args: TrainingArguments, dataloader: Any) -> None:
        """Throughput over the whole loop, for :meth:`totals`."""
        now = (self.clock(), state.epoch or 0.0, state.global_step)
        rate = self._rate(self._begin, now, self.eval_seconds_total - self._eval_at_begin, args, dataloader)
        self._totals = {f"train_{key}": value for key, value in rate.items()}

    def totals(self) -> dict[str, float]:
        """``train_samples_per_s`` and ``train_audio_s_per_s`` over the loop (empty before it ended)."""
        return dict(self._totals)

    def _rate(
        self,
        since: tuple[float, float, int],
        now: tuple[float, float, int],
        eval_seconds: float,
        args: TrainingArguments,
        dataloader: Any,
    ) -> dict[str, float]:
        seconds = now[0] - since[0] - eval_seconds
        samples = self._samples(since, now, args, dataloader)
        if seconds <= 0 or samples <= 0:
            return {}
        found = {"samples_per_s": round(samples / seconds, 3)}
        mean_clip = self._mean_clip_seconds(dataloader)
        if mean_clip:
            found["audio_s_per_s"] = round(samples * mean_clip / seconds, 3)
        return found

    @staticmethod
    def _samples(
        since: tuple[float, float, int], now: tuple[float, float, int], args: TrainingArguments, dataloader: Any
    ) -> float:
        """Samples trained on between two points: epochs done × dataset size, else steps × global batch."""
        size = _dataset_size(dataloader)
        if size and now[1] > since[1]:
            return (now[1] - since[1]) * size
        global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        return (now[2] - since[2]) * global_batch

    def _mean_clip_seconds(self, dataloader: Any) -> float | None:
        if self._mean_clip_s is None:
            durations = getattr(getattr(dataloader, "dataset", None), "durations", None)
            values = [value for value in durations() if value] if callable(durations) else []
            self._mean_clip_s = sum(values) / len(values) if values else 0.0
        return self._mean_clip_s or None


def _dataset_size(dataloader: Any) -> int:
    try:
        return len(dataloader.dataset)
    except (AttributeError, TypeError):
        return 0
