"""Build a tiny, random, fully offline Voxtral Realtime checkpoint that loads exactly like a Hub checkpoint.

The folder holds what ``mistralai/Voxtral-Mini-4B-Realtime-2602`` holds in its transformers form, in miniature:

- ``tekken.json``: the real Tekken BPE from the mistral-common wheel (``data/tekken_240911.json``), truncated to
  ``n_inner_ranks`` merges, with 1000 special tokens where the realtime model has them (``[STREAMING_PAD]`` 32,
  ``[STREAMING_WORD]`` 33 besides Voxtral's ``[AUDIO]`` 24, ``[BEGIN_AUDIO]`` 25 and ``[TRANSCRIBE]`` 34) and
  the realtime model's streaming ``audio`` section (12.5 tokens a second, 480 ms default delay, 32 left-padding
  tokens, 2.5 ms look-ahead and 52.5 ms look-back). Text ids below ``1000 + n_inner_ranks`` are the real ids.
- ``processor_config.json``: written by ``VoxtralRealtimeProcessor.save_pretrained`` (its feature extractor:
  128 mel bins, hop 160, window 400, ``global_log_mel_max`` 1.5).
- ``config.json``, ``generation_config.json`` and ``model.safetensors``: a random
  ``VoxtralRealtimeForConditionalGeneration``: a causal audio encoder of hidden 16 (1 layer, 2 heads, sliding
  window 750), the 4x projector, and a decoder of hidden ``text_hidden`` (2 layers, 4 heads / 2 KV heads, Ada
  RMS-norm delay conditioning, tied embeddings) over the ``n_inner_ranks + 1000`` vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voxplug_voxtral.tiny import NUM_SPECIAL_TOKENS, voxtral_special_tokens, voxtral_tekken

BOS_TOKEN_ID = 1
EOS_TOKEN_ID = 2
PAD_TOKEN_ID = 11
STREAMING_PAD_TOKEN_ID = 32
STREAMING_WORD_TOKEN_ID = 33

# Named specials of the realtime model's tekken beyond mistral-common's frozen 0-19 list
# (Tekkenizer.DEPRECATED_SPECIAL_TOKENS); every other rank below 1000 is a filler "<SPECIAL_n>".
_NAMED_SPECIALS_FROM_20 = {
    24: "[AUDIO]",
    25: "[BEGIN_AUDIO]",
    STREAMING_PAD_TOKEN_ID: "[STREAMING_PAD]",
    STREAMING_WORD_TOKEN_ID: "[STREAMING_WORD]",
    34: "[TRANSCRIBE]",
}

REALTIME_AUDIO_SECTION: dict[str, Any] = {
    "sampling_rate": 16000,
    "frame_rate": 12.5,
    "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
    "chunk_length_s": None,
    "transcription_format": "streaming",
    "transcription_delay_ms": 480,
    "streaming_look_ahead_ms": 2.5,
    "streaming_look_back_ms": 52.5,
    "streaming_n_left_pad_tokens": 32,
}

FEATURE_EXTRACTOR_SETTINGS: dict[str, Any] = {
    "feature_size": 128,
    "sampling_rate": 16000,
    "hop_length": 160,
    "n_fft": 400,
    "win_length": 400,
    "padding_value": 0.0,
    "global_log_mel_max": 1.5,
}


def realtime_special_tokens() -> list[dict[str, Any]]:
    """The realtime model's 1000 special tokens as tekken ``special_tokens`` entries."""
    return voxtral_special_tokens(_NAMED_SPECIALS_FROM_20)


def realtime_tekken(n_inner_ranks: int, *, delay_ms: int = 480) -> dict[str, Any]:
    """A Voxtral Realtime ``tekken.json`` document with the first ``n_inner_ranks`` BPE ranks of the real vocabulary."""
    audio = {**REALTIME_AUDIO_SECTION, "transcription_delay_ms": delay_ms}
    return voxtral_tekken(n_inner_ranks, special_tokens=realtime_special_tokens(), audio=audio)


def tiny_realtime_config(vocab_size: int, *, text_layers: int = 2, text_hidden: int = 48) -> Any:
    """A tiny ``VoxtralRealtimeConfig`` whose audio side matches the real processor (128 mel bins, 8 per token)."""
    from transformers import VoxtralRealtimeConfig

    audio_config = {
        "model_type": "voxtral_realtime_encoder",
        "hidden_size": 16,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "head_dim": 8,
        "num_mel_bins": 128,
        "max_position_embeddings": 1500,
        "sliding_window": 750,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
    }
    text_config = {
        "model_type": "voxtral_realtime_text",
        "vocab_size": vocab_size,
        "hidden_size": text_hidden,
        "intermediate_size": 2 * text_hidden,
        "num_hidden_layers": text_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": text_hidden // 4,
        "max_position_embeddings": 4096,
        "sliding_window": 4096,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        "tie_word_embeddings": True,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }
    return VoxtralRealtimeConfig(audio_config=audio_config, text_config=text_config, default_num_delay_tokens=6)


def save_realtime_processor(out_dir: Path, n_inner_ranks: int) -> None:
    """Write the realtime processor (Tekken vocabulary of ``n_inner_ranks`` merges, 130072 for the full one) to
    ``out_dir``."""
    from transformers import MistralCommonBackend, VoxtralRealtimeFeatureExtractor, VoxtralRealtimeProcessor

    tekken_path = out_dir / "tekken.json"
    tekken_path.write_text(json.dumps(realtime_tekken(n_inner_ranks)), encoding="utf-8")
    processor = VoxtralRealtimeProcessor(
        VoxtralRealtimeFeatureExtractor(**FEATURE_EXTRACTOR_SETTINGS), MistralCommonBackend(tokenizer_path=tekken_path)
    )
    processor.save_pretrained(out_dir)


def _save_model(out_dir: Path, vocab_size: int, seed: int, *, text_layers: int, text_hidden: int) -> None:
    import torch
    from transformers import GenerationConfig, VoxtralRealtimeForConditionalGeneration

    torch.manual_seed(seed)
    model = VoxtralRealtimeForConditionalGeneration(
        tiny_realtime_config(vocab_size, text_layers=text_layers, text_hidden=text_hidden)
    )
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, pad_token_id=PAD_TOKEN_ID
    )
    model.save_pretrained(out_dir)


def build_tiny_voxtral_realtime(
    out_dir: str | Path, *, n_inner_ranks: int = 2000, seed: int = 0, text_layers: int = 2, text_hidden: int = 48
) -> Path:
    """Write a tiny random Voxtral Realtime checkpoint (model + processor) to ``out_dir`` and return its path.

    ``AutoProcessor.from_pretrained(out_dir)`` gives a ``VoxtralRealtimeProcessor`` with a ``MistralCommonBackend``
    tokenizer and ``VoxtralRealtimeForConditionalGeneration.from_pretrained(out_dir)`` loads the weights, exactly as
    for the Hub checkpoint. ``text_hidden`` must be a multiple of 4 (4 attention heads). Same arguments and seed
    give the same weights.
    """
    if text_hidden % 4:
        raise ValueError(f"text_hidden must be a multiple of 4 (4 attention heads), got {text_hidden}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_realtime_processor(out, n_inner_ranks)
    _save_model(out, n_inner_ranks + NUM_SPECIAL_TOKENS, seed, text_layers=text_layers, text_hidden=text_hidden)
    return out
