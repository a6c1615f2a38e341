"""Greedy transcription: prompts per language, language detection, batching, and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voxplug_whisper.generation import detect_languages, encode, log_mel_features, transcribe, transcribe_ids
from voxplug_whisper.processor import whisper_tokens

from voxplug.errors import AudioError, DataError


@pytest.fixture(scope="module")
def multilingual_model(whisper_multilingual_dir: Path) -> Any:
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(whisper_multilingual_dir).eval()


def test_detection_matches_transformers(multilingual_model: Any, multilingual_processor: Any, spoken: list) -> None:
    audios = [audio for audio, _ in spoken[:2]]
    tokens = whisper_tokens(multilingual_processor.tokenizer)
    features = log_mel_features(multilingual_processor, audios)
    ours = detect_languages(multilingual_model, encode(multilingual_model, features), tokens)
    theirs = multilingual_model.detect_language(input_features=features).tolist()
    assert [tokens.languages[code] for code in ours] == theirs


def test_prompts_follow_each_rows_language(multilingual_model: Any, multilingual_processor: Any, spoken: list) -> None:
    """One batch, one prompt per row: the row's language, or the detected one for None; results in order."""
    seen: list[list[list[int]]] = []

    def record(module: Any, args: tuple, kwargs: dict) -> None:
        prompts = kwargs.get("decoder_input_ids")
        if prompts is not None and prompts.shape[1] > 1:  # the prompt pass, not language detection
            seen.append(prompts.tolist())

    handle = multilingual_model.register_forward_pre_hook(record, with_kwargs=True)
    tokens = whisper_tokens(multilingual_processor.tokenizer)
    audios = [audio for audio, _ in spoken[:3]]
    try:
        mixed = transcribe_ids(multilingual_model, multilingual_processor, audios, ["fr", None, "de"], max_new_tokens=4)
    finally:
        handle.remove()
    features = log_mel_features(multilingual_processor, audios[1:2])
    detected = detect_languages(multilingual_model, encode(multilingual_model, features), tokens)[0]
    prompts = [
        [tokens.sot, tokens.languages[code], tokens.transcribe, tokens.no_timestamps] for code in ("fr", detected, "de")
    ]
    longest_first = sorted(range(3), key=lambda index: -len(audios[index]))  # the order clips are batched in
    assert seen == [[prompts[index] for index in longest_first]]
    single = transcribe_ids(multilingual_model, multilingual_processor, audios[2:], ["de"], max_new_tokens=4)
    assert mixed[2] == single[0]


def test_english_only_models_ignore_languages(whisper_tiny_dir: Path, whisper_processor: Any, spoken: list) -> None:
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir)
    model.train()
    audios = [audio for audio, _ in spoken[:2]]
    with_language = transcribe(model, whisper_processor, audios, ["en", "de"], max_new_tokens=5, batch_size=1)
    assert with_language == transcribe(model, whisper_processor, audios, [None, None], max_new_tokens=5)
    assert model.training  # restored after generation


def test_refusals(whisper_tiny_dir: Path, whisper_processor: Any) -> None:
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir)
    with pytest.raises(AudioError, match="clip 0: 30.5 s is longer than Whisper's 30 s window"):
        transcribe(model, whisper_processor, [np.zeros(16000 * 30 + 8000, np.float32)], [None])
    with pytest.raises(DataError, match="2 audio clips but 1 languages"):
        transcribe(model, whisper_processor, [np.zeros(16000, np.float32)] * 2, [None])


def test_the_encoder_runs_with_a_contiguous_residual_stream_and_the_same_output(whisper_tiny_dir: Path) -> None:
    """``encode`` gives the encoder's first layer a contiguous copy of transformers' permuted sum only while it runs;
    ``load_whisper`` keeps it on. The output is the same as the stock encoder's."""
    import torch
    from transformers import WhisperForConditionalGeneration
    from voxplug_whisper.loading import load_whisper

    from voxplug.models.encoders import has_contiguous_residual_stream

    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir).eval()
    encoder = model.model.encoder
    seen: list[bool] = []  # the last layer's output, as the final norm gets it
    encoder.layer_norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    features = torch.randn(2, model.config.num_mel_bins, 3000, generator=torch.Generator().manual_seed(0))
    ours = encode(model, features).last_hidden_state
    with torch.no_grad():
        stock = encoder(features).last_hidden_state
    assert seen == [True, False]  # encode's pass, then the stock forward: the hook is gone
    assert torch.equal(ours, stock)
    assert not has_contiguous_residual_stream(encoder)
    loaded, _ = load_whisper(str(whisper_tiny_dir), device="cpu")
    encode(loaded, features)
    assert has_contiguous_residual_stream(loaded.model.encoder)  # the loader's stays after a call
