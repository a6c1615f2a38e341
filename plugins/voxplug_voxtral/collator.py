"""Turn (audio, transcript, language) rows into Voxtral training and inference batches.

Training layout per row, built from the processor's own transcription prompt::

    input_ids = <s>[INST][BEGIN_AUDIO][AUDIO]x375n[/INST](lang:xx)[TRANSCRIBE] transcript </s>  <pad>...
    labels    = -100 over the whole prompt,            transcript </s>  -100...

Rows are right-padded (pad id from the tokenizer, 11 for Voxtral) and the mel features of every 30 s chunk of
every row are concatenated in row order, ``(total_chunks, 128, 3000)``; rows may own different chunk counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from voxplug.api import TRANSCRIBE, AudioError, DataError, LanguageSupport

if TYPE_CHECKING:
    import numpy as np
    import torch

SAMPLING_RATE = 16000
IGNORE_INDEX = -100
WHY_NOT_TRANSLATE = (
    "Voxtral's transcription prompt (lang:xx[TRANSCRIBE]) only transcribes, and Voxtral translates through free-form "
    "chat instructions, which voxplug neither trains nor evaluates; train translation with a multilingual Whisper "
    "(model.family=whisper) or train Voxtral on transcripts (Granary task: asr)"
)


@lru_cache(maxsize=1)
def voxtral_languages() -> LanguageSupport:
    """The language codes Voxtral's transcription prompt takes: those mistral-common's ``TranscriptionRequest``
    accepts (ISO 639-1), found by validating every ISO 639-1 code against the request's own ``language`` field."""
    import pycountry
    from mistral_common.protocol.transcription.request import TranscriptionRequest
    from pydantic import TypeAdapter, ValidationError

    field = TypeAdapter(TranscriptionRequest.model_fields["language"].annotation)
    accepted = set()
    for record in pycountry.languages:
        code = getattr(record, "alpha_2", None)
        try:
            if code is not None and field.validate_python(code) == code:
                accepted.add(code)
        except ValidationError:
            continue
    return LanguageSupport(model="Voxtral", codes=frozenset(accepted), why_not_translate=WHY_NOT_TRANSLATE)


def describe_row(row: Mapping[str, Any], index: int) -> str:
    """Name a row for error messages: its position in the batch and its ``id`` when it has one."""
    row_id = row.get("id")
    return f"row {index}" if row_id is None else f"row {index} (id={row_id!r})"


