"""The built-in aligners: word timings the data already has (``words``), and Whisper's (``whisper``).

``words`` reads a row's ``words`` field (``[{"word", "start", "end"}, ...]`` in seconds, e.g. from a forced
aligner run elsewhere, or from speech synthesised word by word) and checks it lists the transcript's words.

``whisper`` computes timings from the audio with a Whisper checkpoint voxplug can load (``openai/whisper-*``, or
the tiny.en that ``voxplug model import-ct2`` converts from faster-whisper's format): it teacher-forces the
row's own transcript through the decoder and reads word starts from the cross-attention of the checkpoint's
alignment heads, aligned to the audio frames by dynamic time warping (transformers' ``return_token_timestamps``,
the method of OpenAI's ``word_timestamps``). Forcing the transcript means the timings are of exactly the
transcript's words, whatever Whisper would have heard.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from voxplug.api import (
    Aligner,
    DataError,
    ModelError,
    PluginOptions,
    WordTiming,
    describe,
    get_plugin_host,
    parse_word_timings,
    transcript_words,
)

SAMPLING_RATE = 16000
ENCODER_FRAMES_PER_S = 50  # Whisper's encoder output: one frame per 20 ms
SNAP_WINDOW_S = 0.3
ENERGY_FRAME_S = 0.01
SPEECH_BELOW_PEAK_DB = 35.0
MIN_PAUSE_S = 0.1


def comparable(word: str) -> str:
    """A word lower-cased without punctuation, for checking that timings list the transcript's words."""
    return re.sub(r"[^\w']", "", word.lower())


class WordsAligner(Aligner):
    """Timings from the row's ``words`` field, which must list the transcript's words in order."""

    name = "words"
    description = "word timings already in the data (a 'words' field of {word, start, end} in seconds)"

    def align(self, row: Mapping[str, Any]) -> list[WordTiming]:
        """The row's ``words``, checked against its transcript (punctuation and case aside)."""
        words = transcript_words(row)
        if "words" not in row:
            raise DataError(
                f"{describe(row)}: no 'words' field; the 'words' aligner needs word timings in the data "
                "(or choose a model aligner, e.g. aligner: whisper)"
            )
        audio = row.get("audio")
        duration = None if audio is None else audio.shape[0] / SAMPLING_RATE
        timings = parse_word_timings(row["words"], describe(row), duration_s=duration)
        listed = [timing.word for timing in timings]
        if [comparable(word) for word in listed] != [comparable(word) for word in words]:
            raise DataError(
                f"{describe(row)}: 'words' lists {listed!r} but the transcript says {words!r}; the timings must be "
                "of the transcript's words, in order"
            )
        return [WordTiming(word, timing.start, timing.end) for word, timing in zip(words, timings, strict=True)]


class WhisperAlignerOptions(PluginOptions):
    """Options of the ``whisper`` aligner."""

    model: str = Field(
        "openai/whisper-small",
        description="a Whisper checkpoint (Hub id or folder) with alignment heads in its generation config",
    )
    device: str = Field("cpu", description="where the aligner's model runs (it runs where the collator runs)")
    snap_to_speech: bool = Field(
        True,
        description="move each word's start and end to the nearest onset and end of sound in the audio (within "
        f"{SNAP_WINDOW_S} s): cross-attention timings are coarse, the edges of sound are exact where there are pauses",
    )


class WhisperAligner(Aligner):
    """Word starts from a Whisper model's cross-attention over the row's own transcript (forced alignment)."""

    name = "whisper"
    description = "word timings computed with a Whisper model (cross-attention alignment of the transcript)"
    Options = WhisperAlignerOptions
    options: WhisperAlignerOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._loaded: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # data-loader workers load their own copy of the model
        return {**self.__dict__, "_loaded": None}

    def model(self) -> tuple[Any, Any]:
        """The Whisper model and processor, loaded once per process through the ``whisper`` model family."""
        if self._loaded is None:
            family = get_plugin_host().extension("model family", "whisper")()
            model, processor = family.load(
                self.options.model, dtype="fp32", attn_implementation="eager", device=self.options.device
            )
            if not getattr(model.generation_config, "alignment_heads", None):
                raise ModelError(
                    f"aligner whisper: {self.options.model!r} has no alignment_heads in its generation config; "
                    "use an openai/whisper-* checkpoint or one converted by `voxplug model import-ct2`"
                )
            self._loaded = (model.eval(), processor)
        return self._loaded

    def align(self, row: Mapping[str, Any]) -> list[WordTiming]:
        """Force the transcript through Whisper and time each word by DTW over its alignment heads' attention."""
        import torch

        words = transcript_words(row)
        audio = row.get("audio")
        if audio is None:
            raise DataError(f"{describe(row)}: no audio to align")
        duration = audio.shape[0] / SAMPLING_RATE
        if duration > 30.0:
            raise DataError(f"{describe(row)}: {duration:.1f} s is longer than Whisper's 30 s window")
        model, processor = self.model()
        prompt = self._prompt(model, processor, row.get("language"))
        pieces = [processor.tokenizer.encode(" " + word, add_special_tokens=False) for word in words]
        forced = [*prompt, *(token for piece in pieces for token in piece), model.generation_config.eos_token_id]
        features = processor.feature_extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        device = next(model.parameters()).device
        with torch.inference_mode():
            output = model(
                input_features=features["input_features"].to(device),
                decoder_input_ids=torch.tensor([forced], device=device),
                output_attentions=True,
                use_cache=False,
            )
        frames = math.ceil(duration * ENCODER_FRAMES_PER_S)
        heads = model.generation_config.alignment_heads
        weights = torch.stack([output.cross_attentions[layer][0, head, :, :frames] for layer, head in heads])
        # rows from the one before the first text token to the last text token: each predicts one text token or EOS
        token_times = attention_token_times(weights[:, len(prompt) - 1 : -1], model.config.median_filter_width)
        timings = word_timings(words, pieces, token_times, duration)
        return snap_to_speech(timings, audio) if self.options.snap_to_speech else timings

    @staticmethod
    def _prompt(model: Any, processor: Any, language: str | None) -> list[int]:
        """``<|startoftranscript|>`` (with language and task on multilingual models) and ``<|notimestamps|>``."""
        tokenizer = processor.tokenizer
        config = model.generation_config
        prompt = [config.decoder_start_token_id]
        if getattr(config, "is_multilingual", False):
            code = f"<|{language or 'en'}|>"
            prompt += [tokenizer.convert_tokens_to_ids(code), tokenizer.convert_tokens_to_ids("<|transcribe|>")]
        return [*prompt, config.no_timestamps_token_id]


