"""Voxtral Realtime on a CUDA GPU: training (full, and LoRA), then streaming transcription with transformers' own
generation on the GPU. Skipped without CUDA; run with ``python -m pytest tests/realtime/test_gpu.py -m gpu``.

The tiny offline checkpoint and word-by-word espeak clips, as in test_learning.py: no network, a minute or two.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .test_learning import STEPS, fine_tune, learned

LM_HEAD = ["lm_head"]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_full_fine_tuning_on_the_gpu_then_streaming_on_the_gpu(
    tmp_path: Path, realtime_tiny_dir: Path, word_clips: Path
) -> None:
    result = fine_tune(tmp_path, realtime_tiny_dir, word_clips, collator=None)
    assert result.train_results["precision"] in ("bf16", "fp16")
    ok, summary = learned(result, word_clips, device="cuda")
    print(f"\nGPU full: {summary} after {STEPS} steps, {result.train_results['train_runtime']:.0f} s")
    assert ok, summary


def test_lora_on_the_gpu_trains_saves_and_streams(tmp_path: Path, realtime_tiny_dir: Path, word_clips: Path) -> None:
    """bf16 base with fp32 adapters (and the tied output layer in full): the loss falls, and the saved adapter, loaded
    on its base, streams what the run's own final evaluation measured.

    How well LoRA on this random tiny model learns to stream is not the claim: at this step count it stays far from
    what full fine-tuning reaches (the full-model test above asserts learning)."""
    import json

    import jiwer

    from .test_learning import streamed

    result = fine_tune(
        tmp_path,
        realtime_tiny_dir,
        word_clips,
        collator=None,
        training__method="lora",
        training__lora={
            "r": 32,
            "alpha": 32,
            "scopes": ["language_model", "projector"],
            "modules_to_save": ["lm_head"],
        },
        training__max_steps=300,
        training__eval_steps=300,
    )
    history = json.loads((result.run_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert losses[-1] < losses[0] / 3
    rows, results = streamed(result.model_dir, word_clips, device="cuda")
    wer = jiwer.wer([row["text"] for row in rows], [r.text or "<empty>" for r in results])
    evaluated = result.eval_results["eval_wer"]
    print(f"\nGPU LoRA: loss {losses[0]:.2f} -> {losses[-1]:.2f}, streaming WER {wer:.3f}, in the run {evaluated:.3f}")
    assert abs(wer - evaluated) <= 0.1
