"""Load a Whisper model and its processor from the Hub or a local folder, with errors a user can act on.

Works for ``openai/whisper-*`` (English-only ``.en`` and multilingual), distil-whisper, fine-tunes of them, and
folders written by ``voxplug model import-ct2`` or :func:`voxplug_whisper.tiny.build_tiny_whisper`. Every
failure is raised as :class:`voxplug.errors.ModelError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.api import ModelError, contiguous_residual_stream

if TYPE_CHECKING:
    import torch

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
ATTN_CHOICES = (None, "sdpa", "eager", "flash_attention_2")


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; a CUDA device on a machine without one is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but this machine has no CUDA device; use device='cpu'")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float32 on CPU and bfloat16 (or float16 on GPUs without it) on CUDA; fp16 on CPU is an error."""
    import torch

    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}: choose auto, {', '.join(DTYPES)}")
    if dtype == "fp16" and device.type == "cpu":
        raise ModelError("dtype='fp16' does not run on CPU; use 'fp32' (or 'bf16' on CPUs with native bfloat16)")
    return getattr(torch, DTYPES[dtype])


def check_whisper_config(name_or_path: str) -> Any:
    """The checkpoint's ``WhisperConfig``; any other ``model_type`` is an error naming it."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the config of {name_or_path!r} (a Whisper folder or Hub id): {exc}") from exc
    if config.model_type != "whisper":
        raise ModelError(
            f"{name_or_path!r} is a {config.model_type!r} model, not a Whisper one (config.json model_type "
            "must be 'whisper'; for a CTranslate2/faster-whisper folder run `voxplug model import-ct2` first)"
        )
    return config


def load_whisper_processor(name_or_path: str) -> Any:
    """The checkpoint's ``WhisperProcessor`` (feature extractor + tokenizer)."""
    from transformers import WhisperProcessor

    try:
        return WhisperProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            f"cannot load the Whisper processor of {name_or_path!r} (expected preprocessor_config.json or "
            f"processor_config.json and tokenizer files): {exc}"
        ) from exc


def load_whisper(
    name_or_path: str,
    *,
    dtype: str = "auto",
    attn_implementation: str | None = None,
    device: str = "auto",
    hub_kernels: bool = False,
) -> tuple[Any, Any]:
    """Load ``(WhisperForConditionalGeneration, WhisperProcessor)``; the config is checked before the weights.

    ``hub_kernels`` lets transformers fetch and run kernels from the Hub at load; it stays off unless asked.
    """
    from transformers import WhisperForConditionalGeneration

    if attn_implementation not in ATTN_CHOICES:
        raise ModelError(
            f"unknown attn_implementation {attn_implementation!r}: choose sdpa, eager or flash_attention_2"
        )
    name = str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().is_dir() else name_or_path
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    config = check_whisper_config(name)
    processor = load_whisper_processor(name)
    try:
        model = WhisperForConditionalGeneration.from_pretrained(
            name, config=config, dtype=torch_dtype, attn_implementation=attn_implementation, use_kernels=hub_kernels
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelError(f"cannot load the Whisper weights of {name!r}: {exc}") from exc
    contiguous_residual_stream(model.model.encoder)
    return model.to(resolved_device), processor
