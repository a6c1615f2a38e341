"""A short learning check: what the collator teaches is what greedy generation reads back.

Full fine-tuning of the tiny random Whisper (plain AdamW, lr 1e-2, fixed seed) on one real espeak-ng clip,
checked every 10 steps: the transcript must come back exactly (normalised), prompt, first word and final
``<|endoftext|>`` included, within the step budget. An off-by-one between labels and decoder inputs, a missing
eot or a prompt that differs between training and generation all fail it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxplug_whisper.collator import WhisperTranscriptionCollator
from voxplug_whisper.generation import transcribe

from voxplug.data.text import normalize_for_wer

LEARNING_RATE = 1e-2
CHECK_EVERY = 10
MAX_STEPS = 80


def test_tiny_whisper_memorises_a_clip(whisper_tiny_dir: Path, whisper_processor: Any, spoken: list) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    audio, text = spoken[0]
    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir)
    collator = WhisperTranscriptionCollator(processor=whisper_processor)
    batch = collator([{"audio": audio, "text": text, "language": None}])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    heard = ""
    for step in range(1, MAX_STEPS + 1):
        model.train()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % CHECK_EVERY == 0:
            heard = transcribe(model, whisper_processor, [audio], [None], max_new_tokens=24)[0]
            if normalize_for_wer(heard) == normalize_for_wer(text):
                return
    raise AssertionError(f"after {MAX_STEPS} steps the model says {heard!r}, expected {text!r}")
