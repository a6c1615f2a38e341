"""The tiny offline Whisper: real tokenizer and feature extractor, loads like a Hub checkpoint, reproducible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxplug_whisper.family import WhisperFamily
from voxplug_whisper.processor import whisper_tokens


def test_tiny_loads_like_a_hub_checkpoint(whisper_tiny_dir: Path, whisper_processor: Any) -> None:
    from transformers import AutoProcessor, GenerationConfig, WhisperForConditionalGeneration

    assert type(AutoProcessor.from_pretrained(whisper_tiny_dir)).__name__ == "WhisperProcessor"
    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir)
    assert sum(parameter.numel() for parameter in model.parameters()) < 2_000_000
    assert model.config.vocab_size == len(whisper_processor.tokenizer) == 51864
    assert whisper_processor.feature_extractor.feature_size == model.config.num_mel_bins == 80
    assert GenerationConfig.from_pretrained(whisper_tiny_dir).is_multilingual is False


def test_tokenizer_is_whisper_tiny_en(whisper_processor: Any) -> None:
    tokenizer = whisper_processor.tokenizer
    tokens = whisper_tokens(tokenizer)
    assert (tokens.eot, tokens.sot, tokens.transcribe, tokens.no_timestamps) == (50256, 50257, 50358, 50362)
    assert not tokens.multilingual and tokens.languages["en"] == 50258
    assert tokenizer(" Hello world.", add_special_tokens=False).input_ids == [18435, 995, 13]
    assert tokenizer.convert_ids_to_tokens(50363) == "<|0.00|>"
    assert tokenizer.decode([50257, 50362, 18435, 995, 50363, 50256], skip_special_tokens=True) == " Hello world"


def test_multilingual_layout(multilingual_processor: Any) -> None:
    tokens = whisper_tokens(multilingual_processor.tokenizer)
    assert tokens.multilingual
    assert (tokens.eot, tokens.sot, tokens.languages["en"], tokens.transcribe, tokens.no_timestamps) == (
        50257,
        50258,
        50259,
        50359,
        50363,
    )
    assert len(multilingual_processor.tokenizer) == 51865


def test_same_seed_same_weights(tmp_path: Path, whisper_tiny_dir: Path) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration

    again = WhisperFamily().build_tiny(tmp_path / "again", seed=0)
    first = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir).state_dict()
    second = WhisperForConditionalGeneration.from_pretrained(again).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
