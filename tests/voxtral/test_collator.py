"""Exact token layout of VoxtralBatchBuilder on real VoxtralProcessor output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from voxplug_voxtral.collator import VoxtralBatchBuilder

from voxplug.errors import AudioError, DataError

BOS, EOS, PAD, INST, END_INST, AUDIO, BEGIN_AUDIO, TRANSCRIBE = 1, 2, 11, 3, 4, 24, 25, 34


def tone(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def expected_row(tokenizer, chunks: int, language: str | None, text: str) -> tuple[list[int], int]:
    """The full id sequence of one row and the length of its prompt."""
    lang = tokenizer(f"lang:{language}", add_special_tokens=False)["input_ids"] if language else []
    prompt = [BOS, INST, BEGIN_AUDIO] + [AUDIO] * (375 * chunks) + [END_INST] + lang + [TRANSCRIBE]
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return prompt + text_ids + [EOS], len(prompt)


def test_layout_of_a_3s_and_a_35s_clip(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    rows = [
        {"audio": tone(3.0), "text": "hello world", "language": "en"},
        {"audio": tone(35.0, seed=1), "text": "good morning", "language": "en"},
    ]
    batch = collator(rows)
    assert batch["input_features"].shape == (3, 128, 3000)
    assert batch["input_features"].dtype == torch.float32
    width = batch["input_ids"].shape[1]
    for index, (row, chunks) in enumerate(zip(rows, (1, 2), strict=True)):
        ids, prompt_len = expected_row(voxtral_processor.tokenizer, chunks, "en", row["text"])
        pads = width - len(ids)
        assert ids[:3] == [1, 3, 25] and ids.count(AUDIO) == 375 * chunks
        assert batch["input_ids"][index].tolist() == ids + [PAD] * pads
        assert batch["attention_mask"][index].tolist() == [1] * len(ids) + [0] * pads
        assert batch["labels"][index].tolist() == [-100] * prompt_len + ids[prompt_len:] + [-100] * pads
    longest = len(expected_row(voxtral_processor.tokenizer, 2, "en", rows[1]["text"])[0])
    assert width % 8 == 0 and longest <= width < longest + 8  # padded to a multiple of 8, no further
    assert batch["labels"][1, longest - 1].item() == EOS  # the longest row ends with EOS


def test_padding_multiple_can_be_turned_off(voxtral_processor) -> None:
    rows = [{"audio": tone(2.0), "text": "hi", "language": "en"}]
    ids, _ = expected_row(voxtral_processor.tokenizer, 1, "en", "hi")
    exact = VoxtralBatchBuilder(voxtral_processor, pad_to_multiple_of=1)(rows)
    assert exact["input_ids"][0].tolist() == ids and exact["labels"][0, -1].item() == EOS


def test_language_none_gives_no_lang_tokens(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    batch = collator([{"audio": tone(2.0), "text": "hi", "language": None}])
    ids, prompt_len = expected_row(voxtral_processor.tokenizer, 1, None, "hi")
    row = batch["input_ids"][0].tolist()
    assert row[: len(ids)] == ids and set(row[len(ids) :]) <= {PAD}
    assert ids[prompt_len - 2 : prompt_len] == [END_INST, TRANSCRIBE]


def test_rows_keep_their_own_language_in_one_batch(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    rows = [{"audio": tone(1.0), "text": "a", "language": lang} for lang in ("fr", None, "en")]
    batch = collator(rows)
    tokenizer = voxtral_processor.tokenizer
    for index, row in enumerate(rows):
        ids, _ = expected_row(tokenizer, 1, row["language"], "a")
        assert batch["input_ids"][index, : len(ids)].tolist() == ids


def test_one_call_per_batch_equals_one_call_per_row(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    rows = [
        {"audio": tone(4.0), "text": "one", "language": "en"},
        {"audio": tone(31.0, seed=2), "text": "two words", "language": None},
    ]
    batch = collator(rows)
    singles = [collator([row]) for row in rows]
    assert torch.equal(batch["input_features"], torch.cat([single["input_features"] for single in singles]))
    for index, single in enumerate(singles):
        length = single["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][index, :length], single["input_ids"][0])


def test_too_long_transcript_is_an_error_naming_the_row(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor, max_text_tokens=3)
    rows = [
        {"audio": tone(1.0), "text": "ok", "language": "en", "id": "clip-1"},
        {"audio": tone(1.0), "text": "this transcript is far too long", "language": "en", "id": "clip-2"},
    ]
    with pytest.raises(DataError, match=r"row 1 \(id='clip-2'\).*max_text_tokens=3"):
        collator(rows)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((16000, 2), dtype=np.float32), "mono"),
        (np.zeros(0, dtype=np.float32), "empty"),
        ([0.0] * 16000, "numpy array"),
    ],
)
def test_unusable_audio_is_an_error_naming_the_row(voxtral_processor, audio, message: str) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    with pytest.raises(AudioError, match=rf"row 0 \(id='bad'\).*{message}"):
        collator([{"audio": audio, "text": "x", "language": "en", "id": "bad"}])


def test_audio_at_another_sampling_rate_is_refused(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    row = {"audio": tone(1.0), "sampling_rate": 22050, "text": "x", "language": "en"}
    with pytest.raises(AudioError, match="row 0: audio is sampled at 22050 Hz"):
        collator([row])


def test_inference_batch_is_left_padded_prompt_only(voxtral_processor) -> None:
    collator = VoxtralBatchBuilder(voxtral_processor)
    batch = collator.inference_batch([tone(2.0), tone(33.0)], ["en", None])
    assert batch["input_features"].shape == (3, 128, 3000)
    assert batch["input_ids"][:, -1].tolist() == [TRANSCRIBE, TRANSCRIBE]
    short_prompt, _ = expected_row(voxtral_processor.tokenizer, 1, "en", "")
    short_prompt = short_prompt[:-1]  # drop the EOS that follows the (empty) transcript
    pads = batch["input_ids"].shape[1] - len(short_prompt)
    assert batch["input_ids"][0].tolist() == [PAD] * pads + short_prompt
    assert batch["attention_mask"][0].tolist() == [0] * pads + [1] * len(short_prompt)
    with pytest.raises(DataError, match="one language"):
        collator.inference_batch([tone(1.0)], ["en", "fr"])
