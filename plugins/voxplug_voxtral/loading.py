"""Load a Voxtral model and its processor from the Hub or a local folder, with errors a user can act on.

Works for ``mistralai/Voxtral-Mini-3B-2507``, ``mistralai/Voxtral-Small-24B-2507``, any fine-tuned Voxtral
repository and local folders (for example one written by :func:`voxplug_voxtral.tiny.build_tiny_voxtral`).
Every failure is raised as :class:`voxplug.errors.ModelError`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.api import ModelError, contiguous_residual_stream

if TYPE_CHECKING:
    import torch

DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32")
ATTN_CHOICES = (None, "sdpa", "eager", "flash_attention_2")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
#: The parts a 4-bit base keeps in the load dtype: the audio encoder and projector (a few percent of the weights,
#: through which every audio feature passes) and the output head (not a ``Linear`` that LoRA adapts).
UNQUANTIZED_PARTS = ("model.audio_tower", "model.multi_modal_projector", "lm_head")
TOKENIZER_FILES = ("tekken.json",)


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); emulated bf16 is too slow to train."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return the torch device to load onto: ``None`` or ``"auto"`` means CUDA when available, else CPU."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ModelError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N' ({error})") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but CUDA is not available on this machine; use device='cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ModelError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return resolved


def resolve_dtype(dtype: str, device: torch.device, checkpoint_dtype: Any = None) -> torch.dtype:
    """Map ``auto``/``bf16``/``fp16``/``fp32`` to a torch dtype that ``device`` can run, or raise ModelError.

    ``auto`` is float32 on CPU, and on CUDA the checkpoint's own dtype (bfloat16 for Mistral's Voxtral
    checkpoints), falling back to float32 when the GPU has no bfloat16.
    """
    import torch

    if dtype not in DTYPE_CHOICES:
        raise ModelError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    if dtype == "auto":
        return _auto_dtype(device, checkpoint_dtype)
    if device.type == "cpu" and dtype == "fp16":
        raise ModelError(
            "dtype='fp16' is not supported on CPU (half-precision matmuls are missing or very slow); "
            "use 'fp32' or 'bf16'"
        )
    if dtype == "bf16":
        _check_bf16(device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]


def _auto_dtype(device: torch.device, checkpoint_dtype: Any) -> torch.dtype:
    import torch

    if device.type != "cuda":
        return torch.float32
    wanted = _as_torch_dtype(checkpoint_dtype) or torch.float32
    if wanted == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float32
    return wanted


def _as_torch_dtype(value: Any) -> torch.dtype | None:
    import torch

    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype):
        return getattr(torch, value)
    return None


def _check_bf16(device: torch.device) -> None:
    import torch

    if device.type == "cpu" and not cpu_supports_bf16():
        raise ModelError("dtype='bf16' requested but this CPU has no native bfloat16 (AVX512-BF16/AMX); use 'fp32'")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise ModelError(f"dtype='bf16' requested but {name} does not support bfloat16; use 'fp16' or 'fp32'")


def check_attn_implementation(attn_implementation: str | None, device: torch.device, dtype: torch.dtype) -> None:
    """Raise ModelError unless ``attn_implementation`` can run on ``device`` in ``dtype``."""
    import torch

    if attn_implementation not in ATTN_CHOICES:
        raise ModelError(
            f"unknown attn_implementation {attn_implementation!r}: choose None, 'sdpa', 'eager' or 'flash_attention_2'"
        )
    if attn_implementation != "flash_attention_2":
        return
    if importlib.util.find_spec("flash_attn") is None:
        raise ModelError(
            "attn_implementation='flash_attention_2' needs the flash-attn package (pip install flash-attn); "
            "or use 'sdpa'"
        )
    if device.type != "cuda":
        raise ModelError(f"attn_implementation='flash_attention_2' needs a CUDA device, got {device}; use 'sdpa'")
    if dtype not in (torch.float16, torch.bfloat16):
        raise ModelError(f"attn_implementation='flash_attention_2' needs dtype bf16 or fp16, got {dtype}")


def check_local_folder(folder: Path) -> None:
    """Raise ModelError naming every file a local Voxtral folder lacks (config, weights, tokenizer, processor)."""
    if not folder.exists():
        raise ModelError(
            f"no such folder: {folder}; give a Voxtral checkpoint folder "
            "or a Hub id such as mistralai/Voxtral-Mini-3B-2507"
        )
    if not folder.is_dir():
        raise ModelError(f"{folder} is a file, not a checkpoint folder")
    present = {path.name for path in folder.iterdir()}
    missing = [name for name in ("config.json",) if name not in present]
    for group in (WEIGHT_FILES, TOKENIZER_FILES, PROCESSOR_FILES):
        if not present.intersection(group):
            missing.append(" or ".join(group))
    missing += _missing_shards(folder, present)
    if not missing:
        return
    hint = ""
    if "params.json" in present or "consolidated.safetensors" in present:
        hint = (
            " (it looks like a mistral-format folder: transformers needs the Hugging Face files"
            " config.json and model*.safetensors)"
        )
    raise ModelError(f"checkpoint folder {folder} is missing: {'; '.join(missing)}{hint}")


def _missing_shards(folder: Path, present: set[str]) -> list[str]:
    index_name = next((name for name in WEIGHT_FILES if name.endswith(".index.json") and name in present), None)
    if index_name is None:
        return []
    try:
        weight_map = json.loads((folder / index_name).read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"{folder / index_name} is not a valid weight index: {error}") from error
    return sorted({shard for shard in weight_map.values() if shard not in present})


def describe_hub_failure(name: str, error: BaseException, *, local_files_only: bool) -> str:
    """Explain why ``name`` could not be fetched: not found, gated, offline, or not cached."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    chain = _exception_chain(error)
    text = " ".join(str(item) for item in chain)
    tried = f"tried the Hugging Face Hub repository {name!r} and the local cache ({constants.HF_HUB_CACHE})"
    if any(isinstance(item, GatedRepoError) for item in chain):
        return f"{name!r} is gated: accept its conditions at https://huggingface.co/{name} and log in (hf auth login)"
    if any(isinstance(item, RepositoryNotFoundError) for item in chain) or "is not a valid model identifier" in text:
        return (
            f"{name!r} is neither a local folder nor a model on the Hub "
            f"(or it is private: log in with hf auth login); {tried}"
        )
    if any(isinstance(item, RevisionNotFoundError) for item in chain):
        return f"{name!r} has no such revision; {tried}"
    if local_files_only or constants.HF_HUB_OFFLINE:
        return (
            f"{name!r} is not a local folder and is not in the local cache "
            f"(offline mode, no download attempted); {tried}"
        )
    if "couldn't connect" in text or "connection" in text.lower():
        return (
            f"could not reach huggingface.co (no internet connection?) and {name!r} is not in the local cache; "
            f"{tried}. "
            "Download it where there is internet (hf download NAME) or pass a local folder"
        )
    return f"could not load {name!r}: {error}; {tried}"


