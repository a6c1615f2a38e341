"""The Whisper collator's label layout and masks, on real processor output, against HF's fine-tuning recipe."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from voxplug_whisper.collator import IGNORE_INDEX, WhisperTranscriptionCollator
from voxplug_whisper.processor import whisper_tokens

from voxplug.errors import AudioError, DataError


def rows(spoken: list[tuple[Any, str]], languages: list[str | None]) -> list[dict[str, Any]]:
    return [
        {"audio": audio, "text": text, "language": language, "id": f"clip-{index}"}
        for index, ((audio, text), language) in enumerate(zip(spoken, languages, strict=False))
    ]


def hf_recipe_labels(processor: Any, text: str, language: str | None) -> list[int]:
    """transformers' run_speech_recognition_seq2seq: tokenizer(text) with its prefix, minus the leading sot."""
    tokenizer = processor.tokenizer
    task = "transcribe" if language else None
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    try:
        return tokenizer(" " + text).input_ids[1:]
    finally:
        tokenizer.set_prefix_tokens(language=None, task=None)


def unpadded(tensor_row: Any, mask_row: Any) -> list[int]:
    return tensor_row[mask_row.bool()].tolist()


def test_english_only_layout(whisper_processor: Any, spoken: list[tuple[Any, str]]) -> None:
    tokens = whisper_tokens(whisper_processor.tokenizer)
    batch = WhisperTranscriptionCollator(processor=whisper_processor)(rows(spoken[:3], [None, "en", None]))
    assert batch["input_features"].shape == (3, 80, 3000)
    for index, (_audio, text) in enumerate(spoken[:3]):
        text_ids = whisper_processor.tokenizer(" " + text, add_special_tokens=False).input_ids
        mask = batch["decoder_attention_mask"][index]
        assert unpadded(batch["decoder_input_ids"][index], mask) == [tokens.sot, tokens.no_timestamps, *text_ids]
        assert unpadded(batch["labels"][index], mask) == [IGNORE_INDEX, *text_ids, tokens.eot]
        padding = ~mask.bool()
        assert (batch["labels"][index][padding] == IGNORE_INDEX).all()
        assert (batch["decoder_input_ids"][index][padding] == tokens.eot).all()


def test_multilingual_layout_has_language_and_task(multilingual_processor: Any, spoken: list[tuple[Any, str]]) -> None:
    tokens = whisper_tokens(multilingual_processor.tokenizer)
    batch = WhisperTranscriptionCollator(processor=multilingual_processor)(rows(spoken[:2], ["fr", "en"]))
    first = batch["decoder_input_ids"][0].tolist()
    assert first[:4] == [tokens.sot, tokens.languages["fr"], tokens.transcribe, tokens.no_timestamps]
    assert batch["decoder_input_ids"][1, 1].item() == tokens.languages["en"]
    assert batch["labels"][0, :3].tolist() == [IGNORE_INDEX] * 3
    assert batch["labels"][0, 3].item() == first[4]  # the position after <|notimestamps|> predicts the first word


@pytest.mark.parametrize("multilingual", [False, True])
def test_unmasked_prompt_matches_the_hf_recipe(
    multilingual: bool, whisper_processor: Any, multilingual_processor: Any, spoken: list[tuple[Any, str]]
) -> None:
    processor = multilingual_processor if multilingual else whisper_processor
    language = "en" if multilingual else None
    collator = WhisperTranscriptionCollator({"mask_prompt": False}, processor=processor)
    batch = collator(rows(spoken[:2], [language, language]))
    for index, (_audio, text) in enumerate(spoken[:2]):
        mask = batch["decoder_attention_mask"][index]
        assert unpadded(batch["labels"][index], mask) == hf_recipe_labels(processor, text, language)


def test_decoder_inputs_are_the_labels_shifted_right(
    whisper_tiny_dir: Any, whisper_processor: Any, spoken: list
) -> None:
    """Same loss as letting the model shift HF-recipe labels itself, so the alignment is transformers' own."""
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir).eval()
    batch = WhisperTranscriptionCollator({"mask_prompt": False}, processor=whisper_processor)(rows(spoken[:1], [None]))
    with torch.no_grad():
        ours = model(**batch).loss
        shifted_by_model = model(input_features=batch["input_features"], labels=batch["labels"]).loss
    assert torch.allclose(ours, shifted_by_model)


def test_masked_prompt_keeps_real_decoder_inputs(whisper_processor: Any, spoken: list) -> None:
    """With masked labels, shifting them would feed padding where the prompt belongs: inputs are explicit."""
    from transformers.models.whisper.modeling_whisper import shift_tokens_right

    tokens = whisper_tokens(whisper_processor.tokenizer)
    batch = WhisperTranscriptionCollator(processor=whisper_processor)(rows(spoken[:1], [None]))
    naive = shift_tokens_right(batch["labels"], tokens.eot, tokens.sot)
    assert naive[0, 1].item() == tokens.eot  # the classic bug: <|notimestamps|> replaced by padding
    assert batch["decoder_input_ids"][0, 1].item() == tokens.no_timestamps


def test_features_are_the_processors(whisper_processor: Any, spoken: list) -> None:
    audio = spoken[0][0]
    batch = WhisperTranscriptionCollator(processor=whisper_processor)(rows(spoken[:1], [None]))
    expected = whisper_processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features
    assert np.allclose(batch["input_features"].numpy(), expected, atol=1e-5)


def test_multilingual_rows_need_a_language(multilingual_processor: Any, spoken: list) -> None:
    collator = WhisperTranscriptionCollator(processor=multilingual_processor)
    with pytest.raises(DataError, match=r"row 1 \(id='clip-1'\).*data.language"):
        collator(rows(spoken[:2], ["en", None]))
    with pytest.raises(DataError, match="row 0 .*'xx' is not an ISO 639 language code"):
        collator(rows(spoken[:1], ["xx"]))


def test_bad_rows_are_named(whisper_processor: Any, spoken: list) -> None:
    collator = WhisperTranscriptionCollator(processor=whisper_processor)
    long_clip = np.zeros(16000 * 31, dtype=np.float32)
    with pytest.raises(AudioError, match=r"row 0 \(id='long'\): 31.0 s is longer than Whisper's 30 s window"):
        collator([{"audio": long_clip, "text": "x", "language": None, "id": "long"}])
    with pytest.raises(AudioError, match="1-D array"):
        collator([{"audio": np.zeros((100, 2), np.float32), "text": "x", "language": None}])
    with pytest.raises(DataError, match="'text' must be a non-empty string"):
        collator([{"audio": spoken[0][0], "text": "  ", "language": None}])
    with pytest.raises(DataError, match="exceeds Whisper's 8-token limit"):
        WhisperTranscriptionCollator({"max_target_positions": 8}, processor=whisper_processor)(rows(spoken[:1], [None]))
    with pytest.raises(DataError, match="empty batch"):
        collator([])
