"""Voxtral transcription's fast inputs are the processor's: the same prompt ids, and on the CPU the same mel
features bit for bit, against ``VoxtralProcessor.apply_transcription_request`` (through ``encode_prompts``) with the
real libraries; rows the fast path cannot take go to the processor, and bad rows fail as they do there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from voxplug.data.audio import load_audio_16k
from voxplug.errors import AudioError, DataError

CHUNK = 30 * 16000


@pytest.fixture(scope="module")
def processor(tiny_voxtral: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_voxtral)


@pytest.fixture(scope="module")
def speech(speech_clips: list[tuple[Path, str]]) -> np.ndarray:
    """About a minute of real speech: the bundled clips one after another."""
    return np.concatenate([load_audio_16k(path).samples for path, _ in speech_clips])


def both_paths(processor: Any, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """``(prompts, features)`` from the fast path and from the processor, for the same rows."""
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.transcription_inputs import TranscriptionInputs

    collator = VoxtralBatchBuilder(processor)
    fast = TranscriptionInputs(collator).encode(rows)
    assert fast is not None, "the fast path refused rows it should take"
    return fast, collator.encode_prompts(rows)


def test_pcm16_arithmetic_is_soundfiles_round_trip_and_the_probe_tells_near_rules_apart() -> None:
    from voxplug_voxtral.transcription_inputs import (
        pcm16_arithmetic_matches_soundfile,
        pcm16_probe,
        pcm16_round_trip,
        soundfile_pcm16_round_trip,
    )

    probe = pcm16_probe()
    once = soundfile_pcm16_round_trip(probe)
    twice = soundfile_pcm16_round_trip(once)  # the processor's write, mistral-common's read, write and read
    ours = pcm16_round_trip(probe.copy())
    assert ours.view(np.uint32).tolist() == once.view(np.uint32).tolist() == twice.view(np.uint32).tolist()
    assert pcm16_arithmetic_matches_soundfile()
    assert ours.max() == np.float32(32767 / 32768) and ours.min() == -1.0  # full scale and beyond saturate
    # the rules a reading of libsndfile might suggest instead each differ from it somewhere in the probe
    for rule in (lambda x: np.rint(x * 32767), lambda x: np.floor(x * 32768), lambda x: np.rint(x * 32768)):
        with np.errstate(over="ignore", invalid="ignore"):
            other = np.nan_to_num(np.clip(rule(probe.astype(np.float64)), -32768, 32767), nan=-32768) / 32768
        assert not np.array_equal(other.astype(np.float32), once)


LENGTHS = [1, 7, 1601, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 3]


def test_prompts_and_features_equal_the_processors_at_the_chunk_boundaries(processor: Any, speech: np.ndarray) -> None:
    """Lengths around 30 s and 60 s, a one-sample clip, odd counts; every language form; loud audio that clips."""
    loud = np.tile(speech, 3)[: 2 * CHUNK + 3] * np.float32(2.5)  # far past full scale, as the WAV clips it
    loud[:4] = [1.0, -1.0, np.float32(1 + 2**-23), np.float32(-1 - 2**-23)]
    rows = []
    for index, length in enumerate(LENGTHS):
        for language in (None, "en", "fr"):
            audio = loud[:length] if index % 2 else np.tile(speech, 3)[:length]
            rows.append({"audio": audio, "language": language})
    (fast_prompts, fast_features), (prompts, features) = both_paths(processor, rows)
    assert fast_prompts == prompts
    assert [prompt.count(24) for prompt in prompts[::3]] == [375, 375, 375, 375, 375, 750, 750, 1125]
    assert fast_features.dtype == features.dtype and fast_features.shape == features.shape == (36, 128, 3000)
    assert torch.equal(fast_features, features)


def test_features_of_real_speech_of_many_lengths_are_bit_identical(processor: Any, speech: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(speech) // 2, 12)
    lengths = [int(n) | 1 for n in rng.integers(16000, 2 * CHUNK, 12)]  # odd sample counts, one and two chunks
    rows = [{"audio": np.tile(speech, 2)[s : s + n], "language": "en"} for s, n in zip(starts, lengths, strict=True)]
    rows.append({"audio": speech[:8000].astype(np.float64), "language": "sv-SE"})  # float64 and a regional code
    (fast_prompts, fast_features), (prompts, features) = both_paths(processor, rows)
    assert fast_prompts == prompts and torch.equal(fast_features, features)


def test_audio_that_is_not_floating_point_goes_to_the_processor(tiny_voxtral: Path, processor: Any) -> None:
    from transformers import VoxtralForConditionalGeneration
    from voxplug_voxtral.generation import VoxtralDecoding

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).eval()
    decoding = VoxtralDecoding(model, processor)
    assert decoding.inputs is not None
    pcm = (np.sin(np.arange(24000) / 9) * 8000).astype(np.int16)
    assert decoding.inputs.encode([{"audio": pcm, "language": "en"}]) is None
    ours = decoding.encode([pcm], ["en"])
    prompts, features = decoding.collator.encode_prompts([{"audio": pcm, "language": "en"}])
    assert ours.input_ids.tolist() == prompts and torch.equal(ours.features, features)
    assert VoxtralDecoding(model, processor, processor_inputs=True).inputs is None


BAD_ROWS = [
    pytest.param([np.zeros(16000, np.float32), [0.1] * 100], AudioError, id="a list, not an array"),
    pytest.param([np.zeros(16000, np.float32), np.zeros((2, 800), np.float32)], AudioError, id="stereo"),
    pytest.param([np.zeros(16000, np.float32), np.zeros(0, np.float32)], AudioError, id="empty"),
]


@pytest.mark.parametrize(("audios", "error"), BAD_ROWS)
def test_bad_rows_fail_as_in_the_processor_path_naming_the_row(
    tiny_voxtral: Path, processor: Any, audios: list[Any], error: type[Exception]
) -> None:
    from transformers import VoxtralForConditionalGeneration
    from voxplug_voxtral.generation import VoxtralDecoding

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).eval()
    with pytest.raises(error) as theirs:
        VoxtralDecoding(model, processor).collator.encode_prompts([{"audio": a, "language": "en"} for a in audios])
    with pytest.raises(error) as ours:
        VoxtralDecoding(model, processor).encode(audios, ["en", "en"])
    assert str(ours.value) == str(theirs.value) and "row 1" in str(ours.value)


def test_an_unknown_language_fails_as_in_the_processor_path(tiny_voxtral: Path, processor: Any) -> None:
    from transformers import VoxtralForConditionalGeneration
    from voxplug_voxtral.generation import VoxtralDecoding

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).eval()
    audios, languages = [np.zeros(16000, np.float32)] * 2, ["en", "xx"]
    decoding = VoxtralDecoding(model, processor)
    with pytest.raises(DataError) as theirs:
        decoding.collator.encode_prompts([{"audio": a, "language": b} for a, b in zip(audios, languages, strict=True)])
    with pytest.raises(DataError) as ours:
        decoding.encode(audios, languages)
    assert str(ours.value) == str(theirs.value) and "row 1" in str(ours.value)


def test_features_are_float32_under_autocast(processor: Any, speech: np.ndarray) -> None:
    """With the CPU's shapes the inputs are prepared on the calling thread, which may be autocasting (evaluation
    inside a mixed-precision region): the features are still the processor's float32 ones."""
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.transcription_inputs import TranscriptionInputs

    collator = VoxtralBatchBuilder(processor)
    rows = [{"audio": speech[: 16000 * 7], "language": "en"}]
    _, features = collator.encode_prompts(rows)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoded = TranscriptionInputs(collator).encode(rows)
    assert encoded is not None and torch.equal(encoded[1], features)