def _exception_chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def checkpoint_source(name_or_path: str | Path) -> str:
    """Return a local folder as an expanded path (after checking its files), anything else as a Hub id."""
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.exists() or isinstance(name_or_path, Path) or name.startswith((".", "/", "~")):
        check_local_folder(local)
        return str(local)
    return name


def load_voxtral_config(
    name_or_path: str | Path, *, local_files_only: bool = False, revision: str | None = None
) -> Any:
    """Load the checkpoint's config, check it is a Voxtral one, and return it."""
    from transformers import AutoConfig

    name = checkpoint_source(name_or_path)
    local = Path(name)
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local_files_only, revision=revision)
    except (OSError, ValueError) as error:
        if local.is_dir():
            raise ModelError(f"cannot read {local / 'config.json'}: {error}") from error
        raise ModelError(describe_hub_failure(name, error, local_files_only=local_files_only)) from error
    if config.model_type != "voxtral":
        raise ModelError(
            f"{name!r} is a {config.model_type!r} model, not a Voxtral one (config.json model_type must be 'voxtral')"
        )
    return config


def load_voxtral_processor(
    name_or_path: str | Path, *, local_files_only: bool = False, revision: str | None = None
) -> Any:
    """Load the ``VoxtralProcessor`` and check that its tokenizer is mistral-common's ``MistralCommonBackend``."""
    from transformers import AutoProcessor

    name = checkpoint_source(name_or_path)
    try:
        processor = AutoProcessor.from_pretrained(name, local_files_only=local_files_only, revision=revision)
    except (OSError, ValueError, ImportError) as error:
        raise ModelError(f"cannot load the Voxtral processor of {name!r}: {error}") from error
    tokenizer_class = type(getattr(processor, "tokenizer", None)).__name__
    if type(processor).__name__ != "VoxtralProcessor" or tokenizer_class != "MistralCommonBackend":
        raise ModelError(
            f"{name!r} gave a {type(processor).__name__} with a {tokenizer_class} tokenizer; "
            "Voxtral needs a VoxtralProcessor with MistralCommonBackend "
            "(install mistral-common[audio] and keep config.json beside tekken.json)"
        )
    return processor


