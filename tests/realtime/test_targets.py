"""The streaming targets put every word's tokens at the frame its delay dictates, checked word by word against
speech whose word timings are known to the sample, and the training inputs are exactly the inference inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from voxplug_voxtral_realtime.aligners import WordsAligner
from voxplug_voxtral_realtime.collator import StreamingCollator
from voxplug_voxtral_realtime.loading import load_realtime_processor
from voxplug_voxtral_realtime.targets import IGNORE_INDEX, StreamLayout, streaming_sequence, text_stream

from voxplug.data.alignment import WordTiming
from voxplug.errors import DataError

from .conftest import manifest_rows

FRAME_S = 0.08
SAMPLES_PER_FRAME = 1280


@pytest.fixture(scope="module")
def processor(realtime_tiny_dir: Path):
    return load_realtime_processor(realtime_tiny_dir)


@pytest.fixture(scope="module")
def rows(word_clips: Path) -> list[dict]:
    return manifest_rows(word_clips)


def collator(processor, delay_ms: int) -> StreamingCollator:
    return StreamingCollator(processor, WordsAligner(), delays_ms=(delay_ms, delay_ms))


def loud_frame(audio: np.ndarray, start_s: float, end_s: float) -> int:
    """The 80 ms frame of the padded audio where the word's first audible sample is (found in the audio itself)."""
    first, last = round(start_s * 16000), round(end_s * 16000)
    loud = np.flatnonzero(np.abs(audio[first:last]) >= 0.005)
    return (first + int(loud[0])) // SAMPLES_PER_FRAME


@pytest.mark.parametrize("delay_ms", [80, 480, 2400])
def test_every_word_sits_at_the_frame_its_delay_dictates(processor, rows: list[dict], delay_ms: int) -> None:
    """Per word: ``[STREAMING_WORD]`` at position ``1 + L + d + floor(start / 80 ms)``, its tokens right after,
    ``[STREAMING_PAD]`` everywhere else after the prompt; and the model predicts the word-start token at a
    position that has heard exactly ``d`` frames past the frame where the word's sound begins in its audio."""
    collate = collator(processor, delay_ms)
    delay, left = delay_ms // 80, 32
    for row in rows:
        (sequence,), (audio,) = collate.sequences([row], delay)
        padded = np.concatenate([np.zeros(left * SAMPLES_PER_FRAME, dtype=np.float32), audio])
        expected = [1] + [collate.pad_id] * (left + delay)
        for word in row["words"]:
            frame = math.floor(word["start"] / FRAME_S)
            position = 1 + left + delay + frame
            tokens = processor.tokenizer.encode(" " + word["word"], add_special_tokens=False)
            assert sequence.input_ids[position] == collate.word_id, (row["text"], word)
            assert sequence.input_ids[position + 1 : position + 1 + len(tokens)] == tokens, (row["text"], word)
            onset = loud_frame(padded, word["start"] + left * FRAME_S, word["end"] + left * FRAME_S)
            assert (position - 1) - onset == delay, (row["text"], word)  # predicted after hearing d more frames
            expected += [collate.pad_id] * (position - len(expected)) + [collate.word_id, *tokens]
        expected += [collate.pad_id] * (len(sequence.input_ids) - len(expected))
        assert sequence.input_ids == expected
        prompt = 1 + left + delay
        assert sequence.labels == [IGNORE_INDEX] * prompt + expected[prompt:]
        assert len(sequence.word_positions) == len(row["words"])


def test_training_inputs_are_what_the_processor_gives_at_inference(processor, rows: list[dict]) -> None:
    """Mel features bit for bit and the prompt token for token: offline (``processor(audio)``) and streaming."""
    collate = collator(processor, 480)
    for row in rows[:4]:
        batch = collate([row])
        offline = processor(row["audio"], return_tensors="pt")
        streaming = processor(row["audio"], is_streaming=True, return_tensors="pt")
        prompt = offline["input_ids"].shape[1]
        assert batch["input_features"].shape == offline["input_features"].shape
        assert bool((batch["input_features"] == offline["input_features"]).all())
        assert batch["input_ids"][0, :prompt].tolist() == offline["input_ids"][0].tolist()
        assert streaming["input_ids"][0].tolist() == offline["input_ids"][0].tolist()
        assert batch["num_delay_tokens"] == int(offline["num_delay_tokens"]) == 6
        assert batch["input_features"].shape[-1] == 8 * batch["input_ids"].shape[1]


