"""Which process this is, under ``accelerate launch``/``torchrun`` or alone, before and after accelerate starts."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True on the global rank-0 process (and when running alone)."""
    from accelerate import PartialState

    if PartialState._shared_state:  # accelerate is initialised: trust it
        return PartialState().is_main_process
    return int(os.environ.get("RANK", "0")) == 0


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``), 1 when running alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def finish_processes() -> None:
    """Once the ranks' shared work is done (the model saved): wait for every rank, then close the process group.

    Only rank 0 goes on, to write the run files and publish, which needs no other rank. Closing the group first
    matters twice: a rank that left with the group open could fail in its teardown (a CPU ZeRO-3 test run once
    ended with SIGABRT on rank 1, and the launcher then killed rank 0 in the middle of its work), and a barrier
    held across a long upload would time out. Alone (no process group), it does nothing.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
