"""Which process this is, under ``accelerate launch``/``torchrun`` or alone, before and after accelerate starts."""

from __future__ import annotations

import os

from voxplug.training.devices import ENV_CPU_DEEPSPEED


def is_main_process() -> bool:
    """True on the global rank-0 process (and when running alone)."""
    from accelerate import PartialState

    if PartialState._shared_state:  # accelerate is initialised: trust it
        return PartialState().is_main_process
    return int(os.environ.get("RANK", "0")) == 0


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``), 1 when running alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def prepare_process() -> None:
    """Per-process setup before accelerate initialises; today only the test suite's CPU DeepSpeed patch."""
    if os.environ.get(ENV_CPU_DEEPSPEED):
        from voxplug.testing.cpu_deepspeed import patch_accelerate_for_cpu_deepspeed

        patch_accelerate_for_cpu_deepspeed()
