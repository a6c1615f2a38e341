"""Streaming transcription with transformers' own generation: evaluation and live microphone input.

Both feed ``VoxtralRealtimeForConditionalGeneration.generate`` a generator of mel-feature chunks, as transformers'
streaming example and vLLM's realtime server do: the prompt (``<s>`` and ``L + d`` ``[STREAMING_PAD]``) with the
features of the left padding and the first ``d + 1`` frames of audio, then 8 mel frames (80 ms) per step, each
computed from 1680 samples without centring. The causal encoder keeps its convolution and attention caches
between steps, so no audio is encoded twice and nothing after a frame changes what was emitted for it.

:func:`transcribe_streaming` runs that over finished clips (a batch is padded with silence to its longest clip);
:class:`LiveTranscription` runs it on a background thread over audio that is still arriving.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voxplug_voxtral_realtime.collator import STREAMING_PAD, STREAMING_WORD, special_id
from voxplug_voxtral_realtime.loading import default_delay_ms, delay_frames
from voxplug_voxtral_realtime.targets import StreamLayout

if TYPE_CHECKING:
    import numpy as np
    import torch

SAMPLING_RATE = 16000
IDLE_TIMEOUT_S = 30.0


@dataclass
class StreamedText:
    """What the model emitted for one clip: every generated token id (from the first after the prompt) and the text."""

    token_ids: list[int]
    text: str
    #: the text frame (80 ms steps from the clip's start) of each ``[STREAMING_WORD]`` emitted
    word_frames: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class StreamGeometry:
    """Sample counts of one streaming session at one delay (they follow from the processor's audio settings)."""

    layout: StreamLayout
    samples_per_frame: int
    hop: int
    window: int

    @property
    def first_chunk_samples(self) -> int:
        """Clip samples the prompt's features need: ``d + 1`` frames, the last STFT window ending at its centre."""
        mel_frames = (self.layout.delay_frames + 1) * (self.samples_per_frame // self.hop)
        return (mel_frames - 1) * self.hop + self.window // 2

    @property
    def step_samples(self) -> int:
        """Samples one later step reads: 8 mel frames and one window of context (1680 at 16 kHz)."""
        return self.samples_per_frame + self.window

    def step_start(self, step: int) -> int:
        """Where in the clip the samples of step ``step`` (0 = the first after the prompt) begin."""
        mel_frame = (self.layout.delay_frames + 1 + step) * (self.samples_per_frame // self.hop)
        return mel_frame * self.hop - self.window // 2

    def right_padding(self, clip_samples: int) -> int:
        """Silence after a finished clip so every word is emitted: to a whole frame, then ``d + 11`` frames."""
        remainder = -clip_samples % self.samples_per_frame
        return remainder + (self.layout.delay_frames + 11) * self.samples_per_frame


def stream_geometry(processor: Any, delay_ms: int | None = None) -> StreamGeometry:
    """The session geometry of ``processor`` at ``delay_ms`` (its default delay when None)."""
    tokenizer = processor.tokenizer
    delay = delay_frames(processor, default_delay_ms(processor) if delay_ms is None else delay_ms)
    layout = StreamLayout(
        tokenizer.bos_token_id,
        special_id(tokenizer, STREAMING_PAD),
        special_id(tokenizer, STREAMING_WORD),
        processor.mistral_common_audio_config.n_left_pad_tokens,
        delay,
    )
    extractor = processor.feature_extractor
    return StreamGeometry(layout, processor.raw_audio_length_per_tok, extractor.hop_length, extractor.win_length)


def first_features(processor: Any, geometry: StreamGeometry, clips: Sequence[np.ndarray]) -> torch.Tensor:
    """Features of the left padding and each clip's first :attr:`StreamGeometry.first_chunk_samples` samples."""
    import numpy as np

    left = np.zeros(geometry.layout.left_pad_frames * geometry.samples_per_frame, dtype=np.float32)
    chunks = [np.concatenate([left, clip[: geometry.first_chunk_samples]]) for clip in clips]
    return processor.feature_extractor(chunks, sampling_rate=SAMPLING_RATE, center=True, return_tensors="pt")[
        "input_features"
    ]


def step_features(processor: Any, chunks: Sequence[np.ndarray]) -> torch.Tensor:
    """Features (8 mel frames each) of one step's samples of every clip, without centring."""
    return processor.feature_extractor(list(chunks), sampling_rate=SAMPLING_RATE, center=False, return_tensors="pt")[
        "input_features"
    ]


def model_device_dtype(model: Any) -> tuple[Any, Any]:
    """The device and floating dtype of ``model``'s weights (through a PEFT wrapper)."""
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def transcribe_streaming(
    model: Any, processor: Any, audios: Sequence[np.ndarray], *, delay_ms: int | None = None
) -> list[StreamedText]:
    """Transcribe finished 16 kHz clips in streaming mode at ``delay_ms`` (the processor's default when None).

    The clips are padded with silence to the longest and to :meth:`StreamGeometry.right_padding`, then streamed
    step by step through ``model.generate``, greedily.
    """
    import numpy as np
    import torch

    geometry = stream_geometry(processor, delay_ms)
    longest = max(audio.shape[0] for audio in audios)
    length = longest + geometry.right_padding(longest)
    clips = [np.pad(np.asarray(audio, dtype=np.float32), (0, length - audio.shape[0])) for audio in audios]
    device, dtype = model_device_dtype(model)

    def features() -> Iterator[torch.Tensor]:
        yield first_features(processor, geometry, clips).to(device, dtype)
        step = 0
        while geometry.step_start(step) + geometry.step_samples < length:
            start = geometry.step_start(step)
            yield step_features(processor, [clip[start : start + geometry.step_samples] for clip in clips]).to(
                device, dtype
            )
            step += 1

    prompt = torch.tensor([geometry.layout.prompt()] * len(clips), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(
                input_ids=prompt,
                input_features=features(),
                num_delay_tokens=geometry.layout.delay_frames,
                do_sample=False,
                num_beams=1,
            )
    finally:
        model.train(was_training)
    return [decode_stream(processor, row[prompt.shape[1] :].tolist(), geometry.layout) for row in output]


def decode_stream(processor: Any, token_ids: list[int], layout: StreamLayout) -> StreamedText:
    """The text of a generated stream (special tokens dropped) and the frames of its word-start tokens."""
    text = processor.tokenizer.decode(token_ids, skip_special_tokens=True).strip()
    frames = [index for index, token in enumerate(token_ids) if token == layout.word_id]
    return StreamedText(token_ids=token_ids, text=text, word_frames=frames)


class LiveTranscription:
    """Transcribe audio while it arrives: :meth:`feed` samples, read :meth:`text`, :meth:`finish` at the end.

    ``generate`` runs on a background thread and reads feature chunks from the audio fed so far, blocking until
    there is enough for the next 80 ms step; each emitted token is decoded at once. One session is one utterance;
    the model is shared read-only (``torch.inference_mode``), so sessions of several users may run side by side.
    """

    def __init__(self, model: Any, processor: Any, *, delay_ms: int | None = None) -> None:
        import numpy as np

        self.model = model
        self.processor = processor
        self.geometry = stream_geometry(processor, delay_ms)
        self._audio = np.zeros(0, dtype=np.float32)
        self._arrived: queue.Queue[np.ndarray | None] = queue.Queue()
        self._finished = False
        self._tokens: list[int] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="voxplug-live-transcription", daemon=True)
        self._thread.start()

    @property
    def delay_ms(self) -> int:
        """The delay this session transcribes at."""
        return self.geometry.layout.delay_frames * 80

    def feed(self, samples: np.ndarray) -> None:
        """Add 16 kHz mono float32 samples to the stream."""
        import numpy as np

        if self._finished:
            raise RuntimeError("this live transcription is finished; start a new one")
        self._arrived.put(np.asarray(samples, dtype=np.float32).reshape(-1))

    def finish(self, timeout: float | None = None) -> StreamedText:
        """End the utterance: pad it with silence so every word is emitted, wait for the model, return the result."""
        import numpy as np

        if not self._finished:
            self._finished = True
            self._arrived.put(np.zeros(self.geometry.right_padding(0) + self.geometry.window, dtype=np.float32))
            self._arrived.put(None)
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.result()

    def result(self) -> StreamedText:
        """What was emitted so far."""
        with self._lock:
            tokens = list(self._tokens)
        return decode_stream(self.processor, tokens, self.geometry.layout)

    def text(self) -> str:
        """The transcript so far."""
        return self.result().text

    def _wait_for(self, samples: int) -> bool:
        """Block until ``samples`` samples have arrived; False when the stream ended first, or when no audio came
        for :data:`IDLE_TIMEOUT_S` (an abandoned session frees its thread)."""
        import numpy as np

        while self._audio.shape[0] < samples:
            try:
                chunk = self._arrived.get(timeout=IDLE_TIMEOUT_S)
            except queue.Empty:
                return False
            if chunk is None:
                self._arrived.put(None)
                return False
            self._audio = np.concatenate([self._audio, chunk])
        return True

    def _features(self) -> Iterator[Any]:
        geometry = self.geometry
        device, dtype = model_device_dtype(self.model)
        if not self._wait_for(geometry.first_chunk_samples):
            return
        yield first_features(self.processor, geometry, [self._audio]).to(device, dtype)
        step = 0
        while self._wait_for(geometry.step_start(step) + geometry.step_samples):
            start = geometry.step_start(step)
            yield step_features(self.processor, [self._audio[start : start + geometry.step_samples]]).to(device, dtype)
            step += 1

    def _run(self) -> None:
        import torch

        session = self

        class TokenSink:
            """``generate``'s streamer: the first ``put`` is the prompt, each later one is one step's token."""

            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                with session._lock:
                    session._tokens.extend(int(token) for token in value.reshape(-1).tolist())

            def end(self) -> None:
                pass

        device, _dtype = model_device_dtype(self.model)
        prompt = torch.tensor([self.geometry.layout.prompt()], device=device)
        try:
            with torch.inference_mode():
                self.model.generate(
                    input_ids=prompt,
                    input_features=self._features(),
                    num_delay_tokens=self.geometry.layout.delay_frames,
                    do_sample=False,
                    num_beams=1,
                    streamer=TokenSink(),
                )
        except BaseException as error:  # surfaced to the caller by finish()
            self._error = error
