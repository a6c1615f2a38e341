"""Load a Voxtral Realtime model and its processor from the Hub or a local folder, with errors a user can act on.

Works for ``mistralai/Voxtral-Mini-4B-Realtime-2602``, fine-tunes of it, and local folders (for example one
written by :func:`voxplug_voxtral_realtime.tiny.build_tiny_voxtral_realtime`). Hub kernels stay off
(``use_kernels=False``): nothing is fetched or run from the Hub beyond the checkpoint itself. Every failure is
raised as :class:`voxplug.errors.ModelError`.

The processor's default delay is the ``transcription_delay_ms`` of its ``tekken.json``. :func:`set_default_delay`
changes it in memory (training at one chosen delay does), and the processor this module returns writes that delay
into the ``tekken.json`` it saves, so a fine-tuned folder transcribes at its trained delay by default, in
transformers and in vLLM alike.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug_voxtral.loading import (
    check_attn_implementation,
    checkpoint_source,
    describe_hub_failure,
    resolve_device,
    resolve_dtype,
)

from voxplug.api import ModelError, contiguous_residual_stream

if TYPE_CHECKING:
    import torch

MODEL_TYPE = "voxtral_realtime"
PROCESSOR_ONLY_FILES = ("tekken.json", "processor_config.json")
MIN_DELAY_MS = 80
MAX_DELAY_MS = 2400


def load_realtime_config(name_or_path: str | Path, *, local_files_only: bool = False) -> Any:
    """Load the checkpoint's config, check it is a Voxtral Realtime one, and return it."""
    from transformers import AutoConfig

    name = checkpoint_source(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        if Path(name).is_dir():
            raise ModelError(f"cannot read {Path(name) / 'config.json'}: {error}") from error
        raise ModelError(describe_hub_failure(name, error, local_files_only=local_files_only)) from error
    if config.model_type != MODEL_TYPE:
        raise ModelError(
            f"{name!r} is a {config.model_type!r} model, not a Voxtral Realtime one "
            f"(config.json model_type must be {MODEL_TYPE!r}; offline Voxtral checkpoints use model.family=voxtral)"
        )
    return config


def load_realtime_processor(name_or_path: str | Path, *, local_files_only: bool = False) -> Any:
    """Load the ``VoxtralRealtimeProcessor``, check its tokenizer streams, and make it save its default delay.

    A checkpoint folder or Hub id loads through ``AutoProcessor``; a folder with only the processor's files (a LoRA
    adapter folder: ``tekken.json`` and ``processor_config.json``, no ``config.json``) loads them directly.
    """
    from transformers import AutoProcessor, VoxtralRealtimeProcessor

    local = Path(str(name_or_path)).expanduser()
    processor_only = local.is_dir() and not (local / "config.json").is_file()
    if processor_only and not all((local / name).is_file() for name in PROCESSOR_ONLY_FILES):
        raise ModelError(f"{local} has no config.json, nor the processor files {', '.join(PROCESSOR_ONLY_FILES)}")
    name = str(local) if processor_only else checkpoint_source(name_or_path)
    try:
        if processor_only:
            processor = VoxtralRealtimeProcessor.from_pretrained(name, mistral_format=True)
        else:
            processor = AutoProcessor.from_pretrained(name, local_files_only=local_files_only)
    except (OSError, ValueError, ImportError) as error:
        raise ModelError(f"cannot load the Voxtral Realtime processor of {name!r}: {error}") from error
    tokenizer_class = type(getattr(processor, "tokenizer", None)).__name__
    if type(processor).__name__ != "VoxtralRealtimeProcessor" or tokenizer_class != "MistralCommonBackend":
        raise ModelError(
            f"{name!r} gave a {type(processor).__name__} with a {tokenizer_class} tokenizer; Voxtral Realtime needs "
            "a VoxtralRealtimeProcessor with MistralCommonBackend (install mistral-common[audio] and keep "
            "config.json beside tekken.json)"
        )
    if not processor.mistral_common_audio_config.is_streaming:
        raise ModelError(f"{name!r}: its tekken.json audio section is not a streaming one (transcription_format)")
    processor.save_pretrained = partial(save_processor_with_delay, processor)
    return processor


def default_delay_ms(processor: Any) -> int:
    """The delay the processor transcribes at unless told otherwise (its ``transcription_delay_ms``)."""
    return int(processor.mistral_common_audio_config.transcription_delay_ms)


def delay_frames(processor: Any, delay_ms: int) -> int:
    """The number of 80 ms delay tokens for ``delay_ms`` (mistral-common's ``get_num_delay_tokens``)."""
    check_delay_ms(processor, delay_ms)
    return int(processor.mistral_common_audio_config.get_num_delay_tokens(delay_ms))


def check_delay_ms(processor: Any, delay_ms: int) -> None:
    """Raise ModelError unless ``delay_ms`` is a multiple of the frame length within the model's 80-2400 ms."""
    frame_ms = processor.mistral_common_audio_config.frame_duration_ms
    if not MIN_DELAY_MS <= delay_ms <= MAX_DELAY_MS or delay_ms % frame_ms:
        raise ModelError(
            f"delay {delay_ms} ms: Voxtral Realtime takes a multiple of {frame_ms:g} ms from {MIN_DELAY_MS} to "
            f"{MAX_DELAY_MS} ms"
        )


def set_default_delay(processor: Any, delay_ms: int) -> None:
    """Make ``processor`` prompt, pad and transcribe at ``delay_ms`` by default (and save it so)."""
    check_delay_ms(processor, delay_ms)
    processor.mistral_common_audio_config.transcription_delay_ms = float(delay_ms)


def save_processor_with_delay(processor: Any, save_directory: str | Path, **kwargs: Any) -> Any:
    """``processor.save_pretrained``, with the in-memory default delay written into the saved ``tekken.json``."""
    result = type(processor).save_pretrained(processor, save_directory, **kwargs)
    tekken = Path(save_directory) / "tekken.json"
    if tekken.is_file():
        document = json.loads(tekken.read_text(encoding="utf-8"))
        audio = document.get("audio") or {}
        delay = default_delay_ms(processor)
        if audio.get("transcription_delay_ms") != delay:
            audio["transcription_delay_ms"] = delay
            scratch = tekken.with_name(tekken.name + ".partial")
            scratch.write_text(json.dumps(document), encoding="utf-8")
            scratch.replace(tekken)
    return result


def load_realtime(
    name_or_path: str | Path,
    *,
    dtype: str = "auto",
    attn_implementation: str | None = None,
    device: str | torch.device | None = None,
    local_files_only: bool = False,
    hub_kernels: bool = False,
) -> tuple[Any, Any]:
    """Load ``(VoxtralRealtimeForConditionalGeneration, VoxtralRealtimeProcessor)`` from a Hub id or a folder.

    ``dtype`` is one of ``auto``/``bf16``/``fp16``/``fp32``; ``device`` (``None`` or ``"auto"``) defaults to CUDA
    when available; ``attn_implementation`` is ``None``, ``sdpa``, ``eager`` or ``flash_attention_2``. The config
    and processor are checked before the weights are read. ``hub_kernels`` lets transformers fetch and run kernels
    from the Hub at load; it stays off unless asked.
    """
    from transformers import VoxtralRealtimeForConditionalGeneration

    resolved_device = resolve_device(device)
    config = load_realtime_config(name_or_path, local_files_only=local_files_only)
    torch_dtype = resolve_dtype(dtype, resolved_device, getattr(config, "dtype", None))
    check_attn_implementation(attn_implementation, resolved_device, torch_dtype)
    processor = load_realtime_processor(name_or_path, local_files_only=local_files_only)
    source = checkpoint_source(name_or_path)
    extra: dict[str, Any] = {"device_map": {"": str(resolved_device)}} if resolved_device.type == "cuda" else {}
    try:
        model = VoxtralRealtimeForConditionalGeneration.from_pretrained(
            source,
            config=config,
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
            local_files_only=local_files_only,
            use_kernels=hub_kernels,
            **extra,
        )
    except (OSError, ValueError, ImportError) as error:
        raise ModelError(f"cannot load the Voxtral Realtime weights of {source!r}: {error}") from error
    if resolved_device.type != "cuda":
        model = model.to(resolved_device)
    contiguous_residual_stream(model.model.audio_tower)  # its embedder permutes the convolutions' output too
    return model, processor
