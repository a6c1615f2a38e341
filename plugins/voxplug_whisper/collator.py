"""Turn (audio, transcript, language) rows into Whisper training batches.

Layout per row (``P`` = the prompt: ``<|startoftranscript|>``, then ``<|xx|><|transcribe|>`` on multilingual
models, then ``<|notimestamps|>``; a translation row, ``task="translate"``, has ``<|xx|><|translate|>`` with ``xx``
the spoken language and its English translation as the text, as Whisper translates at inference)::

    decoder_input_ids = P            " transcript"              <|endoftext|>...(padding)
    labels            = -100 x |P|-1  " transcript" <|endoftext|>  -100...

i.e. the HF fine-tuning examples' layout (``labels = tokenizer(text)`` with its prefix, minus the leading
``<|startoftranscript|>``, which ``shift_tokens_right`` puts back), with the forced prompt tokens masked: the
model is never asked to predict what generation forces anyway. Because masked labels turn into padding when
``WhisperForConditionalGeneration`` shifts them, ``decoder_input_ids`` are passed explicitly rather than
derived from the labels. Transcripts start with a space, as Whisper writes them (`` The`` is one token).

``input_features`` are ``(batch, mel bins, 3000)``: every clip padded to Whisper's 30 s window. A longer clip
is an error (the data stage rejects those with ``data.max_duration_s``); the feature extractor would cut it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from voxplug.api import TRANSCRIBE, AudioError, Collator, DataError, PluginOptions
from voxplug_whisper.processor import MAX_TARGET_POSITIONS

if TYPE_CHECKING:
    import numpy as np
    import torch

IGNORE_INDEX = -100


class WhisperCollatorOptions(PluginOptions):
    """Options of the ``whisper-transcription`` collator."""

    mask_prompt: bool = Field(
        True,
        description="no loss on the forced prompt tokens (language, task, notimestamps); false trains on them "
        "as transformers' run_speech_recognition_seq2seq example does",
    )
    max_target_positions: int = Field(
        MAX_TARGET_POSITIONS, ge=4, description="the decoder's length limit; longer rows are errors, never cut"
    )


def describe_row(row: Mapping[str, Any], index: int) -> str:
    """Name a row for error messages: its position in the batch and its ``id`` when it has one."""
    row_id = row.get("id")
    return f"row {index}" if row_id is None else f"row {index} (id={row_id!r})"


def checked_audio(row: Mapping[str, Any], where: str) -> np.ndarray:
    """The row's audio as non-empty mono float32 of at most 30 s, or an ``AudioError`` naming the row."""
    import numpy as np

    from voxplug_whisper.generation import check_window

    audio = row.get("audio")
    if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.size == 0:
        shape = getattr(audio, "shape", type(audio).__name__)
        raise AudioError(f"{where}: audio must be a non-empty 1-D array of 16 kHz mono samples, got {shape}")
    check_window(audio, where)
    return audio.astype(np.float32, copy=False)


def pad_rows(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Right-pad integer rows with ``value`` into one ``(len(rows), longest)`` long tensor."""
    import torch

    batch = torch.full((len(rows), max(len(row) for row in rows)), value, dtype=torch.long)
    for index, row in enumerate(rows):
        batch[index, : len(row)] = torch.tensor(row, dtype=torch.long)
    return batch


class WhisperTranscriptionCollator(Collator):
    """Whisper batches: log-mel features, decoder inputs and labels (prompt masked, transcript + eot)."""

    name = "whisper-transcription"
    description = "Whisper prompts (language, task, notimestamps); labels are the transcript + eot"
    Options = WhisperCollatorOptions
    options: WhisperCollatorOptions

    def __init__(self, options: Any = None, *, processor: Any, model_id: str = "") -> None:
        super().__init__(options, processor=processor, model_id=model_id)
        from voxplug_whisper.processor import whisper_tokens

        self.tokens = whisper_tokens(processor.tokenizer)
        self.languages = self.tokens.language_support()

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate rows of ``{"audio", "text", "language", "id"}`` into model inputs with labels."""
        from voxplug_whisper.generation import log_mel_features

        if not examples:
            raise DataError("cannot collate an empty batch")
        wheres = [describe_row(row, index) for index, row in enumerate(examples)]
        audios = [checked_audio(row, where) for row, where in zip(examples, wheres, strict=True)]
        sequences = [self.row_tokens(row, where) for row, where in zip(examples, wheres, strict=True)]
        inputs = [prompt + text for prompt, text in sequences]
        labels = [self.row_labels(prompt, text) for prompt, text in sequences]
        return {
            "input_features": log_mel_features(self.processor, audios),
            "decoder_input_ids": pad_rows(inputs, self.tokens.eot),
            "decoder_attention_mask": pad_rows([[1] * len(row) for row in inputs], 0),
            "labels": pad_rows(labels, IGNORE_INDEX),
        }

    def row_tokens(self, row: Mapping[str, Any], where: str) -> tuple[list[int], list[int]]:
        """``(prompt ids, text ids)`` of one row; a multilingual model needs the row's (spoken) language.

        The language is mapped to the model's own code (``sv-SE`` → ``sv``); a code it has no token for, a
        translation on an English-only model or into another language than English raises :class:`DataError`.
        """
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: 'text' must be a non-empty string, got {text!r}")
        task = row.get("task") or TRANSCRIBE
        self.languages.check_task(task, row.get("target_language"), where=where)
        language = self.languages.normalize(row.get("language"), where=where)
        prompt = self.tokens.prompt(language, where, task=task)
        ids = self.processor.tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
        if len(prompt) + len(ids) > self.options.max_target_positions:
            raise DataError(
                f"{where}: the transcript is {len(ids)} tokens; with the {len(prompt)}-token prompt that exceeds "
                f"Whisper's {self.options.max_target_positions}-token limit (drop or split the row; it is never cut)"
            )
        return prompt, list(ids)

    def row_labels(self, prompt: list[int], text: list[int]) -> list[int]:
        """The next-token targets of ``prompt + text``: the transcript then eot, the forced prompt masked."""
        forced = prompt[1:]
        return ([IGNORE_INDEX] * len(forced) if self.options.mask_prompt else forced) + text + [self.tokens.eot]