def load_voxtral(
    name_or_path: str | Path,
    *,
    dtype: str = "auto",
    attn_implementation: str | None = None,
    device: str | torch.device | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
    hub_kernels: bool = False,
    quantization: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(VoxtralForConditionalGeneration, VoxtralProcessor)`` from a Hub id or a local folder.

    ``dtype`` is one of ``auto``/``bf16``/``fp16``/``fp32`` (see :func:`resolve_dtype`). ``device`` (``None`` or
    ``"auto"``) defaults to CUDA when available. ``attn_implementation`` is ``None`` (transformers' default),
    ``sdpa``, ``eager`` or ``flash_attention_2``. ``hub_kernels`` lets transformers fetch and run kernels from
    the Hub at load; it stays off unless asked. ``quantization="nf4"`` loads the language model's linear layers in
    4 bits (bitsandbytes; the :data:`UNQUANTIZED_PARTS` stay in ``dtype``). Everything is checked before the
    weights are read; failures raise ModelError.
    """
    from transformers import VoxtralForConditionalGeneration

    resolved_device = resolve_device(device)
    config = load_voxtral_config(name_or_path, local_files_only=local_files_only, revision=revision)
    torch_dtype = resolve_dtype(dtype, resolved_device, getattr(config, "dtype", None))
    check_attn_implementation(attn_implementation, resolved_device, torch_dtype)
    processor = load_voxtral_processor(name_or_path, local_files_only=local_files_only, revision=revision)
    source = checkpoint_source(name_or_path)
    extra: dict[str, Any] = {"device_map": {"": str(resolved_device)}} if resolved_device.type == "cuda" else {}
    if quantization is not None:
        from voxplug.api import bitsandbytes_config

        extra["quantization_config"] = bitsandbytes_config(quantization, keep=UNQUANTIZED_PARTS)
    try:
        model = VoxtralForConditionalGeneration.from_pretrained(
            source,
            config=config,
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
            local_files_only=local_files_only,
            revision=revision,
            use_kernels=hub_kernels,
            **extra,
        )
    except (OSError, ValueError, ImportError) as error:
        raise ModelError(f"cannot load the Voxtral weights of {source!r}: {error}") from error
    if resolved_device.type != "cuda" and quantization is None:  # a 4-bit model loads where it is quantized
        model = model.to(resolved_device)
    return prepare_loaded_voxtral(model), processor


def prepare_loaded_voxtral(model: Any) -> Any:
    """What every Voxtral model voxplug loads gets, exact and for speed: placeholders checked without waiting for
    the GPU (:func:`check_audio_placeholders_on_device`) and a contiguous residual stream in the audio encoder
    (:func:`voxplug.api.contiguous_residual_stream`). Returns ``model``."""
    check_audio_placeholders_on_device(model)
    contiguous_residual_stream(model.model.audio_tower)
    return model


def check_audio_placeholders_on_device(model: Any) -> Any:
    """Make ``model`` check its audio placeholders without waiting for the GPU; return ``model``.

    transformers' ``VoxtralModel.get_placeholder_mask`` checks that the ``[AUDIO]`` tokens match the encoder's
    output by gathering the embeddings under the mask and formatting the token count into its message, both of
    which wait for the GPU in every forward. This version checks the same count: on the CPU with a ValueError,
    on a GPU with an asynchronous device assertion (a mismatch still stops the run). The prompts voxplug builds
    always match; a hand-made batch that does not is still caught.
    """
    import torch

    inner = model.model
    original = inner.get_placeholder_mask
    audio_token_id = inner.config.audio_token_id

    def get_placeholder_mask(input_ids: Any, inputs_embeds: Any, audio_features: Any) -> Any:
        if input_ids is None:
            return original(input_ids, inputs_embeds=inputs_embeds, audio_features=audio_features)
        mask = input_ids == audio_token_id
        values = mask.sum() * inputs_embeds.shape[-1]
        expected = audio_features.numel()
        if values.device.type == "cpu":
            if int(values) != expected:
                raise ValueError(
                    f"Audio features and audio tokens do not match, tokens: {int(mask.sum())}, "
                    f"features: {audio_features.shape[0]}"
                )
        else:
            torch._assert_async(values == expected, "audio features and [AUDIO] tokens do not match")
        return mask.unsqueeze(-1).expand_as(inputs_embeds).to(inputs_embeds.device)

    inner.get_placeholder_mask = get_placeholder_mask
    return model