def attention_token_times(weights: Any, median_filter_width: int) -> list[float]:
    """When each token starts, from cross-attention ``(heads, tokens, frames)``: normalised per frame, smoothed
    along time, averaged over heads and aligned monotonically by dynamic time warping (OpenAI's recipe, with
    transformers' own filter and DTW)."""
    import torch
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter

    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    matrix = _median_filter((weights - mean) / std, median_filter_width).mean(dim=0)
    text_indices, time_indices = _dynamic_time_warping(-matrix.double().cpu().numpy())
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    return (time_indices[jumps] / ENCODER_FRAMES_PER_S).tolist()


def word_timings(
    words: list[str], pieces: list[list[int]], token_times: list[float], duration: float
) -> list[WordTiming]:
    """Group token start times into words: a word starts with its first token and ends where the next word (or
    the end-of-text token, for the last word) starts."""
    boundaries = [0]
    for piece in pieces:
        boundaries.append(boundaries[-1] + len(piece))
    times = [min(time, duration) for time in token_times]
    return [
        WordTiming(word, times[boundaries[index]], max(times[boundaries[index + 1]], times[boundaries[index]]))
        for index, word in enumerate(words)
    ]


def speech_edges(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and ends (seconds) of sound around pauses: runs of 10 ms frames within 35 dB of the clip's loudest
    frame, merged across silences shorter than :data:`MIN_PAUSE_S` (the closure of a stop consonant is no pause)."""
    frame = round(ENERGY_FRAME_S * SAMPLING_RATE)
    usable = audio[: audio.shape[0] // frame * frame].reshape(-1, frame)
    level = 20 * np.log10(np.sqrt(np.mean(usable.astype(np.float64) ** 2, axis=1)) + 1e-10)
    loud = np.concatenate([[False], level > level.max() - SPEECH_BELOW_PEAK_DB, [False]]).astype(np.int8)
    changes = np.diff(loud)
    onsets = np.flatnonzero(changes == 1) * ENERGY_FRAME_S
    ends = np.flatnonzero(changes == -1) * ENERGY_FRAME_S
    pauses = onsets[1:] - ends[:-1] >= MIN_PAUSE_S
    return onsets[np.concatenate([[True], pauses])], ends[np.concatenate([pauses, [True]])]


def snap_to_speech(timings: list[WordTiming], audio: np.ndarray) -> list[WordTiming]:
    """Move word edges onto the edges of sound in the audio, where there is sound to snap to.

    Cross-attention places a word's start a little inside the word and its end a little inside the next one. A
    start moves back to the latest onset of sound at most :data:`SNAP_WINDOW_S` before it (or, when none is, to
    the first onset inside the word's span: attention pins the first word to 0 s); an end moves to the latest end
    of sound before the next word's start (for the last word, before its own end). Edges with nothing to snap to
    within reach keep their attention times.
    """
    onsets, ends = speech_edges(audio)
    starts: list[float] = []
    for timing in timings:
        floor = starts[-1] + ENERGY_FRAME_S if starts else 0.0
        before = onsets[
            (onsets >= max(floor, timing.start - SNAP_WINDOW_S)) & (onsets <= timing.start + ENERGY_FRAME_S)
        ]
        inside = onsets[(onsets >= max(floor, timing.start)) & (onsets < timing.end)]
        starts.append(
            float(before[-1]) if before.size else float(inside[0]) if inside.size else max(timing.start, floor)
        )
    snapped = []
    for index, timing in enumerate(timings):
        limit = starts[index + 1] if index + 1 < len(timings) else timing.end + SNAP_WINDOW_S
        candidates = ends[(ends > starts[index]) & (ends <= limit) & (ends >= timing.end - 2 * SNAP_WINDOW_S)]
        end = float(candidates[-1]) if candidates.size else max(timing.end, starts[index])
        snapped.append(WordTiming(timing.word, starts[index], end))
    return snapped
