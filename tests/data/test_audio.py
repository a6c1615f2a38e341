"""Decoding, resampling, clip checks, atomic writing and hashing in voxplug.data.audio."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxplug.data import audio
from voxplug.data.audio import (
    AudioClip,
    analyse_clip,
    check_clip,
    content_hash,
    decode_audio,
    load_audio_16k,
    resample_to_16k,
    to_mono,
    to_pcm16,
    write_wav_16k,
)
from voxplug.data.issues import Issue
from voxplug.errors import AudioError, DataError
from voxplug.testing.speech import ZOO_DURATION_S, ZOO_TONE_HZ, make_bad_audio_files

# case: (sample rate, channels, libsndfile subtype, largest decoding error against the ideal tone)
READABLE_CASES = {
    "rate_8k": (8_000, 1, "PCM_16", 4e-5),
    "stereo_44k": (44_100, 2, "PCM_16", 4e-5),
    "pcm24": (48_000, 1, "PCM_24", 1e-6),
    "pcm32": (22_050, 1, "PCM_32", 1e-6),
    "float32": (16_000, 1, "FLOAT", 1e-7),
    "flac": (22_050, 1, "PCM_16", 4e-5),
    "ogg": (32_000, 1, "VORBIS", None),
    "opus": (48_000, 1, "OPUS", None),
    "mp3": (44_100, 1, "MPEG_LAYER_III", None),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The awkward-input files, written once for this module."""
    return make_bad_audio_files(tmp_path_factory.mktemp("zoo"))


def sine(rate: int, seconds: float, hz: float = ZOO_TONE_HZ, level: float = 0.5) -> np.ndarray:
    """A plain float32 sine."""
    return (level * np.sin(2 * np.pi * hz * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest FFT bin."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def zoo_file(zoo: dict[str, Path], case: str) -> Path:
    if case not in zoo:
        pytest.skip(f"this libsndfile cannot write {case}")
    return zoo[case]


# --- decoding ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", READABLE_CASES)
def test_decode_keeps_the_file_rate_channels_and_bit_depth(zoo: dict[str, Path], case: str) -> None:
    rate, channels, subtype, max_error = READABLE_CASES[case]
    path = zoo_file(zoo, case)
    assert sf.info(str(path)).subtype == subtype

    samples, decoded_rate = decode_audio(path)

    assert decoded_rate == rate
    assert samples.dtype == np.float32 and samples.shape[1] == channels
    assert abs(len(samples) / rate - ZOO_DURATION_S) < 0.05
    if max_error is not None:  # lossless: the steady middle of the tone comes back to the bit depth's precision
        middle = slice(round(0.1 * rate), round(1.9 * rate))
        assert np.abs(samples[middle, 0] - sine(rate, ZOO_DURATION_S)[middle]).max() < max_error


@pytest.mark.parametrize("case", READABLE_CASES)
def test_load_audio_16k_gives_mono_16k_with_the_same_pitch_and_length(zoo: dict[str, Path], case: str) -> None:
    rate, channels, _, _ = READABLE_CASES[case]
    clip = load_audio_16k(zoo_file(zoo, case))

    assert isinstance(clip, AudioClip)
    assert (clip.sample_rate, clip.channels) == (rate, channels)
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration_s == pytest.approx(ZOO_DURATION_S, abs=0.05)
    assert len(clip.samples) == pytest.approx(16_000 * ZOO_DURATION_S, abs=800)
    assert dominant_hz(clip.samples, 16_000) == pytest.approx(ZOO_TONE_HZ, abs=2)
    expected_peak = 0.4 if case == "stereo_44k" else 0.5  # stereo channels are 0.5 and 0.3: mono averages them
    assert np.abs(clip.samples).max() == pytest.approx(expected_peak, abs=0.03)


def test_decoding_bytes_equals_decoding_the_path(zoo: dict[str, Path]) -> None:
    from_path, rate_from_path = decode_audio(zoo["flac"])
    from_bytes, rate_from_bytes = decode_audio(zoo["flac"].read_bytes())
    assert rate_from_path == rate_from_bytes
    np.testing.assert_array_equal(from_path, from_bytes)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("corrupt", "not a readable audio file (expected WAV, FLAC, OGG or MP3): Error in WAV file"),
        ("truncated", "truncated WAV file: the header declares 64000 bytes of audio but only"),
        ("empty", "the file is empty (0 bytes)"),
        ("not_audio", "not a readable audio file (expected WAV, FLAC, OGG or MP3): Format not recognised"),
    ],
)
def test_unreadable_files_raise_an_audio_error_naming_file_and_reason(
    zoo: dict[str, Path], case: str, reason: str
) -> None:
    path = zoo[case]
    with pytest.raises(AudioError) as raised:
        load_audio_16k(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert reason in str(raised.value)
    assert isinstance(raised.value, DataError)


def test_a_text_file_is_called_out_as_text(zoo: dict[str, Path]) -> None:
    with pytest.raises(AudioError, match=r"looks like text"):
        decode_audio(zoo["not_audio"])


def test_bytes_errors_use_the_name_given(zoo: dict[str, Path]) -> None:
    with pytest.raises(AudioError, match=r"^row 7 of train.tsv: truncated WAV file"):
        decode_audio(zoo["truncated"].read_bytes(), name_for_errors="row 7 of train.tsv")
    with pytest.raises(AudioError, match=r"^<bytes>: the file is empty"):
        decode_audio(b"")


def test_a_missing_file_is_an_audio_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError, match=rf"^{missing}: cannot open the file: No such file"):
        decode_audio(missing)


