"""The Whisper model family as a voxplug extension.

The class is thin: loading, tiny checkpoints, generation and the CTranslate2 import live in the sibling
modules and are imported only when called, so registering the plugin costs no torch import.

LoRA scopes and the modules they adapt (PEFT full-matches the regex against dotted module names)::

    decoder:  model.decoder.layers.N.{self_attn,encoder_attn}.{q,k,v,out}_proj, model.decoder.layers.N.fc{1,2}
    encoder:  model.encoder.layers.N.self_attn.{q,k,v,out}_proj, model.encoder.layers.N.fc{1,2}

The default scope is the decoder: the encoder stays frozen and runs without autograd, which is both what
adapts Whisper to a voice's vocabulary and the cheap option.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from voxplug.api import ConfigError, LayerStack, ModelError, ModelFamily, ModelShape, build_on_meta

if TYPE_CHECKING:
    import numpy as np

    from voxplug.api import LanguageSupport

SCOPE_PATTERNS: dict[str, str] = {
    "decoder": r"decoder\.layers\.\d+\.(?:(?:self_attn|encoder_attn)\.(?:q|k|v|out)_proj|fc1|fc2)",
    "encoder": r"encoder\.layers\.\d+\.(?:self_attn\.(?:q|k|v|out)_proj|fc1|fc2)",
}


def lora_target_regex(scopes: list[str]) -> str:
    """A PEFT ``target_modules`` regex for the linear layers of the chosen parts (``decoder``, ``encoder``)."""
    chosen = set(scopes)
    unknown = chosen.difference(SCOPE_PATTERNS)
    if unknown or not chosen:
        got = sorted(chosen) or "none"
        raise ConfigError(f"Whisper LoRA scopes must be a non-empty subset of {sorted(SCOPE_PATTERNS)}, got {got}")
    alternatives = "|".join(pattern for scope, pattern in SCOPE_PATTERNS.items() if scope in chosen)
    return rf"(?:.*\.)?(?:{alternatives})"


class WhisperFamily(ModelFamily):
    """``WhisperForConditionalGeneration`` checkpoints: OpenAI's Whisper (``.en`` and multilingual), fine-tunes."""

    name = "whisper"
    description = "OpenAI's Whisper encoder-decoder ASR models (and CTranslate2 ones via `voxplug model import-ct2`)"
    model_types: ClassVar[tuple[str, ...]] = ("whisper",)
    default_collator: ClassVar[str] = "whisper-transcription"
    lora_scopes: ClassVar[tuple[str, ...]] = ("decoder", "encoder")
    encoder_scope: ClassVar[str | None] = "encoder"
    # PEFT's CAUSAL_LM and SEQ_2_SEQ_LM wrappers both break Whisper's forward; the plain PeftModel works.
    peft_task_type: ClassVar[str | None] = None

    def load(
        self,
        name_or_path: str,
        *,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        device: str = "auto",
        hub_kernels: bool = False,
    ) -> tuple[Any, Any]:
        """Return ``(WhisperForConditionalGeneration, WhisperProcessor)`` for a Hub id or a local folder."""
        from voxplug_whisper.loading import load_whisper

        return load_whisper(
            name_or_path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            device=device,
            hub_kernels=hub_kernels,
        )

    def load_processor(self, name_or_path: str) -> Any:
        """Return the ``WhisperProcessor`` of a checkpoint or model folder."""
        from voxplug_whisper.loading import load_whisper_processor

        return load_whisper_processor(name_or_path)

    def language_support(self, name_or_path: str) -> LanguageSupport:
        """The checkpoint's ``<|xx|>`` language tokens and translation into English, or only ``en`` for ``.en``."""
        from voxplug_whisper.loading import load_whisper_processor
        from voxplug_whisper.processor import whisper_tokens

        return whisper_tokens(load_whisper_processor(name_or_path).tokenizer).language_support()

    def lora_target_modules(self, scopes: list[str]) -> str:
        """A PEFT ``target_modules`` regex matching the linear layers of the chosen parts only."""
        return lora_target_regex(scopes)

    def frozen_encoder(self, model: Any) -> Any:
        """The audio encoder (``model.encoder``), through any PEFT wrapper."""
        from voxplug_whisper.generation import unwrap_model

        encoder = getattr(getattr(unwrap_model(model), "model", None), "encoder", None)
        if encoder is None:
            raise ModelError(f"{type(model).__name__} has no model.encoder (is it a Whisper model?)")
        return encoder

    def model_shape(self, name_or_path: str) -> ModelShape:
        """The checkpoint's ``WhisperForConditionalGeneration`` on the meta device, from its ``config.json``: the
        encoder over its frames of a 30 s window, then the decoder over the text, attending to those frames."""
        from transformers import WhisperForConditionalGeneration

        from voxplug_whisper.loading import check_whisper_config

        config = check_whisper_config(
            str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().is_dir() else name_or_path
        )
        model = build_on_meta(WhisperForConditionalGeneration, config)
        frames = config.max_source_positions
        return ModelShape(
            model,
            (
                LayerStack("encoder", config.encoder_layers, config.d_model, config.encoder_ffn_dim, frames, False),
                LayerStack("decoder", config.decoder_layers, config.d_model, config.decoder_ffn_dim, 0, True, frames),
            ),
        )

    def transcribe(
        self,
        model: Any,
        processor: Any,
        audios: list[np.ndarray],
        languages: list[str | None],
        *,
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
        cuda_graphs: bool = True,
    ) -> list[str]:
        """Greedy transcripts of 16 kHz mono clips (a ``None`` language is detected on multilingual models)."""
        from voxplug_whisper.generation import transcribe

        return transcribe(
            model,
            processor,
            audios,
            languages,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            cuda_graphs=cuda_graphs,
        )

    def build_tiny(self, out_dir: Path, *, seed: int = 0) -> Path:
        """Write a tiny random English-only Whisper with the real tiny.en tokenizer to ``out_dir``."""
        from voxplug_whisper.tiny import build_tiny_whisper

        return build_tiny_whisper(out_dir, seed=seed)
