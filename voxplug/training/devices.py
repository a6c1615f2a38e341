"""What the machine can do, and one clear error for options it cannot honour (GPU-only settings on a CPU).

Checked before any data or model is loaded, on every rank, so a bad combination fails in a second rather than
after minutes of loading.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from voxplug.errors import TrainingError

if TYPE_CHECKING:
    from voxplug.config import RunConfig

#: Set by the test suite to allow DeepSpeed on CPU ranks (:func:`voxplug.testing.cpu_deepspeed.cpu_deepspeed_env`).
ENV_CPU_DEEPSPEED = "VOXPLUG_TEST_CPU_DEEPSPEED"


def cuda_available() -> bool:
    """True when PyTorch sees at least one CUDA device."""
    import torch

    return torch.cuda.is_available()


def bf16_supported() -> bool:
    """True when the CUDA device supports bfloat16 (Ampere or newer)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def deepspeed_requested() -> bool:
    """True when this process was started by ``accelerate launch`` with DeepSpeed."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def deepspeed_wanted(config: RunConfig) -> bool:
    """True when the run uses DeepSpeed: ``training.deepspeed`` is set or ``accelerate launch`` asked for it."""
    return bool(config.training.deepspeed) or deepspeed_requested()


def resolve_precision(requested: str) -> str:
    """Turn ``training.precision`` into ``"bf16"``, ``"fp16"`` or ``"fp32"`` for this machine.

    ``auto`` is bf16 on CUDA devices that support it, fp16 on older CUDA devices and fp32 on CPU. Asking for
    bf16 or fp16 without a CUDA device is an error rather than a silent switch.
    """
    if requested == "auto":
        if not cuda_available():
            return "fp32"
        return "bf16" if bf16_supported() else "fp16"
    if requested in ("bf16", "fp16") and not cuda_available():
        raise TrainingError(
            f"training.precision={requested} needs a CUDA GPU and this machine has none; "
            "use training.precision=auto (fp32 on CPU) or fp32"
        )
    if requested == "bf16" and not bf16_supported():
        raise TrainingError("training.precision=bf16 needs an Ampere or newer GPU; use training.precision=fp16 or auto")
    return requested


def check_device_options(config: RunConfig) -> None:
    """Raise :class:`TrainingError` for options this machine cannot run, naming the config key and the fix."""
    resolve_precision(config.training.precision)
    compile_enabled(config)
    if cuda_available():
        return
    gpu_only = {
        "model.attn_implementation=flash_attention_2": config.model.attn_implementation == "flash_attention_2",
        "model.dtype=fp16": config.model.dtype == "fp16",
        "training.optim=adamw_8bit": config.training.optim == "adamw_8bit",
    }
    for option, chosen in gpu_only.items():
        if chosen:
            raise TrainingError(f"{option} needs a CUDA GPU and this machine has none; remove it to train on CPU")
    wants_deepspeed = deepspeed_wanted(config)
    if wants_deepspeed and not os.environ.get(ENV_CPU_DEEPSPEED):
        raise TrainingError(
            "DeepSpeed needs CUDA GPUs and this machine has none; on CPU run several processes with "
            "`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m voxplug train ...` "
            "(DDP over gloo)"
        )


#: Optimizer steps from which ``training.compile: null`` (auto) compiles: about where the minutes spent compiling
#: are paid back by faster steps (the measurements are in benchmarks/NOTES.md).
COMPILE_AUTO_MIN_STEPS = 2000


def compile_enabled(config: RunConfig, total_steps: int | None = None) -> bool:
    """Whether the run compiles the model's repeated blocks: ``training.compile``, where ``None`` (auto) means "on
    with a CUDA GPU in a single process for a run of at least :data:`COMPILE_AUTO_MIN_STEPS` optimizer steps" (off
    when ``total_steps`` is not known). Compiling has run on one GPU only; DeepSpeed's engine would compile blocks
    in place, generation included, so it is refused there."""
    from voxplug.training.processes import launched_world_size

    wants_deepspeed = deepspeed_wanted(config)
    if config.training.compile is None:
        long_enough = total_steps is not None and total_steps >= COMPILE_AUTO_MIN_STEPS
        return long_enough and cuda_available() and not wants_deepspeed and launched_world_size() == 1
    if config.training.compile and wants_deepspeed:
        raise TrainingError(
            "training.compile=true is not supported under DeepSpeed (its engine would compile generation too); "
            "remove it or set training.compile=false"
        )
    return config.training.compile


def fused_kernels_enabled(config: RunConfig, precision: str) -> bool:
    """Whether the family's fused kernels are applied: ``training.fused_kernels``, on a GPU precision (the kernels
    are CUDA-only; bf16/fp16 means a CUDA device here), and not when compiling (the compiler fuses instead)."""
    return config.training.fused_kernels and precision != "fp32" and not compile_enabled(config)


def cuda_graphs_possible(config: RunConfig) -> bool:
    """Whether layers may be replayed as CUDA graphs: a CUDA GPU, one process, and none of compile (it has graphs of
    its own), DeepSpeed (ZeRO-3 gathers weights into new places every step) or gradient checkpointing (recomputing
    inside a captured backward is untested)."""
    from voxplug.training.processes import launched_world_size

    return (
        cuda_available()
        and launched_world_size() == 1
        and not deepspeed_wanted(config)
        and not compile_enabled(config)
        and not config.training.gradient_checkpointing
    )