def test_float64_audio_between_float32_values_gets_the_processors_rounding(processor: Any, speech: np.ndarray) -> None:
    """float64 samples just below a 16-bit level's rounding boundary, whose nearest float32 lies on the boundary:
    converted to 16 bits from float64 they would round down, from float32 up. Both paths take a row's audio as
    float32 (``audio_of``) before anything else, so they agree."""
    levels = np.arange(-2000, 2000) * 65536.0
    below_boundaries = (levels - 0.5) / 2**31 - 2**-50  # float32 rounds each to its boundary
    assert np.any(below_boundaries.astype(np.float32).astype(np.float64) != below_boundaries)
    audio = np.concatenate([below_boundaries, speech[:16000].astype(np.float64)])
    (fast_prompts, fast_features), (prompts, features) = both_paths(processor, [{"audio": audio, "language": "en"}])
    assert fast_prompts == prompts and torch.equal(fast_features, features)


def test_the_gpu_log_mel_is_the_extractors_own_torch_arithmetic(processor: Any, speech: np.ndarray) -> None:
    """:func:`log_mel` (the features that stay on a GPU) computes what ``WhisperFeatureExtractor``'s torch path
    computes, op for op: on the CPU the two agree bit for bit, so on a GPU they run the same kernels."""
    from voxplug_voxtral.transcription_inputs import MelFilters, log_mel

    extractor = processor.feature_extractor
    waves = np.zeros((3, 2 * CHUNK), dtype=np.float32)
    waves[0, : len(speech[: 2 * CHUNK])] = speech[: 2 * CHUNK]
    waves[1, :CHUNK] = speech[:CHUNK] * 0.25
    theirs = extractor._torch_extract_fbank_features(waves.copy(), "cpu")
    ours = log_mel(torch.from_numpy(waves), MelFilters(extractor, torch.device("cpu")))
    assert ours.shape == theirs.shape == (3, extractor.feature_size, 2 * CHUNK // extractor.hop_length)
    assert torch.equal(ours, torch.from_numpy(theirs))  # the silent row included (its floor is log10(1e-10) - 8)
