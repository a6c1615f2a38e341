"""Build a tiny, random, fully offline Voxtral checkpoint that loads exactly like a Hub checkpoint.

The folder holds what ``mistralai/Voxtral-Mini-3B-2507`` holds, in miniature:

- ``tekken.json``: the real Tekken BPE from the mistral-common wheel (``data/tekken_240911.json``), truncated
  to ``n_inner_ranks`` merges, with Voxtral's 1000 v7 special tokens and its ``audio`` section. Text ids below
  ``1000 + n_inner_ranks`` are the real Voxtral ids, so prompts and special tokens match the full model.
- ``processor_config.json``: written by ``VoxtralProcessor.save_pretrained`` (WhisperFeatureExtractor,
  128 mel bins, hop 160, n_fft 400, 30 s chunks).
- ``config.json``, ``generation_config.json`` (bos 1, eos 2, pad 11) and ``model.safetensors``: a random
  ``VoxtralForConditionalGeneration``.

Default sizes (about 370 k parameters, ~1.7 MB on disk): audio encoder hidden 16, FFN 64, 1 layer, 2 heads,
128 mel bins, 1500 source positions (the processor's 3000-frame chunks need exactly this, and FFN = 4 x hidden
so 4 encoder frames stack into one 375-per-chunk audio token); Llama text model hidden 48, FFN 128, 2 layers,
4 heads / 2 KV heads of dim 12, vocab ``n_inner_ranks + 1000`` (3000). The embedding and the untied LM head
dominate the size; hidden 48 keeps the folder under 2 MB and still memorises a handful of spoken sentences in
a few dozen full fine-tuning steps on 2 CPU cores.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

NUM_SPECIAL_TOKENS = 1000
AUDIO_TOKEN_ID = 24
BOS_TOKEN_ID = 1
EOS_TOKEN_ID = 2
PAD_TOKEN_ID = 11

# Named specials of Voxtral's v7 tekken beyond mistral-common's frozen 0-19 list
# (Tekkenizer.DEPRECATED_SPECIAL_TOKENS). 24/25 are resolved by mistral-common's audio encoder and hard-coded
# in VoxtralProcessor (24); 34 is the transcription marker; 32/33 are the tool-call markers that mistral-common
# places at these ranks for later tokenizer versions. Every other rank below 1000 is a filler "<SPECIAL_n>".
_NAMED_SPECIALS_FROM_20 = {24: "[AUDIO]", 25: "[BEGIN_AUDIO]", 32: "[ARGS]", 33: "[CALL_ID]", 34: "[TRANSCRIBE]"}

VOXTRAL_AUDIO_SECTION: dict[str, Any] = {
    "sampling_rate": 16000,
    "frame_rate": 12.5,
    "chunk_length_s": 30.0,
    "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
}

FEATURE_EXTRACTOR_SETTINGS: dict[str, Any] = {
    "feature_size": 128,
    "sampling_rate": 16000,
    "hop_length": 160,
    "chunk_length": 30,
    "n_fft": 400,
    "padding_value": 0.0,
    "dither": 0.0,
    "return_attention_mask": False,
}


def voxtral_special_tokens(named: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """Return Voxtral's 1000 v7 special tokens as tekken ``special_tokens`` entries (rank, token_str, is_control).

    ``named`` gives the names of ranks from 20 on (default: Voxtral's audio and transcription tokens); the other
    ranks keep mistral-common's placeholder names.
    """
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    named = _NAMED_SPECIALS_FROM_20 if named is None else named
    specials = [dict(token) for token in Tekkenizer.DEPRECATED_SPECIAL_TOKENS]
    for rank in range(len(specials), NUM_SPECIAL_TOKENS):
        name = named.get(rank, Tekkenizer.SPECIAL_TOKEN_TEMPLATE.format(id=rank))
        specials.append({"rank": rank, "token_str": name, "is_control": True})
    return specials


@lru_cache(maxsize=1)
def base_tekken() -> dict[str, Any]:
    """The full Tekken vocabulary shipped in the mistral-common wheel (read once per process)."""
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    return json.loads(path.read_text(encoding="utf-8"))


def voxtral_tekken(
    n_inner_ranks: int, *, special_tokens: list[dict[str, Any]] | None = None, audio: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return a Voxtral ``tekken.json`` document with the first ``n_inner_ranks`` BPE ranks of the real vocabulary.

    ``special_tokens`` and ``audio`` replace Voxtral's own (the realtime family's tiny model passes its streaming
    tokens and audio section)."""
    base = base_tekken()
    if not 256 <= n_inner_ranks <= len(base["vocab"]):
        raise ValueError(
            f"n_inner_ranks must be between 256 (the byte ranks) and {len(base['vocab'])}, got {n_inner_ranks}"
        )
    config = {
        **base["config"],
        "num_vocab_tokens": n_inner_ranks,
        "default_vocab_size": n_inner_ranks + NUM_SPECIAL_TOKENS,
        "default_num_special_tokens": NUM_SPECIAL_TOKENS,
        "version": "v7",
    }
    return {
        "config": config,
        "vocab": base["vocab"][:n_inner_ranks],
        "special_tokens": voxtral_special_tokens() if special_tokens is None else special_tokens,
        "audio": VOXTRAL_AUDIO_SECTION if audio is None else audio,
    }


def tiny_voxtral_config(
    vocab_size: int, *, text_layers: int = 2, text_hidden: int = 48, text_intermediate: int = 128
) -> Any:
    """Return a tiny ``VoxtralConfig`` whose audio side is compatible with the real Voxtral processor."""
    from transformers import VoxtralConfig

    audio_config = {
        "model_type": "voxtral_encoder",
        "hidden_size": 16,
        "intermediate_size": 64,  # must be 4 x hidden_size: 4 encoder frames per audio token
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_mel_bins": 128,
        "max_source_positions": 1500,  # 3000 mel frames per 30 s chunk, as the processor emits
    }
    text_config = {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": text_hidden,
        "intermediate_size": text_intermediate,
        "num_hidden_layers": text_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": text_hidden // 4,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1e8,
        "tie_word_embeddings": False,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }
    return VoxtralConfig(audio_config=audio_config, text_config=text_config, audio_token_id=AUDIO_TOKEN_ID)


def _save_processor(out_dir: Path, n_inner_ranks: int) -> None:
    from transformers import MistralCommonBackend, VoxtralProcessor, WhisperFeatureExtractor

    tekken_path = out_dir / "tekken.json"
    tekken_path.write_text(json.dumps(voxtral_tekken(n_inner_ranks)), encoding="utf-8")
    processor = VoxtralProcessor(
        WhisperFeatureExtractor(**FEATURE_EXTRACTOR_SETTINGS), MistralCommonBackend(tokenizer_path=tekken_path)
    )
    processor.save_pretrained(out_dir)


def _save_model(out_dir: Path, vocab_size: int, seed: int, **sizes: int) -> None:
    import torch
    from transformers import GenerationConfig, VoxtralForConditionalGeneration

    torch.manual_seed(seed)
    model = VoxtralForConditionalGeneration(tiny_voxtral_config(vocab_size, **sizes))
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, pad_token_id=PAD_TOKEN_ID
    )
    model.save_pretrained(out_dir)


def build_tiny_voxtral(
    out_dir: str | Path,
    *,
    n_inner_ranks: int = 2000,
    seed: int = 0,
    text_layers: int = 2,
    text_hidden: int = 48,
    text_intermediate: int = 128,
) -> Path:
    """Write a tiny random Voxtral checkpoint (model + processor) to ``out_dir`` and return its path.

    ``AutoProcessor.from_pretrained(out_dir)`` gives a ``VoxtralProcessor`` with a ``MistralCommonBackend``
    tokenizer (``config.json`` sits beside ``tekken.json``), and ``VoxtralForConditionalGeneration
    .from_pretrained(out_dir)`` loads the weights, exactly as for a Hub checkpoint. ``text_hidden`` must be a
    multiple of 4 (4 attention heads). Same arguments and seed give the same weights.
    """
    if text_hidden % 4:
        raise ValueError(f"text_hidden must be a multiple of 4 (4 attention heads), got {text_hidden}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_processor(out, n_inner_ranks)
    _save_model(
        out,
        n_inner_ranks + NUM_SPECIAL_TOKENS,
        seed,
        text_layers=text_layers,
        text_hidden=text_hidden,
        text_intermediate=text_intermediate,
    )
    return out
