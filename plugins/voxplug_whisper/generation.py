"""Greedy transcription with a Whisper model: base, PEFT-wrapped or merged.

This is Whisper's short-form greedy decoding (what ``WhisperForConditionalGeneration.generate`` and
CTranslate2 do for clips up to 30 s with ``num_beams=1``), token for token: ``suppress_tokens`` are masked at every
step and ``begin_suppress_tokens`` at the first one, and a row stops at ``<|endoftext|>``. :func:`transcribe` hands
:class:`WhisperDecoding` to :func:`voxplug.evaluation.batching.transcribe_clips`: the encoder runs once per clip
in the prompt's forward pass, and :class:`DecoderCache` decodes from the self-attention keys and values in buffers
allocated once and the cross-attention ones computed once, with a step built from the model's own modules (PEFT
LoRA layers folded, :class:`DecoderProjections`) that reads only the filled part of the cache.

Prompts: ``<|startoftranscript|><|notimestamps|>`` for English-only models; for multilingual ones
``<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>``, where a clip without a language first gets the
language token the model scores highest (Whisper's language detection).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxplug.api import (
    AudioError,
    DataError,
    DecodeStats,
    base_model,
    compute_dtype,
    contiguous_residual_stream_while,
    fold_lora,
    transcribe_clips,
)
from voxplug_whisper.processor import MAX_TARGET_POSITIONS, WhisperTokens, whisper_tokens

if TYPE_CHECKING:
    import numpy as np
    import torch

SAMPLING_RATE = 16000
WINDOW_S = 30.0


@dataclass(frozen=True)
class DecodingRules:
    """Which tokens greedy decoding may never emit, and how long a transcript may get."""

    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    max_target_positions: int

    @classmethod
    def of(cls, model: Any) -> DecodingRules:
        """The rules in a model's generation config (falling back to its config)."""
        base = unwrap_model(model)
        sources = (base.generation_config, base.config)
        return cls(
            suppress_tokens=tuple(_first_setting(sources, "suppress_tokens")),
            begin_suppress_tokens=tuple(_first_setting(sources, "begin_suppress_tokens")),
            max_target_positions=getattr(base.config, "max_target_positions", MAX_TARGET_POSITIONS),
        )


def _first_setting(sources: Sequence[Any], name: str) -> list[int]:
    for source in sources:
        value = getattr(source, name, None)
        if value:
            return list(value)
    return []


def unwrap_model(model: Any) -> Any:
    """The ``WhisperForConditionalGeneration`` inside a PEFT wrapper (LoRA layers stay active), or ``model``."""
    return base_model(model)


def check_window(audio: np.ndarray, where: str) -> None:
    """Raise ``AudioError`` for a clip longer than Whisper's 30 s window (the feature extractor would cut it)."""
    duration_s = len(audio) / SAMPLING_RATE
    if duration_s > WINDOW_S:
        raise AudioError(
            f"{where}: {duration_s:.1f} s is longer than Whisper's {WINDOW_S:g} s window; split the clip "
            "(the data stage rejects such clips with data.max_duration_s=30)"
        )


def log_mel_features(processor: Any, audios: Sequence[np.ndarray]) -> torch.Tensor:
    """``(batch, mel bins, 3000)`` log-mel features, each clip padded to 30 s."""
    extracted = processor.feature_extractor(
        list(audios), sampling_rate=SAMPLING_RATE, return_tensors="pt", return_attention_mask=False
    )
    return extracted["input_features"]


def encode(model: Any, features: torch.Tensor) -> Any:
    """Run the encoder once and return its output (a ``BaseModelOutput``), its residual stream contiguous."""
    import torch

    base = unwrap_model(model)
    parameter = next(base.parameters())
    with torch.no_grad(), contiguous_residual_stream_while(base.model.encoder):
        return base.model.encoder(features.to(device=parameter.device, dtype=parameter.dtype))


def detect_languages(model: Any, encoded: Any, tokens: WhisperTokens) -> list[str]:
    """Whisper's language detection: the language token the decoder scores highest after the start token."""
    import torch

    codes, ids = zip(*tokens.languages.items(), strict=True)
    logits = _next_token_logits(model, encoded, torch.full((len(encoded.last_hidden_state), 1), tokens.sot), None)[0]
    best = logits[:, list(ids)].argmax(-1)
    return [codes[int(index)] for index in best]


