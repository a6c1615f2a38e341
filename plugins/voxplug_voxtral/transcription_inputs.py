"""The Voxtral processor's transcription inputs for a batch of clips, without its per-clip work.

``VoxtralProcessor.apply_transcription_request`` writes each clip to an in-memory 16-bit WAV, has mistral-common
read it back, write it again and read it again, tokenizes the prompt, zero-pads the audio to whole 30 s chunks and
runs the Whisper feature extractor on that one clip. :class:`TranscriptionInputs` gives the same ``input_ids`` and
``input_features``: a prompt depends only on the clip's number of chunks and its language, so each is built once
through the processor itself and reused; the WAV round trips are one exact numeric step (checked against soundfile
once per process); and the processor's own feature extractor runs once for many clips, on the host or a GPU.
Computed on the CPU, the features are bit for bit the processor's.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from voxplug_voxtral.collator import SAMPLING_RATE, VoxtralBatchBuilder, audio_of, prompt_language

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger("voxplug.evaluation")

#: The most audio samples (clips x padded length) one feature-extractor call takes, so that its intermediates on a
#: GPU (the complex STFT above all) stay what a prompt pass of 16 clips of 30 s needs, whatever the clips' length.
FEATURE_BATCH_SAMPLES = 16 * 30 * SAMPLING_RATE


def soundfile_pcm16_round_trip(audio: np.ndarray) -> np.ndarray:
    """``audio`` (float32) written as a 16-bit PCM WAV and read back as float32, with soundfile, as the processor
    and mistral-common do it."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLING_RATE, format="WAV")
    buffer.seek(0)
    samples, _ = soundfile.read(buffer, dtype="float32")
    return samples


def pcm16_round_trip(samples: np.ndarray) -> np.ndarray:
    """:func:`soundfile_pcm16_round_trip` as arithmetic, in place on a float32 array.

    With clipping on (soundfile turns it on), libsndfile scales a sample by 2**31, rounds it to the nearest
    integer, keeps the top 16 bits (``floor(n / 2**16)``), saturates at the 16-bit limits (NaN at the lowest), and
    reads a stored ``n`` back as ``n / 2**15``. Every step is exact in float32, and a second round trip changes
    nothing.
    """
    import numpy as np

    with np.errstate(over="ignore", invalid="ignore"):  # what overflows saturates, as in libsndfile
        np.multiply(samples, np.float32(2**31), out=samples)
        np.rint(samples, out=samples)
        np.multiply(samples, np.float32(2**-16), out=samples)
        np.floor(samples, out=samples)
        np.fmax(samples, np.float32(-(2**15)), out=samples)  # fmax: NaN becomes the lowest value too
        np.minimum(samples, np.float32(2**15 - 1), out=samples)
        np.add(samples, np.float32(0), out=samples)  # -0.0 as the 0 it is stored as
        np.multiply(samples, np.float32(2**-15), out=samples)
    return samples


def pcm16_probe() -> np.ndarray:
    """Samples that tell rounding, scaling and clipping rules apart: random ones, every 16-bit level and the points
    half a level above them, the values at and past full scale, infinities, NaN and subnormals."""
    import numpy as np

    levels = np.arange(-(2**15), 2**15, dtype=np.float32) * np.float32(2**-15)
    edges = [0.0, -0.0, 1.0, -1.0, 1.0 + 2**-23, -1.0 - 2**-23, 1.5, -1.5, 2.0, -2.0, 1e30, -1e30, 1e-45, -1e-45]
    special = np.array([*edges, np.inf, -np.inf, np.nan], dtype=np.float32)
    random = np.random.default_rng(0).uniform(-1.2, 1.2, 100_000).astype(np.float32)
    half = levels + np.float32(2**-16)
    below = np.nextafter(levels, np.float32(-2))
    rounding = levels - np.float32(2**-32)  # half of the 2**31 scale's unit below a level: rounds up to it
    return np.concatenate([levels, half, below, rounding, np.nextafter(rounding, np.float32(-2)), special, random])