def test_non_finite_samples_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.1, np.nan, 0.2], dtype=np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"NaN or infinite"):
        decode_audio(path)


def test_other_containers_libsndfile_reads_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "tone.aiff"
    sf.write(path, sine(16_000, 0.5), 16_000, format="AIFF")
    with pytest.raises(AudioError, match=r"tone.aiff: AIFF audio is not supported \(expected WAV, FLAC, OGG or MP3\)"):
        decode_audio(path)


def test_max_duration_is_enforced_with_a_clear_message(zoo: dict[str, Path]) -> None:
    with pytest.raises(AudioError) as raised:
        load_audio_16k(zoo["too_long"], max_duration_s=30)
    assert str(raised.value) == f"{zoo['too_long']}: 45.0 s is longer than the 30 s limit"
    assert load_audio_16k(zoo["too_long"]).duration_s == pytest.approx(45.0)


# --- resampling and channels --------------------------------------------------------------------------------


def test_resampling_a_44k_sine_keeps_its_frequency_and_duration() -> None:
    resampled = resample_to_16k(sine(44_100, 1.0), 44_100)
    assert resampled.dtype == np.float32
    assert len(resampled) == 16_000
    assert dominant_hz(resampled, 16_000) == pytest.approx(440, abs=1)
    # HQ resampling keeps the level: compare away from the filter's edge effects.
    np.testing.assert_allclose(resampled[800:-800], sine(16_000, 1.0)[800:-800], atol=2e-3)


def test_resampling_keeps_channels_and_leaves_16k_alone() -> None:
    stereo = np.stack([sine(22_050, 0.5), sine(22_050, 0.5, level=0.1)], axis=1)
    assert resample_to_16k(stereo, 22_050).shape == (8_000, 2)
    already = sine(16_000, 0.1)
    np.testing.assert_array_equal(resample_to_16k(already, 16_000), already)
    with pytest.raises(ValueError, match="positive"):
        resample_to_16k(already, 0)


def test_to_mono_averages_channels() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, -0.5]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(stereo), np.array([0.5, 0.0], dtype=np.float32))
    np.testing.assert_array_equal(to_mono(np.array([0.25, 0.5])), np.array([0.25, 0.5], dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_mono(np.zeros((2, 2, 2)))


# --- clip checks --------------------------------------------------------------------------------------------


def codes(issues: list[Issue]) -> list[str]:
    return [issue.code for issue in issues]


def test_analyse_clip_measures_a_known_sine() -> None:
    samples = np.concatenate([sine(16_000, 1.0), np.zeros(16_000, dtype=np.float32)])
    stats = analyse_clip(samples)
    assert stats.duration_s == 2.0
    assert stats.peak == pytest.approx(0.5, abs=1e-4)
    assert stats.peak_dbfs == pytest.approx(-6.02, abs=0.01)
    assert stats.rms_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2) / np.sqrt(2)), abs=0.01)  # half silent
    assert stats.clipped_fraction == 0.0
    assert stats.active_duration_s == pytest.approx(1.0, abs=0.02)
    assert not stats.is_silent and not stats.is_near_empty
    assert check_clip(stats) == []


