"""The collator's layout teaches the tiny Voxtral to transcribe real speech; the classic label bugs do not.

Recipe (fixed seeds, deterministic on CPU): the tiny checkpoint from ``build_tiny_voxtral``, full fine-tuning
with plain ``torch.optim.AdamW`` (lr 3e-3, no weight decay), all eight espeak-ng clips in every step, half of
them with ``language="en"`` and half with ``None`` (so prompts differ in length and generation sees left
padding). Greedy transcripts are checked every 10 steps once the loss is below 0.5; the bar is a normalised
WER of exactly 0 on the training clips. Two broken variants get the same step budget and must miss the bar:
labels without EOS (generation never stops) and an unmasked prompt (the loss is dominated by the 375 audio
placeholders and the model never learns to tell the clips apart).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from voxplug_voxtral.collator import VoxtralBatchBuilder
from voxplug_voxtral.generation import generate_batch, transcribe
from voxplug_voxtral.targets import lora_target_regex

pytestmark = pytest.mark.slow

SEED = 0
LEARNING_RATE = 3e-3
CHECK_EVERY = 10
START_CHECKING_BELOW_LOSS = 0.5
MAX_STEPS = 200
MAX_NEW_TOKENS = 32
LANGUAGES = ["en", None] * 4


@dataclass
class TrainingRun:
    model: Any
    processor: Any
    steps: int
    seconds: float
    transcripts: list[str]


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    return jiwer.wer([normalise(r) for r in references], [normalise(h) or "<empty>" for h in hypotheses])


def fine_tune(
    checkpoint: Path, clips: list[tuple[str, Any]], *, steps: int | None = None, **collator_hooks: bool
) -> TrainingRun:
    """Train until the transcripts are exact (``steps=None``) or for exactly ``steps`` steps."""
    import torch
    from transformers import AutoProcessor, VoxtralForConditionalGeneration

    torch.manual_seed(SEED)
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = VoxtralForConditionalGeneration.from_pretrained(checkpoint)
    collator = VoxtralBatchBuilder(processor)
    for hook, value in collator_hooks.items():
        setattr(collator, f"_{hook}", value)
    texts = [text for text, _ in clips]
    audios = [audio for _, audio in clips]
    rows = [{"audio": a, "text": t, "language": lang} for t, a, lang in zip(texts, audios, LANGUAGES, strict=True)]
    batch = collator(rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    model.train()
    started, transcripts, step = time.perf_counter(), [], 0
    for step in range(1, (steps or MAX_STEPS) + 1):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if steps is None and step % CHECK_EVERY == 0 and loss.item() < START_CHECKING_BELOW_LOSS:
            transcripts = transcribe(model, processor, audios, LANGUAGES, max_new_tokens=MAX_NEW_TOKENS)
            if word_error_rate(texts, transcripts) == 0:
                break
    seconds = time.perf_counter() - started
    if steps is not None:
        transcripts = transcribe(model, processor, audios, LANGUAGES, max_new_tokens=MAX_NEW_TOKENS)
    return TrainingRun(model, processor, step, seconds, transcripts)


@pytest.fixture(scope="module")
def learned(voxtral_tiny_dir: Path, speech_clips) -> TrainingRun:
    return fine_tune(voxtral_tiny_dir, speech_clips)


def test_tiny_voxtral_learns_to_transcribe_real_speech(learned: TrainingRun, speech_clips) -> None:
    texts = [text for text, _ in speech_clips]
    print(f"\nexact transcripts after {learned.steps} steps in {learned.seconds:.1f} s")
    assert word_error_rate(texts, learned.transcripts) == 0, learned.transcripts
    assert learned.steps < MAX_STEPS


def test_left_padded_batches_generate_like_single_clips(learned: TrainingRun, speech_clips) -> None:
    audios = [audio for _, audio in speech_clips]
    one_by_one = transcribe(learned.model, learned.processor, audios, LANGUAGES, batch_size=1)
    assert one_by_one == learned.transcripts


def test_peft_wrapped_and_merged_models_transcribe_the_same(learned: TrainingRun, speech_clips) -> None:
    from peft import LoraConfig, get_peft_model

    audios = [audio for _, audio in speech_clips]
    peft_model = get_peft_model(copy.deepcopy(learned.model), LoraConfig(r=4, target_modules=lora_target_regex()))
    assert transcribe(peft_model, learned.processor, audios, LANGUAGES) == learned.transcripts
    merged = peft_model.merge_and_unload()
    assert transcribe(merged, learned.processor, audios, LANGUAGES) == learned.transcripts


def test_without_eos_in_labels_generation_never_stops(voxtral_tiny_dir: Path, speech_clips, learned) -> None:
    broken = fine_tune(voxtral_tiny_dir, speech_clips, steps=learned.steps, append_eos=False)
    texts = [text for text, _ in speech_clips]
    assert word_error_rate(texts, broken.transcripts) > 0
    collator = VoxtralBatchBuilder(broken.processor)
    batch = collator.inference_batch([audio for _, audio in speech_clips], LANGUAGES)
    broken.model.eval()
    new_tokens = generate_batch(broken.model, batch, max_new_tokens=MAX_NEW_TOKENS, pad_token_id=11, eos_token_id=2)
    assert not (new_tokens == 2).any(), "a model never shown EOS should not emit it"


def test_unmasked_prompt_misses_the_bar(voxtral_tiny_dir: Path, speech_clips, learned) -> None:
    broken = fine_tune(voxtral_tiny_dir, speech_clips, steps=learned.steps, mask_prompt=False)
    texts = [text for text, _ in speech_clips]
    assert word_error_rate(texts, broken.transcripts) > 0.2, broken.transcripts