@lru_cache(maxsize=1)
def pcm16_arithmetic_matches_soundfile() -> bool:
    """Whether :func:`pcm16_round_trip` gives exactly what the installed soundfile's two round trips give (the
    processor's and mistral-common's) on :func:`pcm16_probe`; checked once per process."""
    import numpy as np

    probe = pcm16_probe()
    expected = soundfile_pcm16_round_trip(soundfile_pcm16_round_trip(probe))
    return bool(np.array_equal(pcm16_round_trip(probe.copy()).view(np.uint32), expected.view(np.uint32)))


def is_voxtral_processor(processor: Any) -> bool:
    """A transformers ``VoxtralProcessor`` with a Whisper feature extractor: the processor whose work
    :class:`TranscriptionInputs` reproduces."""
    from transformers import VoxtralProcessor, WhisperFeatureExtractor

    return isinstance(processor, VoxtralProcessor) and isinstance(processor.feature_extractor, WhisperFeatureExtractor)


class TranscriptionInputs:
    """Prompt ids and mel features for transcription rows, equal to ``VoxtralBatchBuilder.encode_prompts``'.

    Rows are checked exactly as ``encode_prompts`` checks them (the same errors, naming the row). ``device`` is
    where the features are computed: on the CPU by the processor's own feature extractor; on a CUDA device by
    :func:`log_mel`, the extractor's GPU arithmetic without its round trip through host memory (the extractor
    returns NumPy arrays, which the prompt pass would copy back), on a stream of its own, so that from a prefetch
    thread it neither waits for nor holds up the model's work. The features stay on that device.
    """

    def __init__(self, collator: VoxtralBatchBuilder, device: torch.device | str = "cpu") -> None:
        import torch

        self.collator = collator
        self.processor = collator.processor
        self.device = torch.device(device)
        self.feature_extractor = self.processor.feature_extractor
        # the keyword arguments the processor hands its feature extractor in apply_transcription_request
        kwargs = self.processor._merge_kwargs(return_tensors="pt")["audio_kwargs"]
        for key in ("return_dict", "tokenize"):
            kwargs.pop(key, None)
        self.frames_per_chunk = int(kwargs.pop("max_source_positions"))
        self.extractor_kwargs: dict[str, Any] = kwargs
        self.chunk_samples = int(kwargs["pad_to_multiple_of"])
        self.prompts: dict[tuple[int, str | None], list[int]] = {}
        self.stream: torch.cuda.Stream | None = None
        self.mel: MelFilters | None = None
        self.usable = True

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[list[int]], torch.Tensor] | None:
        """Each row's prompt ids and the features of all its chunks (as ``encode_prompts`` returns them), or None
        where the processor itself must prepare the rows: audio that is not floating point, or a processor whose
        prompts do not have one 30 s chunk per feature block."""
        import numpy as np

        if not self.usable or any(
            not (isinstance(row.get("audio"), np.ndarray) and row["audio"].dtype.kind == "f") for row in rows
        ):
            return None
        arrays = [audio_of(row, index) for index, row in enumerate(rows)]
        languages = [prompt_language(row, index) for index, row in enumerate(rows)]
        prompts = []
        for audio, language in zip(arrays, languages, strict=True):
            prompt = self.prompt_ids(self.chunks(len(audio)), language)
            if prompt is None:
                return None
            prompts.append(prompt)
        return prompts, self.features(arrays)

    def chunks(self, samples: int) -> int:
        """The 30 s chunks a clip of ``samples`` is padded to."""
        return max(1, math.ceil(samples / self.chunk_samples))

    def prompt_ids(self, chunks: int, language: str | None) -> list[int] | None:
        """The processor's prompt for a clip of ``chunks`` chunks in ``language``, built once through the processor
        (on silence of that length); None, and the processor for every row from then on, where its features for
        that clip are not ``chunks`` blocks."""
        import numpy as np
        import torch

        key = (chunks, language)
        if key not in self.prompts:
            silence = np.zeros(chunks * self.chunk_samples, dtype=np.float32)
            with torch.autocast("cpu", enabled=False):  # the processor's features are float32 numpy arrays
                (prompt,), features = self.collator.encode_prompts([{"audio": silence, "language": language}])
            if len(features) != chunks:
                log.warning(
                    "the processor gives %d feature blocks for %d chunks: it prepares every clip", len(features), chunks
                )
                self.usable = False
                return None
            self.prompts[key] = prompt
        return self.prompts[key]

    def features(self, audios: Sequence[np.ndarray]) -> torch.Tensor:
        """Mel features of every chunk of every clip (float32, where they were computed), in clip order: ``(chunks,
        mel bins, frames)``.

        Clips of one padded length go through the feature extractor together, at most
        :data:`FEATURE_BATCH_SAMPLES` samples at a time; each clip first gets the processor's 16-bit WAV round trip
        and its zero padding.
        """
        from contextlib import nullcontext

        import torch

        lengths = [self.chunks(len(audio)) * self.chunk_samples for audio in audios]
        per_clip: list[torch.Tensor | None] = [None] * len(audios)
        on_gpu = self.device.type == "cuda" and not getattr(self.feature_extractor, "dither", 0.0)
        if on_gpu and self.stream is None:
            self.stream = torch.cuda.Stream(self.device)
            self.mel = MelFilters(self.feature_extractor, self.device)
        with torch.cuda.stream(self.stream) if on_gpu else nullcontext():
            for group in self._groups(lengths):
                blocks = self._extract([audios[index] for index in group], lengths[group[0]], on_gpu)
                for index, block in zip(group, blocks, strict=True):
                    per_clip[index] = block
            features = torch.cat([block for block in per_clip if block is not None])
        if on_gpu:
            assert self.stream is not None
            self.stream.synchronize()  # the prefetch thread waits for its features, never the model's stream
        return features

    def _groups(self, lengths: Sequence[int]) -> list[list[int]]:
        """Clip indices by padded length, split to at most :data:`FEATURE_BATCH_SAMPLES` samples a group."""
        by_length: dict[int, list[int]] = {}
        for index, length in enumerate(lengths):
            by_length.setdefault(length, []).append(index)
        groups = []
        for length, members in by_length.items():
            step = max(1, FEATURE_BATCH_SAMPLES // length)
            groups += [members[start : start + step] for start in range(0, len(members), step)]
        return groups

    def _extract(self, audios: Sequence[np.ndarray], length: int, on_gpu: bool) -> torch.Tensor:
        """Features of clips padded to ``length`` samples: ``(clips, chunks, mel bins, frames)``, computed by
        :func:`log_mel` on the GPU (``on_gpu``, on the current stream) or by the processor's feature extractor."""
        import numpy as np
        import torch

        waves = np.zeros((len(audios), length), dtype=np.float32)
        exact = pcm16_arithmetic_matches_soundfile()
        for row, audio in enumerate(audios):
            waves[row, : len(audio)] = audio if exact else soundfile_pcm16_round_trip(soundfile_pcm16_round_trip(audio))
        if exact:
            pcm16_round_trip(waves)  # zeros stay zeros
        with torch.autocast(self.device.type, enabled=False):  # float32, as the processor computes them
            if on_gpu:
                assert self.mel is not None
                features = log_mel(torch.from_numpy(waves).pin_memory().to(self.device, non_blocking=True), self.mel)
            else:
                extracted = self.feature_extractor(waves, device=str(self.device), **self.extractor_kwargs)
                features = torch.as_tensor(extracted["input_features"])
        clips, bins, _ = features.shape
        return features.reshape(clips, bins, -1, self.frames_per_chunk).transpose(1, 2)


class MelFilters:
    """A Whisper feature extractor's STFT window and mel filter bank, on ``device`` once."""

    def __init__(self, extractor: Any, device: torch.device) -> None:
        import torch

        self.n_fft, self.hop_length = extractor.n_fft, extractor.hop_length
        self.window = torch.hann_window(self.n_fft, device=device)
        self.filters = torch.from_numpy(extractor.mel_filters).to(device, torch.float32)


def log_mel(waves: torch.Tensor, mel: MelFilters) -> torch.Tensor:
    """Log-mel features ``(clips, mel bins, frames)`` of float32 ``waves`` ``(clips, samples)``, computed as
    ``WhisperFeatureExtractor._torch_extract_fbank_features`` computes them (without dither), where they are."""
    import torch

    stft = torch.stft(waves, mel.n_fft, mel.hop_length, window=mel.window, return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    log_spec = torch.clamp(mel.filters.T @ magnitudes, min=1e-10).log10()
    floor = log_spec.max(dim=2, keepdim=True)[0].max(dim=1, keepdim=True)[0] - 8.0
    return (torch.maximum(log_spec, floor) + 4.0) / 4.0