def test_zoo_clips_fail_the_checks_they_are_made_for(zoo: dict[str, Path]) -> None:
    def issues_of(case: str) -> list[Issue]:
        return check_clip(analyse_clip(load_audio_16k(zoo[case]).samples))

    too_long = issues_of("too_long")
    assert codes(too_long) == ["too_long"] and too_long[0].is_error
    assert too_long[0].message == "45.0 s is longer than the 30 s limit"
    silent = issues_of("silent")
    assert codes(silent) == ["silent"] and silent[0].severity == "error"
    clipped = issues_of("clipped")
    assert codes(clipped) == ["clipped"] and clipped[0].severity == "warning"
    assert "% of samples are clipped" in clipped[0].message


def test_short_empty_quiet_and_near_empty_clips() -> None:
    assert codes(check_clip(analyse_clip(sine(16_000, 0.2)))) == ["too_short"]
    assert codes(check_clip(analyse_clip(sine(16_000, 0.2)), min_duration_s=0.1)) == []
    assert codes(check_clip(analyse_clip(np.zeros(0, dtype=np.float32)))) == ["empty"]
    assert codes(check_clip(analyse_clip(sine(16_000, 2.0, level=0.01)))) == ["quiet"]
    click = np.zeros(32_000, dtype=np.float32)
    click[16_000:16_800] = sine(16_000, 0.05)
    issues = check_clip(analyse_clip(click))
    assert codes(issues) == ["near_empty"] and issues[0].severity == "warning"


def test_errors_come_before_warnings() -> None:
    long_and_clipped = np.clip(sine(16_000, 31.0, level=2.0), -1, 1)
    assert codes(check_clip(analyse_clip(long_and_clipped))) == ["too_long", "clipped"]


def test_issue_describes_itself_with_its_source() -> None:
    issue = Issue("error", "too_long", "45.2 s is longer than the 30 s limit")
    assert issue.describe("x.wav") == "x.wav: 45.2 s is longer than the 30 s limit (error: too_long)"
    assert issue.describe() == "45.2 s is longer than the 30 s limit (error: too_long)"


# --- writing and hashing -----------------------------------------------------------------------------------


def test_write_wav_16k_writes_16_bit_mono_16k_and_round_trips(tmp_path: Path) -> None:
    samples = sine(16_000, 0.5, level=0.95)  # loud: exposes a scale mismatch
    path = write_wav_16k(tmp_path / "out.wav", samples)

    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (16_000, 1, "PCM_16", "WAV")
    read_back = load_audio_16k(path).samples
    np.testing.assert_array_equal(read_back, to_pcm16(samples) / np.float32(32768))
    assert content_hash(read_back) == content_hash(samples)
    assert os.listdir(tmp_path) == ["out.wav"]


def test_write_wav_16k_clips_instead_of_wrapping(tmp_path: Path) -> None:
    path = write_wav_16k(tmp_path / "loud.wav", np.array([1.5, -1.5, 0.0], dtype=np.float32))
    pcm, _ = sf.read(path, dtype="int16")
    assert pcm.tolist() == [32767, -32768, 0]


def test_write_wav_16k_refuses_multichannel(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mono"):
        write_wav_16k(tmp_path / "stereo.wav", np.zeros((10, 2), dtype=np.float32))


def test_a_failed_replace_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "clip.wav"
    target.write_bytes(b"old content")

    def refuse(source: str, destination: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(audio.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_wav_16k(target, sine(16_000, 0.1))
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["clip.wav"]


def test_a_write_failing_half_way_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write_half_then_fail(handle: io.BufferedWriter, *args: object, **kwargs: object) -> None:
        handle.write(b"RIFF\x00\x00")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(audio.sf, "write", write_half_then_fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_wav_16k(tmp_path / "clip.wav", sine(16_000, 0.1))
    assert os.listdir(tmp_path) == []


def test_content_hash_follows_the_16k_pcm16_samples(tmp_path: Path) -> None:
    samples = sine(16_000, 0.5, level=0.95)
    wav_bytes = write_wav_16k(tmp_path / "a.wav", samples).read_bytes()
    flac = io.BytesIO()
    sf.write(flac, to_pcm16(samples), 16_000, format="FLAC", subtype="PCM_16")

    digest = content_hash(samples)
    assert len(digest) == 64
    assert content_hash(wav_bytes) == digest  # decoded file bytes
    assert content_hash(flac.getvalue()) == digest  # the same audio in another container
    nudged = samples.copy()
    nudged[100] += 1 / 32768
    assert content_hash(nudged) != digest
    with pytest.raises(ValueError, match="mono"):
        content_hash(np.zeros((4, 2), dtype=np.float32))
