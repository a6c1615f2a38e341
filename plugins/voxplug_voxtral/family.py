"""The Voxtral model family and its transcription collator, as voxplug extensions.

Both classes are thin: loading, tiny checkpoints, collation, generation and LoRA targets live in the sibling
modules and are imported only when called, so registering the plugin costs no torch import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from voxplug.api import Collator, FamilySpeed, LayerStack, ModelFamily, ModelShape, PluginOptions, build_on_meta

if TYPE_CHECKING:
    import numpy as np

    from voxplug.api import LanguageSupport

#: LoRA scope -> the attribute path of that part inside ``VoxtralForConditionalGeneration``.
SCOPE_MODULES: dict[str, str] = {
    "language_model": "model.language_model",
    "audio_tower": "model.audio_tower",
    "projector": "model.multi_modal_projector",
}


def _fuse_kernels(model: Any) -> list[str]:
    from voxplug_voxtral.kernels import fuse_language_model_kernels

    return fuse_language_model_kernels(model)


def part_module(model: Any, scope: str, parts: dict[str, str], family: str) -> Any:
    """The submodule named ``parts[scope]`` (its dotted name's tail), through any PEFT wrapper; ``family`` names the
    model kind in errors. Shared by the Voxtral families, whose parts are named alike."""
    if scope not in parts:
        raise ValueError(f"unknown {family} part {scope!r} (known: {', '.join(parts)})")
    suffix = parts[scope]
    for name, module in model.named_modules():
        if name == suffix or name.endswith("." + suffix):
            return module
    raise ValueError(f"{type(model).__name__} has no {suffix} (is it a {family} model?)")


class VoxtralFamily(ModelFamily):
    """``VoxtralForConditionalGeneration`` checkpoints (Voxtral-Mini-3B, Voxtral-Small-24B, fine-tunes of them)."""

    name = "voxtral"
    description = "Mistral's Voxtral speech LLMs (Whisper encoder + projector + Mistral LM)"
    model_types: ClassVar[tuple[str, ...]] = ("voxtral",)
    default_collator: ClassVar[str] = "voxtral-transcription"
    lora_scopes: ClassVar[tuple[str, ...]] = ("language_model", "audio_tower", "projector")
    encoder_scope: ClassVar[str | None] = "audio_tower"
    # the Mistral LM's attention and MLP, and the encoder's self-attention, call these on one hidden state
    lora_shared_inputs: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("q_proj", "k_proj", "v_proj"),
        ("gate_proj", "up_proj"),
    )
    quantizations: ClassVar[tuple[str, ...]] = ("nf4",)

    def load(
        self,
        name_or_path: str,
        *,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        device: str = "auto",
        hub_kernels: bool = False,
        quantization: str | None = None,
    ) -> tuple[Any, Any]:
        """Return ``(model, processor)`` for a Hub id or a local folder (``quantization="nf4"``: a 4-bit base)."""
        from voxplug_voxtral.loading import load_voxtral

        return load_voxtral(
            name_or_path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            device=device,
            hub_kernels=hub_kernels,
            quantization=quantization,
        )

    def load_processor(self, name_or_path: str) -> Any:
        """Return the ``VoxtralProcessor`` of a checkpoint or model folder."""
        from voxplug_voxtral.loading import load_voxtral_processor

        return load_voxtral_processor(name_or_path)

    def language_support(self, name_or_path: str) -> LanguageSupport:
        """The ISO 639-1 codes mistral-common's transcription request accepts, any checkpoint; transcription only."""
        from voxplug_voxtral.collator import voxtral_languages

        return voxtral_languages()

    def lora_target_modules(self, scopes: list[str]) -> str:
        """A PEFT ``target_modules`` regex matching the linear layers of the chosen parts only."""
        from voxplug_voxtral.targets import lora_target_regex

        return lora_target_regex(set(scopes))

    def scope_module(self, model: Any, scope: str) -> Any:
        """The submodule that holds one part (a name from :attr:`lora_scopes`), through any PEFT wrapper."""
        return part_module(model, scope, SCOPE_MODULES, "Voxtral")

    def frozen_encoder(self, model: Any) -> Any:
        """The Whisper audio encoder (``audio_tower``)."""
        return self.scope_module(model, "audio_tower")

    def speed(self) -> FamilySpeed:
        """PyTorch's fused RMSNorm and voxplug's SwiGLU and RoPE functions on the language model (kernels.py), and
        its decoder layers replayed as CUDA graphs in training (graphs.py)."""
        return FamilySpeed(fuse_kernels=_fuse_kernels, cuda_graphs=self._graph_language_model)

    def _graph_language_model(self, model: Any) -> Any | None:
        from voxplug_voxtral.graphs import graph_language_model

        return graph_language_model(self.scope_module(model, "language_model"))

    def model_shape(self, name_or_path: str) -> ModelShape:
        """The checkpoint's ``VoxtralForConditionalGeneration`` on the meta device, from its ``config.json``: the
        Whisper encoder (its frames per 30 s chunk) then the language model (one audio token per ``intermediate /
        hidden`` frames, the projector's stacking, and the text)."""
        from transformers import VoxtralForConditionalGeneration

        from voxplug_voxtral.loading import load_voxtral_config

        config = load_voxtral_config(name_or_path)
        model = build_on_meta(VoxtralForConditionalGeneration, config)
        audio, text = config.audio_config, config.text_config
        frames = audio.max_source_positions
        stacked = audio.intermediate_size // audio.hidden_size
        return ModelShape(
            model,
            (
                LayerStack(
                    "audio_tower", audio.num_hidden_layers, audio.hidden_size, audio.intermediate_size, frames, False
                ),
                LayerStack(
                    "language_model",
                    text.num_hidden_layers,
                    text.hidden_size,
                    text.intermediate_size,
                    frames // stacked,
                    True,
                ),
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
        """Greedy transcripts of 16 kHz mono clips (``None`` language = automatic)."""
        from voxplug_voxtral.generation import transcribe

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
        """Write a tiny random Voxtral with the real Tekken-based processor to ``out_dir``."""
        from voxplug_voxtral.tiny import build_tiny_voxtral

        return build_tiny_voxtral(out_dir, seed=seed)


class VoxtralCollatorOptions(PluginOptions):
    """Options of the ``voxtral-transcription`` collator."""

    max_text_tokens: int | None = Field(
        None, ge=1, description="reject (never truncate) transcripts longer than this many tokens"
    )
    pad_to_multiple_of: int = Field(
        8, ge=1, description="pad each batch's length to a multiple of this (tensor cores; one compiled graph)"
    )
    attention_mask: bool = Field(
        False,
        description="send an attention mask with training batches; not needed (the padding follows every real "
        "token and the model is causal: the same loss), and without one attention runs its unmasked kernels",
    )
    feature_cache_mb: int = Field(
        512, ge=0, description="memory per process for reusing each clip's mel features across epochs (0: off)"
    )


class VoxtralTranscriptionCollator(Collator):
    """Transcription batches: the processor's prompt with each row's language, transcript + EOS as the target."""

    name = "voxtral-transcription"
    description = "Voxtral transcription prompts; labels are the transcript + EOS, prompt masked with -100"
    Options = VoxtralCollatorOptions
    options: VoxtralCollatorOptions

    def __init__(self, options: Any = None, *, processor: Any, model_id: str = "") -> None:
        super().__init__(options, processor=processor, model_id=model_id)
        from voxplug_voxtral.feature_cache import CachingVoxtralBatchBuilder

        self.collate = CachingVoxtralBatchBuilder(
            processor,
            cache_bytes=self.options.feature_cache_mb * 2**20,
            model_id=model_id or "voxtral",
            max_text_tokens=self.options.max_text_tokens,
            pad_to_multiple_of=self.options.pad_to_multiple_of,
            attention_mask=self.options.attention_mask,
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate rows of ``{"audio", "text", "language", "id"}`` into model inputs with labels."""
        return self.collate(examples)
