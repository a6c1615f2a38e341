"""Greedy transcription with a Voxtral model: base, PEFT-wrapped or merged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from voxplug_voxtral.collator import VoxtralTranscriptionCollator

if TYPE_CHECKING:
    import numpy as np
    import torch


def model_device(model: Any) -> torch.device:
    """Return the device of the model's first parameter (works through a PeftModel wrapper)."""
    return next(model.parameters()).device


def generate_batch(
    model: Any, batch: dict[str, torch.Tensor], *, max_new_tokens: int, pad_token_id: int, eos_token_id: int
) -> torch.Tensor:
    """Greedy-decode one left-padded prompt batch and return only the newly generated token ids."""
    import torch

    device = model_device(model)
    inputs = {key: value.to(device) for key, value in batch.items()}
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
        )
    return output[:, inputs["input_ids"].shape[1] :]


def transcribe(
    model: Any,
    processor: Any,
    audios: list[np.ndarray],
    languages: Sequence[str | None],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    model_id: str = "voxtral",
) -> list[str]:
    """Transcribe 16 kHz mono clips greedily, ``batch_size`` at a time, and return one string per clip.

    ``languages`` holds an ISO 639-1 code or ``None`` (automatic detection) per clip. Only the new tokens are
    decoded, with special tokens skipped. The model is put in eval mode for the call and restored afterwards.
    """
    collator = VoxtralTranscriptionCollator(processor, model_id=model_id)
    tokenizer = processor.tokenizer
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        for start in range(0, len(audios), batch_size):
            batch = collator.inference_batch(audios[start : start + batch_size], languages[start : start + batch_size])
            new_tokens = generate_batch(
                model,
                batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=collator.pad_token_id,
                eos_token_id=collator.eos_token_id,
            )
            decoded = tokenizer.batch_decode(new_tokens.tolist(), skip_special_tokens=True)
            texts.extend(text.strip() for text in decoded)
    finally:
        model.train(was_training)
    return texts
