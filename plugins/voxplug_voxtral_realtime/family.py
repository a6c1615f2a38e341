"""The Voxtral Realtime model family and its streaming collator, as voxplug extensions.

Both classes are thin: loading, tiny checkpoints, targets, collation and streaming generation live in the sibling
modules and are imported only when called, so registering the plugin costs no torch import.

LoRA scopes and the modules they adapt (PEFT full-matches the regex against dotted module names)::

    language_model:  model.language_model.layers.N.self_attn.{q,k,v,o}_proj, ...mlp.{gate,up,down}_proj
    audio_tower:     model.audio_tower.layers.N.self_attn.{q,k,v,o}_proj, ...mlp.{gate,up,down}_proj
    projector:       model.multi_modal_projector.linear_{1,2}

The default scope is the language model; the causal audio encoder stays frozen and runs without autograd unless a
scope or the ``full`` trainer's ``train_audio_tower`` asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator
from voxplug_voxtral.family import part_module

from voxplug.api import (
    Collator,
    ConfigError,
    ModelFamily,
    PluginError,
    PluginOptions,
    format_validation_error,
    get_plugin_host,
)

if TYPE_CHECKING:
    import numpy as np

FRAME_MS = 80
MIN_DELAY_MS = 80
MAX_DELAY_MS = 2400
SCOPE_MODULES: dict[str, str] = {
    "language_model": "model.language_model",
    "audio_tower": "model.audio_tower",
    "projector": "model.multi_modal_projector",
}
SCOPE_PATTERNS: dict[str, str] = {
    "language_model": r"language_model\.layers\.\d+\.(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)",
    "audio_tower": r"audio_tower\.layers\.\d+\.(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)",
    "projector": r"multi_modal_projector\.linear_[12]",
}


def lora_target_regex(scopes: list[str]) -> str:
    """A PEFT ``target_modules`` regex for the linear layers of the chosen parts of a Voxtral Realtime model."""
    chosen = set(scopes)
    unknown = chosen.difference(SCOPE_PATTERNS)
    if unknown or not chosen:
        got = sorted(chosen) or "none"
        raise ConfigError(
            f"Voxtral Realtime LoRA scopes must be a non-empty subset of {list(SCOPE_PATTERNS)}, got {got}"
        )
    alternatives = "|".join(pattern for scope, pattern in SCOPE_PATTERNS.items() if scope in chosen)
    return rf"(?:.*\.)?(?:{alternatives})"


class RealtimeOptions(PluginOptions):
    """Options of the ``voxtral-realtime`` family (``model.voxtral-realtime``)."""

    delay_ms: int | None = Field(
        None,
        description="delay to transcribe at in evaluation, in multiples of 80 ms from 80 to 2400; None: the "
        "checkpoint's default (its tekken.json; a model voxplug trained at one delay defaults to that delay)",
    )


class VoxtralRealtimeFamily(ModelFamily):
    """``VoxtralRealtimeForConditionalGeneration`` checkpoints (Voxtral-Mini-4B-Realtime-2602 and fine-tunes)."""

    name = "voxtral-realtime"
    description = "Mistral's streaming Voxtral Realtime (causal encoder, delayed text stream, 80-2400 ms delay)"
    Options = RealtimeOptions
    options: RealtimeOptions
    model_types: ClassVar[tuple[str, ...]] = ("voxtral_realtime",)
    default_collator: ClassVar[str] = "voxtral-realtime-streaming"
    lora_scopes: ClassVar[tuple[str, ...]] = ("language_model", "audio_tower", "projector")
    encoder_scope: ClassVar[str | None] = "audio_tower"
    lora_shared_inputs: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("q_proj", "k_proj", "v_proj"),
        ("gate_proj", "up_proj"),
    )
    #: a streaming family: the demo and the app transcribe from the microphone while the person speaks
    streaming: ClassVar[bool] = True

    def load(
        self,
        name_or_path: str,
        *,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        device: str = "auto",
        hub_kernels: bool = False,
    ) -> tuple[Any, Any]:
        """Return ``(model, processor)`` for a Hub id or a local folder (Hub kernels off unless asked)."""
        from voxplug_voxtral_realtime.loading import load_realtime

        return load_realtime(
            name_or_path,
            dtype=dtype,
            attn_implementation=attn_implementation,
            device=device,
            hub_kernels=hub_kernels,
        )

    def load_processor(self, name_or_path: str) -> Any:
        """Return the ``VoxtralRealtimeProcessor`` of a checkpoint or model folder."""
        from voxplug_voxtral_realtime.loading import load_realtime_processor

        return load_realtime_processor(name_or_path)

    def lora_target_modules(self, scopes: list[str]) -> str:
        """A PEFT ``target_modules`` regex matching the linear layers of the chosen parts only."""
        return lora_target_regex(scopes)

    def scope_module(self, model: Any, scope: str) -> Any:
        """The submodule that holds one part (a name from :attr:`lora_scopes`), through any PEFT wrapper."""
        return part_module(model, scope, SCOPE_MODULES, "Voxtral Realtime")

    def frozen_encoder(self, model: Any) -> Any:
        """The causal audio encoder (``audio_tower``)."""
        return self.scope_module(model, "audio_tower")

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
        """Streaming transcripts at the family's ``delay_ms`` (the checkpoint's default when None).

        The model detects the language itself; ``languages``, ``max_new_tokens`` and ``cuda_graphs`` do not apply
        (one token is emitted per 80 ms of audio, through transformers' own generation); ``batch_size`` defaults to 8.
        """
        from voxplug_voxtral_realtime.generation import transcribe_streaming

        batch_size = batch_size or 8
        texts: list[str] = []
        for start in range(0, len(audios), batch_size):
            streamed = transcribe_streaming(
                model, processor, audios[start : start + batch_size], delay_ms=self.options.delay_ms
            )
            texts.extend(result.text for result in streamed)
        return texts

    def live_transcription(self, model: Any, processor: Any, *, delay_ms: int | None = None) -> Any:
        """A :class:`~voxplug_voxtral_realtime.generation.LiveTranscription` session: feed audio as it arrives."""
        from voxplug_voxtral_realtime.generation import LiveTranscription

        return LiveTranscription(model, processor, delay_ms=delay_ms or self.options.delay_ms)

    def build_tiny(self, out_dir: Path, *, seed: int = 0) -> Path:
        """Write a tiny random Voxtral Realtime with the real Tekken-based streaming processor to ``out_dir``."""
        from voxplug_voxtral_realtime.tiny import build_tiny_voxtral_realtime

        return build_tiny_voxtral_realtime(out_dir, seed=seed)


class StreamingCollatorOptions(PluginOptions):
    """Options of the ``voxtral-realtime-streaming`` collator (``model.voxtral-realtime-streaming``)."""

    aligner: str = Field("words", description="where word timings come from: an aligner's name (words, whisper, ...)")
    aligner_options: dict[str, Any] = Field(default_factory=dict, description="the aligner's own options")
    delay_ms: int | None = Field(
        None,
        description="train at this one delay (80-2400 ms, a multiple of 80); the saved processor then defaults to "
        "it. None with no delay_range_ms: the checkpoint's default delay",
    )
    delay_range_ms: tuple[int, int] | None = Field(
        None,
        description="train over delays drawn per batch from [low, high] (multiples of 80 ms), as the model was "
        "pretrained: the model then keeps working at any delay in the range",
    )
    seed: int = Field(0, description="seed of the per-batch delay draws")

    @model_validator(mode="after")
    def _checked(self) -> StreamingCollatorOptions:
        for delay in [self.delay_ms, *(self.delay_range_ms or ())]:
            if delay is not None and (not MIN_DELAY_MS <= delay <= MAX_DELAY_MS or delay % FRAME_MS):
                raise ValueError(
                    f"delay {delay} ms: take a multiple of {FRAME_MS} ms from {MIN_DELAY_MS} to {MAX_DELAY_MS}"
                )
        if self.delay_ms is not None and self.delay_range_ms is not None:
            raise ValueError("set delay_ms (one delay) or delay_range_ms (a range), not both")
        if self.delay_range_ms is not None and self.delay_range_ms[0] > self.delay_range_ms[1]:
            raise ValueError(f"delay_range_ms {list(self.delay_range_ms)}: the low end is above the high end")
        make_aligner(self.aligner, self.aligner_options)  # an unknown aligner or a bad option fails before launch
        return self


class VoxtralRealtimeCollator(Collator):
    """Streaming targets (delayed text stream with word-start and padding tokens) placed by an aligner's timings."""

    name = "voxtral-realtime-streaming"
    description = "Voxtral Realtime streaming targets: word tokens at their spoken frames, shifted by the delay"
    Options = StreamingCollatorOptions
    options: StreamingCollatorOptions

    def __init__(self, options: Any = None, *, processor: Any, model_id: str = "") -> None:
        super().__init__(options, processor=processor, model_id=model_id)
        from voxplug_voxtral_realtime.collator import StreamingCollator
        from voxplug_voxtral_realtime.loading import default_delay_ms, set_default_delay

        options = self.options
        if options.delay_range_ms is not None:
            delays = options.delay_range_ms
        else:
            delay = options.delay_ms if options.delay_ms is not None else default_delay_ms(processor)
            set_default_delay(processor, delay)  # evaluation and the saved processor use the trained delay
            delays = (delay, delay)
        aligner = make_aligner(options.aligner, options.aligner_options)
        self.collate = StreamingCollator(processor, aligner, delays_ms=delays, seed=options.seed)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate rows of ``{"audio", "text", "id"[, "words"]}`` into streaming training batches."""
        return self.collate(examples)


def make_aligner(name: str, options: dict[str, Any]) -> Any:
    """The registered aligner ``name`` with ``options``; an unknown name or an invalid option is a ValueError."""
    from pydantic import ValidationError

    try:
        aligner_class = get_plugin_host().extension("aligner", name)
    except PluginError as exc:
        raise ValueError(str(exc)) from exc
    try:
        return aligner_class(aligner_class.Options.model_validate(options))
    except ValidationError as exc:
        raise ValueError(f"aligner {name!r}: " + format_validation_error(exc, prefix="aligner_options.")) from exc