def test_a_batch_pads_rows_with_silence_that_keeps_its_padding_label(processor, rows: list[dict]) -> None:
    collate = collator(processor, 480)
    short, long = sorted(rows[:2], key=lambda row: row["audio"].shape[0])
    batch = collate([short, long])
    alone = collate([short])
    length = alone["input_ids"].shape[1]
    assert batch["input_ids"].shape[1] > length
    assert batch["input_ids"][0, :length].tolist() == alone["input_ids"][0].tolist()
    assert set(batch["input_ids"][0, length:].tolist()) == {collate.pad_id}
    assert set(batch["labels"][0, length:].tolist()) == {collate.pad_id}


LAYOUT = StreamLayout(bos_id=1, pad_id=32, word_id=33, left_pad_frames=2, delay_frames=3)


def test_a_word_whose_frame_is_taken_moves_to_the_first_free_frame() -> None:
    words = [WordTiming("a", 0.0, 0.1), WordTiming("b", 0.1, 0.2), WordTiming("c", 0.8, 0.9)]
    stream = text_stream(words, [[100, 101, 102], [200], [300]], LAYOUT)
    # "a" at frame 0 takes frames 0-3; "b" (frame 1) starts at 4; "c" keeps its own frame 10
    assert stream == [33, 100, 101, 102, 33, 200, 32, 32, 32, 32, 33, 300]


def test_words_that_do_not_fit_the_audio_are_an_error_not_a_truncation() -> None:
    words = [WordTiming("late", 0.4, 0.5)]
    with pytest.raises(DataError, match="pad the audio by 2 more frames"):
        streaming_sequence(words, [[7, 8, 9]], LAYOUT, total_positions=13)
    assert len(streaming_sequence(words, [[7, 8, 9]], LAYOUT, total_positions=15).input_ids) == 15


def test_the_collator_pads_the_audio_further_when_the_last_word_needs_it(processor, rows: list[dict]) -> None:
    """A last word spoken right at the end with many tokens still gets all its tokens, with silence after."""
    row = dict(rows[0])
    ending = row["audio"].shape[0] / 16000
    row["text"] = "supercalifragilisticexpialidocious"
    row["words"] = [{"word": row["text"], "start": ending - 0.1, "end": ending}]
    collate = collator(processor, 80)
    (sequence,), _ = collate.sequences([row], 1)
    tokens = processor.tokenizer.encode(" " + row["text"], add_special_tokens=False)
    assert len(tokens) > 12  # more than the right padding of d + 11 frames holds
    position = sequence.word_positions[0]
    assert sequence.input_ids[position + 1 : position + 1 + len(tokens)] == tokens
    assert len(collate([row])["input_features"][0, 0]) == 8 * len(sequence.input_ids)


def test_a_delay_range_draws_one_delay_per_batch_reproducibly(processor, rows: list[dict]) -> None:
    ranged = StreamingCollator(processor, WordsAligner(), delays_ms=(80, 2400))
    again = StreamingCollator(processor, WordsAligner(), delays_ms=(80, 2400))
    other_seed = StreamingCollator(processor, WordsAligner(), delays_ms=(80, 2400), seed=1)
    batches = [[{"id": f"{first}-{second}"}] for first in range(10) for second in range(10)]
    drawn = [ranged.batch_delay(batch) for batch in batches]
    assert drawn == [again.batch_delay(batch) for batch in batches]
    assert drawn != [other_seed.batch_delay(batch) for batch in batches]
    assert set(drawn) <= set(range(1, 31)) and len(set(drawn)) > 15
    batch = ranged(rows[:2])
    assert batch["num_delay_tokens"] == ranged.batch_delay(rows[:2])
    prompt = 1 + 32 + batch["num_delay_tokens"]
    assert set(batch["labels"][:, :prompt].flatten().tolist()) == {IGNORE_INDEX}
    assert batch["labels"][0, prompt] != IGNORE_INDEX