def _next_token_logits(model: Any, encoded: Any, decoder_input_ids: torch.Tensor, cache: Any) -> tuple[Any, Any]:
    import torch

    base = unwrap_model(model)
    with torch.no_grad():
        output = base(
            encoder_outputs=encoded,
            decoder_input_ids=decoder_input_ids.to(encoded.last_hidden_state.device),
            cache=cache,
            use_cache=True,
        )
    return output.logits[:, -1].float(), output.cache


def attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA of ``(rows, heads, 1, dim)`` queries (already scaled) over the keys; ``(rows, 1, heads * dim)``."""
    import torch

    out = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=1.0)
    return out.transpose(1, 2).reshape(query.shape[0], 1, -1)


def scaled_query(attention: Any, projected: torch.Tensor) -> torch.Tensor:
    """``(rows, heads, 1, dim)`` queries of one token per row from their projection, scaled before attention as
    transformers does."""
    shape = (projected.shape[0], 1, -1, attention.head_dim)
    return (projected * attention.scaling).view(shape).transpose(1, 2).contiguous()


@dataclass(frozen=True)
class DecoderProjections:
    """The linear layers of one Whisper decoder layer as the decoding step calls them, each giving a tuple of
    outputs: ``self_qkv`` the self-attention's query, key and value, ``self_out`` its output, ``cross_query`` and
    ``cross_out`` the cross-attention's, ``fc1`` and ``fc2`` the MLP's. PEFT LoRA layers that read one input are
    folded (:func:`~voxplug.api.fold_lora`, their adapters copied once per transcription); every other layer runs
    its own forward."""

    self_qkv: Any
    self_out: Any
    cross_query: Any
    cross_out: Any
    fc1: Any
    fc2: Any

    @classmethod
    def of(cls, layer: Any, dtype: torch.dtype, fold: bool) -> DecoderProjections:
        own, cross = layer.self_attn, layer.encoder_attn

        def group(*modules: Any) -> Any:
            folded = fold_lora(list(modules), dtype) if fold else None
            return folded if folded is not None else lambda x: tuple(module(x) for module in modules)

        return cls(
            self_qkv=group(own.q_proj, own.k_proj, own.v_proj),
            self_out=group(own.out_proj),
            cross_query=group(cross.q_proj),
            cross_out=group(cross.out_proj),
            fc1=group(layer.fc1),
            fc2=group(layer.fc2),
        )


class DecoderCache:
    """The decoder's self-attention keys and values for ``rows`` x ``positions``, the cross-attention ones over
    the encoder's 1500 frames, and the one-token decoder step."""

    def __init__(self, model: Any, rows: int, positions: int, suppress: torch.Tensor) -> None:
        from transformers.integrations import is_deepspeed_zero3_enabled

        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        self.layers = list(self.decoder.layers)
        self.rows, self.positions = rows, positions
        self.device = next(model.parameters()).device
        self.suppress = suppress
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.cross_keys: list[torch.Tensor] = []
        self.cross_values: list[torch.Tensor] = []
        #: folded where a module's weights are whole on this rank (under ZeRO-3, only while it is called)
        self.fold = not is_deepspeed_zero3_enabled()
        self.projections: list[DecoderProjections] | None = None  # built at the first step, in its dtype

    def load(self, cache: Any, offset: int) -> None:
        """Copy a prompt pass's ``EncoderDecoderCache`` into rows ``offset`` onwards."""
        import torch

        pairs = zip(cache.self_attention_cache.layers, cache.cross_attention_cache.layers, strict=True)
        for index, (own, cross) in enumerate(pairs):
            if len(self.keys) <= index:  # allocated on first use, in the dtype the model computes in
                shape = (self.rows, own.keys.shape[1], self.positions, own.keys.shape[-1])
                cross_shape = (self.rows, *cross.keys.shape[1:])
                for buffers, size in ((self.keys, shape), (self.values, shape)):
                    buffers.append(torch.zeros(size, dtype=own.keys.dtype, device=self.device))
                for buffers in (self.cross_keys, self.cross_values):
                    buffers.append(torch.zeros(cross_shape, dtype=cross.keys.dtype, device=self.device))
            count, length = own.keys.shape[0], own.keys.shape[2]
            self.keys[index][offset : offset + count, :, :length].copy_(own.keys)
            self.values[index][offset : offset + count, :, :length].copy_(own.values)
            self.cross_keys[index][offset : offset + count].copy_(cross.keys)
            self.cross_values[index][offset : offset + count].copy_(cross.values)

    def step(self, ids: torch.Tensor, position: torch.Tensor, span: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Next-token logits (float32, suppressed tokens at -inf) for ``ids`` at ``position``; see
        :class:`~voxplug.evaluation.decoding.DecodeState`."""
        decoder = self.decoder
        hidden = decoder.embed_tokens(ids) + decoder.embed_positions(ids, position_ids=position.view(1, 1))
        if self.projections is None:
            dtype = compute_dtype(hidden.device, hidden.dtype)
            self.projections = [DecoderProjections.of(layer, dtype, self.fold) for layer in self.layers]
        for index, layer in enumerate(self.layers):  # WhisperDecoderLayer.forward's arithmetic, in its order
            projections = self.projections[index]
            normed = layer.self_attn_layer_norm(hidden)
            hidden = hidden + self._self_attention(index, layer.self_attn, projections, normed, position, span, mask)
            normed = layer.encoder_attn_layer_norm(hidden)
            hidden = hidden + self._cross_attention(index, layer.encoder_attn, projections, normed)
            (inner,) = projections.fc1(layer.final_layer_norm(hidden))
            (out,) = projections.fc2(layer.activation_fn(inner))
            hidden = hidden + out
        hidden = decoder.layer_norm(hidden)
        return self.proj_out(hidden[:, -1]).float() + self.suppress

    def _self_attention(
        self,
        index: int,
        attention: Any,
        projections: DecoderProjections,
        normed: torch.Tensor,
        position: torch.Tensor,
        span: int,
        mask: Any,
    ) -> torch.Tensor:
        """Write the new token's key and value at ``position``; attend to the first ``span`` positions."""
        rows = normed.shape[0]
        shape = (rows, 1, -1, attention.head_dim)
        keys, values = self.keys[index][:rows], self.values[index][:rows]
        projected, key, value = projections.self_qkv(normed)
        keys.index_copy_(2, position.view(1), key.view(shape).transpose(1, 2).to(keys.dtype))
        values.index_copy_(2, position.view(1), value.view(shape).transpose(1, 2).to(values.dtype))
        query = scaled_query(attention, projected)  # attends in the cache's dtype, as the Voxtral decoder does
        attended = attend(query.to(keys.dtype), keys[:, :, :span], values[:, :, :span], mask)
        return projections.self_out(attended.to(query.dtype))[0]

    def _cross_attention(
        self, index: int, attention: Any, projections: DecoderProjections, normed: torch.Tensor
    ) -> torch.Tensor:
        """Attend to the encoder's frames through their keys and values from the prompt pass."""
        rows = normed.shape[0]
        keys, values = self.cross_keys[index][:rows], self.cross_values[index][:rows]
        query = scaled_query(attention, projections.cross_query(normed)[0])
        return projections.cross_out(attend(query.to(keys.dtype), keys, values, None).to(query.dtype))[0]

    def move_rows(self, keep: torch.Tensor) -> None:
        """Copy rows ``keep`` of every buffer to its first rows."""
        for buffer in (*self.keys, *self.values, *self.cross_keys, *self.cross_values):
            buffer[: len(keep)] = buffer[keep]


@dataclass
class WhisperPrompts:
    """Clips' log-mel features and languages, all with prompts of ``prompt_length`` tokens."""

    features: torch.Tensor
    languages: list[str | None]
    prompt_length: int


class WhisperDecoding:
    """:class:`voxplug.evaluation.batching.FastTranscription` for one Whisper model and its processor."""

    def __init__(self, model: Any, processor: Any) -> None:
        import torch

        self.model = unwrap_model(model)
        self.processor = processor
        self.tokens = whisper_tokens(processor.tokenizer)
        self.rules = DecodingRules.of(self.model)
        parameter = next(self.model.parameters())
        self.device = parameter.device
        self.eos_ids = (self.tokens.eot,)
        self.pad_id = self.tokens.eot
        self.max_positions = self.rules.max_target_positions
        config = self.model.config
        self.vocab_size = int(self.model.proj_out.out_features)
        self.suppress = torch.zeros(self.vocab_size, device=self.device)
        self.suppress[list(self.rules.suppress_tokens)] = float("-inf")
        self.begin_suppress = list(self.rules.begin_suppress_tokens)
        autocast = self.device.type == "cuda" and torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else parameter.dtype
        self.dtype_bytes = torch.empty((), dtype=dtype).element_size()
        self.kv_bytes_per_position = 2 * config.decoder_layers * config.d_model * self.dtype_bytes
        self.frames = config.max_source_positions

    def prompt_key(self, audio: np.ndarray, language: str | None) -> Hashable:
        """One key: every prompt has one length (the language, given or detected, is one token)."""
        if self.tokens.multilingual and language is not None:
            self.tokens.language_id(language)  # an unknown code fails here, before any work
        return 0

    def prompt_length(self, key: Hashable) -> int:
        return len(self.tokens.prompt("en" if self.tokens.multilingual else None))

    def row_bytes(self, positions: int) -> int:
        """The row's self- and cross-attention keys and values, and its float32 logits three times over."""
        return (positions + self.frames) * self.kv_bytes_per_position + 3 * 4 * self.vocab_size

    def prefill_bytes(self, key: Hashable) -> int:
        """The encoder's activations for one 30 s window and the prompt pass's caches."""
        config = self.model.config
        encoder = 2 * self.frames * 16 * config.d_model * self.dtype_bytes
        return encoder + (self.frames + MAX_TARGET_POSITIONS) * self.kv_bytes_per_position

    def encode(self, audios: Sequence[np.ndarray], languages: Sequence[str | None]) -> WhisperPrompts:
        """Log-mel features of the clips."""
        return WhisperPrompts(log_mel_features(self.processor, audios), list(languages), self.prompt_length(0))

    def new_state(self, rows: int, positions: int) -> DecoderCache:
        return DecoderCache(self.model, rows, positions, self.suppress)

    def prefill(self, batch: WhisperPrompts, state: DecoderCache, offset: int) -> torch.Tensor:
        """Encode the clips once, detect languages where needed (on every clip, so that ranks sharing weights run
        the same passes), run the decoder over the prompts; first-token logits with the rules applied."""
        import torch

        encoded = encode(self.model, batch.features)
        chosen = list(batch.languages)
        if self.tokens.multilingual:
            detected = detect_languages(self.model, encoded, self.tokens)
            chosen = [language or found for language, found in zip(chosen, detected, strict=True)]
        prompts = [self.tokens.prompt(language) for language in chosen]  # codes were checked in prompt_key
        output = self.model(
            encoder_outputs=encoded, decoder_input_ids=torch.tensor(prompts, device=self.device), use_cache=True
        )
        state.load(output.cache, offset)
        logits = output.logits[:, -1].float() + self.suppress
        logits[:, self.begin_suppress] = float("-inf")
        return logits


def transcribe_ids(
    model: Any,
    processor: Any,
    audios: list[np.ndarray],
    languages: Sequence[str | None],
    *,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cuda_graphs: bool = True,
    graph_shapes: bool | None = None,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    """Greedy new token ids of each clip, without ``<|endoftext|>`` (see :func:`transcribe`).

    ``graph_shapes`` runs the GPU's decoding shapes on any device (see :func:`~voxplug.evaluation.batching.
    transcribe_clips`).
    """
    import torch

    if len(audios) != len(languages):
        raise DataError(f"got {len(audios)} audio clips but {len(languages)} languages; give one (or None) per clip")
    for index, audio in enumerate(audios):
        check_window(audio, f"clip {index}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return transcribe_clips(
                WhisperDecoding(model, processor),
                audios,
                languages,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                cuda_graphs=cuda_graphs,
                graph_shapes=graph_shapes,
                stats=stats,
            )
    finally:
        model.train(was_training)


def transcribe(
    model: Any,
    processor: Any,
    audios: list[np.ndarray],
    languages: Sequence[str | None],
    *,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cuda_graphs: bool = True,
    stats: DecodeStats | None = None,
) -> list[str]:
    """Transcribe 16 kHz mono clips (up to 30 s each) greedily; one string per clip.

    ``languages`` holds an ISO 639-1 code or ``None`` (detect) per clip; English-only models ignore it.
    ``max_new_tokens`` caps every transcript (None: a budget from each clip's length); ``batch_size`` is the most
    clips decoded together (None: as many as free GPU memory holds). The model is put in eval mode for the call and
    restored afterwards.
    """
    ids = transcribe_ids(
        model,
        processor,
        audios,
        languages,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        cuda_graphs=cuda_graphs,
        stats=stats,
    )
    return [text.strip() for text in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
