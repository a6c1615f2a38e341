"""Streaming training targets: the token stream Voxtral Realtime emits, built from word timings.

Voxtral Realtime is a Delayed Streams Modeling (DSM) model: every 80 ms of audio is one decoder position, whose
input is the sum of that frame's audio embedding and the previous position's token, and whose output is the next
token. At inference (transformers' ``generate``, vLLM's realtime API) the prompt is ``<s>`` followed by
``[STREAMING_PAD]`` for each left-padding frame and each delay frame, the audio is left-padded with as many
frames of silence, and from then on each generated token is fed back as the next input.

The text stream, on the grid of real-audio frames (frame ``f`` covers ``[f, f + 1) x 80 ms`` of the clip), puts
for a word starting at ``s`` seconds ``[STREAMING_WORD]`` at frame ``floor(s x 12.5)`` and the word's tokens
(tokenised with its leading space) on the frames after it; every other frame is ``[STREAMING_PAD]``. A word
whose frame is still taken by the previous word's tokens starts on the first free frame. The stream is delayed by
the model's delay ``d``: text frame ``f`` is the token at sequence position ``1 + L + d + f`` (``L`` left-padding
frames), so it is predicted at position ``L + d + f``, the first that has heard audio frame ``f + d``. The first
``1 + L + d`` positions are exactly the prompt, and carry no loss; every later position does, padding included:
the padding teaches the model when to wait.

Everything here is plain Python on token ids, so it runs on data-loader workers and is easy to test exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from voxplug.api import DataError, WordTiming

FRAME_RATE_HZ = 12.5
IGNORE_INDEX = -100


@dataclass(frozen=True)
class StreamLayout:
    """The fixed parts of a streaming sequence: special ids, left padding and delay, all in frames (tokens)."""

    bos_id: int
    pad_id: int
    word_id: int
    left_pad_frames: int
    delay_frames: int

    @property
    def prompt_length(self) -> int:
        """Positions of the prompt: ``<s>``, the left-padding frames and the delay frames."""
        return 1 + self.left_pad_frames + self.delay_frames

    def prompt(self) -> list[int]:
        """The prompt the model is given at inference: ``<s>`` then one ``[STREAMING_PAD]`` per prompt frame."""
        return [self.bos_id] + [self.pad_id] * (self.left_pad_frames + self.delay_frames)


@dataclass(frozen=True)
class StreamingSequence:
    """One row: ``input_ids`` and ``labels`` of equal length, and where each word's tokens sit."""

    input_ids: list[int]
    labels: list[int]
    #: for each word, the sequence position of its ``[STREAMING_WORD]`` token
    word_positions: list[int]


def word_frame(start_s: float) -> int:
    """The text frame a word starting at ``start_s`` seconds gets its ``[STREAMING_WORD]`` on."""
    return math.floor(start_s * FRAME_RATE_HZ + 1e-9)


def text_stream(words: Sequence[WordTiming], word_tokens: Sequence[Sequence[int]], layout: StreamLayout) -> list[int]:
    """The undelayed text stream: ``[STREAMING_WORD]`` and tokens at each word's frames, ``[STREAMING_PAD]`` elsewhere.

    A word whose frame is taken by the previous word's tokens moves to the first free frame (DSM never drops or
    overlaps words). The stream ends after the last word's last token.
    """
    if len(words) != len(word_tokens):
        raise ValueError(f"got {len(words)} word timings but {len(word_tokens)} tokenised words")
    stream: list[int] = []
    for word, tokens in zip(words, word_tokens, strict=True):
        frame = max(word_frame(word.start), len(stream))
        stream.extend([layout.pad_id] * (frame - len(stream)))
        stream.append(layout.word_id)
        stream.extend(tokens)
    return stream


def streaming_sequence(
    words: Sequence[WordTiming],
    word_tokens: Sequence[Sequence[int]],
    layout: StreamLayout,
    total_positions: int,
) -> StreamingSequence:
    """Place the delayed text stream after the prompt and pad it with ``[STREAMING_PAD]`` to ``total_positions``.

    ``total_positions`` is the number of audio frames of the padded clip (one position per frame). Raises
    DataError when the words do not fit: the audio must be padded on the right for at least the delay and the
    last word's tokens.
    """
    stream = text_stream(words, word_tokens, layout)
    needed = layout.prompt_length + len(stream)
    if needed > total_positions:
        raise DataError(
            f"the transcript needs {needed} positions (prompt {layout.prompt_length} + text stream {len(stream)}) "
            f"but the padded audio has {total_positions} frames; pad the audio by {needed - total_positions} more "
            "frames on the right"
        )
    input_ids = layout.prompt() + stream + [layout.pad_id] * (total_positions - needed)
    labels = [IGNORE_INDEX] * layout.prompt_length + input_ids[layout.prompt_length :]
    positions = [index for index, token in enumerate(input_ids) if token == layout.word_id]
    return StreamingSequence(input_ids=input_ids, labels=labels, word_positions=positions)


def frames_needed(words: Sequence[WordTiming], word_tokens: Sequence[Sequence[int]], layout: StreamLayout) -> int:
    """Positions the prompt and the text stream of these words take, before any trailing padding."""
    return layout.prompt_length + len(text_stream(words, word_tokens, layout))
