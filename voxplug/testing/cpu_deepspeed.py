"""Run accelerate + DeepSpeed on CPU ranks, for tests only (never in a real run).

accelerate 1.15's ``PartialState._prepare_backend`` returns no backend when CUDA is absent, so
``accelerate launch --use_deepspeed --num_processes 2`` on a CPU machine ends up with one process per
"world" and DeepSpeed's batch-size check fails (``16 != 16 * 1 * 2``). DeepSpeed itself trains fine on CPU
over gloo. The patch below makes accelerate pick gloo for DeepSpeed ranks when CUDA is missing.

It is applied inside each launched process when ``VOXPLUG_TEST_CPU_DEEPSPEED=1`` is set (see
:func:`voxplug.training.processes.prepare_process`), and does nothing when CUDA is available.
"""

from __future__ import annotations

import os
from typing import Any

_PATCHED = "_voxplug_cpu_deepspeed_patch"


def patch_accelerate_for_cpu_deepspeed() -> bool:
    """Make accelerate use gloo for DeepSpeed ranks without CUDA; returns True when the patch is active."""
    import torch
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    if torch.cuda.is_available():
        return False
    original = PartialState._prepare_backend
    if getattr(original, _PATCHED, False):
        return True

    def prepare_backend(self: Any, cpu: bool = False, sagemaker_dp: bool = False, backend: str | None = None) -> Any:
        chosen, distributed_type = original(self, cpu, sagemaker_dp, backend)
        launched_with_deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        if chosen is None and launched_with_deepspeed and int(os.environ.get("LOCAL_RANK", -1)) != -1:
            return "gloo", DistributedType.MULTI_CPU
        return chosen, distributed_type

    setattr(prepare_backend, _PATCHED, True)
    PartialState._prepare_backend = prepare_backend
    return True