def check_audio(audio: Any, where: str) -> np.ndarray:
    """Return ``audio`` as a non-empty mono float32 array, or raise AudioError naming ``where``."""
    import numpy as np

    if not isinstance(audio, np.ndarray):
        raise AudioError(f"{where}: audio must be a numpy array of 16 kHz mono samples, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise AudioError(f"{where}: audio must be mono (1-D), got shape {audio.shape}")
    if audio.size == 0:
        raise AudioError(f"{where}: audio is empty")
    return audio.astype(np.float32, copy=False)


def audio_of(row: Mapping[str, Any], index: int) -> np.ndarray:
    """Return a row's audio after checking it is 16 kHz (when the row says), mono, float32 and non-empty."""
    rate = row.get("sampling_rate", SAMPLING_RATE)
    if rate != SAMPLING_RATE:
        raise AudioError(f"{describe_row(row, index)}: audio is sampled at {rate} Hz; resample it to 16000 Hz first")
    return check_audio(row.get("audio"), describe_row(row, index))


def prompt_language(row: Mapping[str, Any], index: int) -> str | None:
    """The ``lang:xx`` code of a row's transcription prompt (``sv-SE`` → ``sv``; None: automatic detection)."""
    return voxtral_languages().normalize(row.get("language"), where=describe_row(row, index))


def check_transcription_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse translation rows: Voxtral is trained here with its transcription prompt only."""
    for index, row in enumerate(rows):
        task = row.get("task") or TRANSCRIBE
        voxtral_languages().check_task(task, row.get("target_language"), where=describe_row(row, index))


def pad_sequences(
    sequences: Sequence[Sequence[int]], value: int, side: str = "right", *, multiple_of: int = 1
) -> torch.Tensor:
    """Stack integer sequences into a ``(len(sequences), longest)`` long tensor, padding with ``value``.

    ``longest`` is rounded up to a multiple of ``multiple_of``.
    """
    import torch

    longest = -(-max(len(seq) for seq in sequences) // multiple_of) * multiple_of
    batch = torch.full((len(sequences), longest), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        if side == "right":
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        else:
            batch[row, longest - len(seq) :] = torch.tensor(seq, dtype=torch.long)
    return batch


def attention_mask_for(
    sequences: Sequence[Sequence[int]], side: str = "right", *, multiple_of: int = 1
) -> torch.Tensor:
    """Return the 1/0 attention mask that matches ``pad_sequences(sequences, ..., side, multiple_of=...)``."""
    return pad_sequences([[1] * len(seq) for seq in sequences], 0, side, multiple_of=multiple_of)


class VoxtralBatchBuilder:
    """Collate ``{"audio", "text", "language"[, "id"]}`` rows into a right-padded Voxtral training batch.

    Each row's prompt comes from ``processor.apply_transcription_request`` (one call per batch, with one
    language per row; ``None`` means automatic language detection, i.e. no ``lang:xx`` tokens). The transcript
    is tokenised without special tokens and followed by EOS; labels are ``-100`` over the prompt and on padding.
    Transcripts are never truncated: with ``max_text_tokens`` set, a longer one raises :class:`DataError`.
    The padded length is a multiple of ``pad_to_multiple_of``: tensor-core friendly shapes, and a compiled model
    (``training.compile``) that specialises on that alignment compiles once instead of once per length class.
    With ``attention_mask=False`` the batch has no ``attention_mask``: the language model is causal and the
    padding comes after every real token, so no real token attends to it and the loss and its gradients are the
    same without a mask, while attention runs its unmasked (flash) kernels and transformers skips the mask
    check that waits for the GPU.
    """

    def __init__(
        self,
        processor: Any,
        *,
        model_id: str = "voxtral",
        max_text_tokens: int | None = None,
        pad_to_multiple_of: int = 8,
        attention_mask: bool = True,
    ) -> None:
        """Wrap a ``VoxtralProcessor`` whose tokenizer is a ``MistralCommonBackend``."""
        self.processor = processor
        self.model_id = model_id
        self.max_text_tokens = max_text_tokens
        self.pad_to_multiple_of = pad_to_multiple_of
        self.attention_mask = attention_mask
        tokenizer = processor.tokenizer
        self.pad_token_id: int = tokenizer.pad_token_id
        self.eos_token_id: int = tokenizer.eos_token_id
        # Test hooks only: switching these off reproduces the classic fine-tuning bugs (no EOS, unmasked prompt).
        self._append_eos = True
        self._mask_prompt = True

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Return ``input_ids``, ``attention_mask``, ``labels`` (right-padded) and ``input_features``."""
        if not features:
            raise DataError("cannot collate an empty batch")
        check_transcription_rows(features)
        prompts, input_features = self.encode_prompts(features)
        rows = [self._row(prompt, text) for prompt, text in zip(prompts, self._transcript_ids(features), strict=True)]
        input_ids = [ids for ids, _ in rows]
        labels = [row_labels for _, row_labels in rows]
        multiple = self.pad_to_multiple_of
        batch = {
            "input_ids": pad_sequences(input_ids, self.pad_token_id, multiple_of=multiple),
            "labels": pad_sequences(labels, IGNORE_INDEX, multiple_of=multiple),
            "input_features": input_features,
        }
        if self.attention_mask:
            batch["attention_mask"] = attention_mask_for(input_ids, multiple_of=multiple)
        return batch

    def inference_batch(self, audios: Sequence[np.ndarray], languages: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """Return a prompt-only, left-padded batch for ``generate`` (input_ids, attention_mask, input_features)."""
        if len(audios) != len(languages):
            raise DataError(
                f"got {len(audios)} audio clips but {len(languages)} languages; give one language (or None) per clip"
            )
        rows = [{"audio": audio, "language": language} for audio, language in zip(audios, languages, strict=True)]
        prompts, input_features = self.encode_prompts(rows)
        return {
            "input_ids": pad_sequences(prompts, self.pad_token_id, side="left"),
            "attention_mask": attention_mask_for(prompts, side="left"),
            "input_features": input_features,
        }

    def encode_prompts(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[list[int]], torch.Tensor]:
        """Return each row's unpadded transcription prompt ids and the stacked mel features of all its chunks.

        Each row's language is mapped to the ISO 639-1 code the prompt takes (``sv-SE`` → ``sv``); a code Voxtral
        does not accept, or a translation row, raises :class:`DataError` naming the row.
        """
        arrays = [audio_of(row, index) for index, row in enumerate(rows)]
        encoded = self.processor.apply_transcription_request(
            audio=arrays,
            model_id=self.model_id,
            language=[prompt_language(row, index) for index, row in enumerate(rows)],
            sampling_rate=SAMPLING_RATE,
            format=["WAV"] * len(arrays),
            return_tensors="pt",
        )
        mask = encoded["attention_mask"].bool()
        prompts = [ids[keep].tolist() for ids, keep in zip(encoded["input_ids"], mask, strict=True)]
        return prompts, encoded["input_features"]

    def _row(self, prompt: list[int], text: list[int]) -> tuple[list[int], list[int]]:
        """One row's ``input_ids`` (prompt + transcript + EOS) and ``labels`` (-100 over the prompt)."""
        target = [*text, self.eos_token_id] if self._append_eos else text
        prompt_labels = [IGNORE_INDEX] * len(prompt) if self._mask_prompt else list(prompt)
        return prompt + target, prompt_labels + target

    def _transcript_ids(self, features: Sequence[Mapping[str, Any]]) -> list[list[int]]:
        texts = []
        for index, row in enumerate(features):
            text = row.get("text")
            if not isinstance(text, str):
                raise DataError(f"{describe_row(row, index)}: 'text' must be a string, got {type(text).__name__}")
            texts.append(text)
        ids = self.processor.tokenizer(texts, add_special_tokens=False)["input_ids"]
        if self.max_text_tokens is not None:
            for index, (row, row_ids) in enumerate(zip(features, ids, strict=True)):
                if len(row_ids) > self.max_text_tokens:
                    raise DataError(
                        f"{describe_row(row, index)}: transcript has {len(row_ids)} tokens, more than "
                        f"max_text_tokens={self.max_text_tokens}; raise the limit or drop the row "
                        "(rows are never truncated)"
                    )
        return [list(row_ids) for row_ids in ids]
