"""What the machine can do: CUDA, bfloat16, DeepSpeed asked for by the launcher, and the precision that follows.

These are facts, read where the run decides (:mod:`voxplug.training.context`); what a run does with them is
decided there.
"""

from __future__ import annotations

import os

from voxplug.errors import TrainingError

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


def cpu_deepspeed_allowed() -> bool:
    """True where the test suite allows DeepSpeed on CPU ranks (:data:`ENV_CPU_DEEPSPEED`)."""
    return bool(os.environ.get(ENV_CPU_DEEPSPEED))


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
