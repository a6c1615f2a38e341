"""Run accelerate + DeepSpeed on CPU ranks, for tests only (never in a real run).

accelerate 1.15's ``PartialState._prepare_backend`` returns no backend when CUDA is absent, so
``accelerate launch --use_deepspeed --num_processes 2`` on a CPU machine ends up with one process per
"world" and DeepSpeed's batch-size check fails (``16 != 16 * 1 * 2``). DeepSpeed itself trains fine on CPU
over gloo. The patch below makes accelerate pick gloo for DeepSpeed ranks when CUDA is missing.

A test installs it in the processes it launches with :func:`cpu_deepspeed_env`: a local plugin file that applies
the patch when the plugins load, before accelerate starts. It does nothing when CUDA is available.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from voxplug.plugins import ENV_PLUGINS_DIR
from voxplug.training.devices import ENV_CPU_DEEPSPEED

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


PLUGIN_SOURCE = """from voxplug.testing.cpu_deepspeed import patch_accelerate_for_cpu_deepspeed

patch_accelerate_for_cpu_deepspeed()
"""


def cpu_deepspeed_env(folder: Path) -> dict[str, str]:
    """Environment for ``accelerate launch`` that lets DeepSpeed run on CPU ranks; writes its plugin into ``folder``.

    Every launched process loads the plugins of ``VOXPLUG_PLUGINS_DIR`` when the command line starts, so the patch is
    in place before accelerate picks a backend; ``VOXPLUG_TEST_CPU_DEEPSPEED`` lifts the check that refuses
    DeepSpeed on a machine without CUDA.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "voxplug_cpu_deepspeed.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    return {ENV_CPU_DEEPSPEED: "1", ENV_PLUGINS_DIR: str(folder)}
