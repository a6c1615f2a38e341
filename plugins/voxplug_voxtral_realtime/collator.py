"""Turn (audio, transcript, word timings) rows into Voxtral Realtime training batches.

Per row, with ``L`` left-padding frames and ``d`` delay frames (80 ms each)::

    audio      = L frames of silence + the clip + silence up to T frames
    input_ids  = <s> [STREAMING_PAD] x (L + d)  then the delayed text stream (targets.py), [STREAMING_PAD] to T
    labels     = -100 over the prompt,           then the same tokens

``T`` covers the clip plus the right padding the processor adds at inference (``d + 11`` frames), or more when
the last word's tokens need it; rows are padded to the batch's longest ``T`` with silence and
``[STREAMING_PAD]`` (which is what the model should emit on silence, so the padding keeps its labels). The mel
features of the padded audio are exactly ``8 T`` frames, one decoder position per 8. The batch carries one
``num_delay_tokens`` (the model conditions on a single delay per forward): a fixed one, or one drawn per batch
from a range, reproducibly from the rows' ids.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from voxplug_voxtral.collator import audio_of, pad_sequences

from voxplug.api import Aligner, DataError, ModelError, WordTiming, describe, transcript_words
from voxplug_voxtral_realtime.targets import StreamingSequence, StreamLayout, frames_needed, streaming_sequence

if TYPE_CHECKING:
    import numpy as np
    import torch

SAMPLING_RATE = 16000
STREAMING_PAD = "[STREAMING_PAD]"
STREAMING_WORD = "[STREAMING_WORD]"

TargetBuilder = Callable[[Sequence[WordTiming], Sequence[Sequence[int]], StreamLayout, int], StreamingSequence]


def special_id(tokenizer: Any, token: str) -> int:
    """The id of a streaming special token in the processor's tokenizer; a tokenizer without it is an error."""
    tekkenizer = tokenizer.tokenizer.instruct_tokenizer.tokenizer
    if not tekkenizer.is_special(token):
        raise ModelError(f"the tokenizer has no {token} token: it is not a Voxtral Realtime tokenizer")
    return int(tekkenizer.get_special_token(token))


class StreamingCollator:
    """Collate ``{"audio", "text", "id"[, "words"]}`` rows into Voxtral Realtime training batches.

    ``aligner`` gives each row's word timings (cached per clip, so a model aligner runs once per clip and
    process); ``delays_ms`` is the delay of every batch (one value) or the range a batch's delay is drawn from
    (``(low, high)``, multiples of 80 ms). ``build`` places the words (tests swap in broken builders to show what
    the real one prevents).
    """

    def __init__(
        self,
        processor: Any,
        aligner: Aligner,
        *,
        delays_ms: tuple[int, int],
        seed: int = 0,
        build: TargetBuilder = streaming_sequence,
    ) -> None:
        from voxplug_voxtral_realtime.loading import delay_frames

        self.processor = processor
        self.aligner = aligner
        self.seed = seed
        self.build = build
        tokenizer = processor.tokenizer
        audio_config = processor.mistral_common_audio_config
        self.samples_per_frame: int = processor.raw_audio_length_per_tok
        self.left_pad_frames: int = audio_config.n_left_pad_tokens
        self.delay_choices = [
            delay_frames(processor, ms)
            for ms in range(delays_ms[0], delays_ms[1] + 1, int(audio_config.frame_duration_ms))
        ]
        self.bos_id: int = tokenizer.bos_token_id
        self.pad_id = special_id(tokenizer, STREAMING_PAD)
        self.word_id = special_id(tokenizer, STREAMING_WORD)
        self._timings: dict[tuple[Any, str], list[WordTiming]] = {}

    def layout(self, delay: int) -> StreamLayout:
        """The prompt layout at ``delay`` frames."""
        return StreamLayout(self.bos_id, self.pad_id, self.word_id, self.left_pad_frames, delay)

    def batch_delay(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """This batch's delay in frames: the fixed one, or a draw from the range seeded by the rows' ids."""
        if len(self.delay_choices) == 1:
            return self.delay_choices[0]
        key = "\0".join(str(row.get("id")) for row in rows)
        digest = hashlib.blake2b(key.encode(), digest_size=8, key=str(self.seed).encode()).digest()
        return random.Random(int.from_bytes(digest, "little")).choice(self.delay_choices)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Return ``input_ids``, ``labels``, ``input_features`` and ``num_delay_tokens`` for a batch."""
        if not rows:
            raise DataError("cannot collate an empty batch")
        delay = self.batch_delay(rows)
        sequences, audios = self.sequences(rows, delay)
        total = max(len(sequence.input_ids) for sequence in sequences)
        return {
            "input_ids": pad_sequences([s.input_ids for s in sequences], self.pad_id),
            "labels": pad_sequences([s.labels for s in sequences], self.pad_id),
            "input_features": self.features(audios, total),
            "num_delay_tokens": delay,
        }

    def sequences(self, rows: Sequence[Mapping[str, Any]], delay: int) -> tuple[list[StreamingSequence], list[Any]]:
        """Each row's streaming sequence at ``delay`` frames, and its audio (16 kHz float32)."""
        layout = self.layout(delay)
        audios = [audio_of(row, index) for index, row in enumerate(rows)]
        sequences = []
        for row, audio in zip(rows, audios, strict=True):
            timings = self.word_timings(row, audio)
            tokens = self.word_tokens(timings)
            frames = self.padded_frames(audio, delay, frames_needed(timings, tokens, layout))
            sequences.append(self.build(timings, tokens, layout, frames))
        return sequences, audios

    def padded_frames(self, audio: np.ndarray, delay: int, needed: int) -> int:
        """Frames of the padded clip: left padding, the clip, the inference right padding, more if words need it."""
        audio_config = self.processor.mistral_common_audio_config
        clip = math.ceil(audio.shape[0] / self.samples_per_frame)
        right = audio_config.n_right_pad_tokens(delay * audio_config.frame_duration_ms)
        return max(self.left_pad_frames + clip + right, needed)

    def word_timings(self, row: Mapping[str, Any], audio: np.ndarray) -> list[WordTiming]:
        """The aligner's timings for ``row`` (one per transcript word), computed once per clip."""
        words = transcript_words(row)
        key = (row.get("id"), hashlib.blake2b(audio.tobytes(), digest_size=16).hexdigest())
        if key not in self._timings:
            timings = self.aligner.align(row)
            if len(timings) != len(words):
                raise DataError(
                    f"{describe(row)}: aligner {self.aligner.name!r} gave {len(timings)} word timings for a "
                    f"transcript of {len(words)} words"
                )
            self._timings[key] = timings
        return self._timings[key]

    def word_tokens(self, timings: Sequence[WordTiming]) -> list[list[int]]:
        """Each word's token ids, tokenised with its leading space as the model emits it."""
        encoded = self.processor.tokenizer([" " + timing.word for timing in timings], add_special_tokens=False)
        return [list(ids) for ids in encoded["input_ids"]]

    def features(self, audios: Sequence[np.ndarray], total_frames: int) -> torch.Tensor:
        """Mel features ``(rows, 128, 8 x total_frames)`` of each clip, left-padded and padded to the batch."""
        import numpy as np

        length = total_frames * self.samples_per_frame
        left = self.left_pad_frames * self.samples_per_frame
        padded = np.zeros((len(audios), length), dtype=np.float32)
        for row, audio in enumerate(audios):
            padded[row, left : left + audio.shape[0]] = audio
        extractor = self.processor.feature_extractor
        return extractor(list(padded), sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_features"]
