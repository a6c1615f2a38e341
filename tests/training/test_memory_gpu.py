"""The memory estimate against a real training step on a GPU, and ``batch_size: auto`` under a capped card.

Skipped without CUDA. Run on a GPU machine with ``python -m pytest tests/training/test_memory_gpu.py -m gpu``.
The model is a random Voxtral of a middle size (a 580 M-parameter language model, built from a config beside the
tiny checkpoint's processor), large enough that activations and weights, not fixed overheads, set the peak.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from voxplug.training import memory

from .conftest import bundled_rows, run_config, validated, write_manifest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

#: How far the estimate may be from the measured peak on a shape it was not fitted to.
TOLERANCE = 0.25
MIDDLE_TEXT = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 12,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
}
MIDDLE_AUDIO = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 8}


@pytest.fixture(scope="module")
def middle_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The tiny checkpoint's processor and vocabulary with a wider, deeper random model (bf16 weights)."""
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    folder = tmp_path_factory.mktemp("middle") / "model"
    shutil.copytree(tiny_model, folder)
    tiny = json.loads((tiny_model / "config.json").read_text())
    text = {**tiny["text_config"], **MIDDLE_TEXT}
    audio = {**tiny["audio_config"], **MIDDLE_AUDIO}
    config = VoxtralConfig(text_config=text, audio_config=audio, audio_token_id=tiny.get("audio_token_id", 24))
    torch.manual_seed(0)
    model = VoxtralForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("memory-data"), bundled_rows(), "train.jsonl")


def peak_recorder() -> tuple[Any, dict[str, int]]:
    """A Trainer callback reading the peak allocated memory from the first step to the end of training."""
    from transformers import TrainerCallback

    seen: dict[str, int] = {}

    class Peak(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            torch.cuda.synchronize()
            seen["peak"] = torch.cuda.max_memory_allocated()

    return Peak(), seen


def middle_config(tmp_path: Path, model: Path, manifest: Path, **overrides: Any) -> Any:
    config = run_config(
        tmp_path,
        model,
        manifest,
        training__max_steps=2,
        training__speed__encoder_cache_gb=0.0,
        evaluation__enabled=False,
        **overrides,
    )
    return validated(config, tmp_path)


@pytest.mark.parametrize(("method", "micro_batch"), [("lora", 16), ("full", 4)])
def test_estimate_is_within_tolerance_of_a_real_step(
    tmp_path: Path, middle_model: Path, manifest: Path, method: str, micro_batch: int
) -> None:
    from voxplug.plugins import get_plugin_host
    from voxplug.training.run import TrainingRun

    callback, seen = peak_recorder()
    config = middle_config(tmp_path, middle_model, manifest, training__method=method, training__batch_size=micro_batch)
    run = TrainingRun(config, get_plugin_host(), resume=False, progress="off", callbacks=[callback])
    run.execute()
    estimate = run.context.batch.estimate
    assert estimate is not None and run.context.batch.micro_batch == micro_batch
    assert abs(estimate.peak / seen["peak"] - 1) <= TOLERANCE, (estimate.line(), seen["peak"] / memory.GIB)


def test_auto_picks_a_micro_batch_that_trains_under_a_memory_cap(
    tmp_path: Path, middle_model: Path, manifest: Path
) -> None:
    """The process is capped between the estimates of micro-batches 4 and 8 (effective batch 16), above what it
    already holds (earlier tests in the process keep memory): auto takes 4 x 4, and the run trains without running
    out of memory, its peak under the cap."""
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_voxtral.family import VoxtralFamily

    from voxplug.plugins import get_plugin_host
    from voxplug.training.run import TrainingRun

    family = VoxtralFamily()
    shape = family.model_shape(str(middle_model))
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    row = memory.row_size([None], [r["text"] for r in rows], max_duration_s=30.0, chunk_s=shape.chunk_s)
    trained = LoraMethod(LoraOptions()).trained_weights(shape.model, family)
    step = memory.step_memory(shape, trained, row, base_dtype="bf16", precision="bf16", optim="adamw_torch_fused")

    def needed(micro: int) -> float:
        estimate = memory.estimate_step(
            step, micro_batch=micro, grad_accum=16 // micro, gradient_checkpointing=False, label_logits=True
        )
        return (estimate.peak + memory.OUTSIDE_ALLOCATOR_BYTES) / (1 - memory.AUTO_HEADROOM)

    gc.collect()
    torch.cuda.empty_cache()
    held = torch.cuda.memory_reserved()
    cap = held + (needed(4) + needed(8)) / 2
    total = torch.cuda.mem_get_info()[1]
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        callback, seen = peak_recorder()
        config = middle_config(
            tmp_path,
            middle_model,
            manifest,
            training__batch_size="auto",
            training__grad_accum=1,
            training__effective_batch=16,
        )
        run = TrainingRun(config, get_plugin_host(), resume=False, progress="off", callbacks=[callback])
        run.execute()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    batch = run.context.batch
    assert (batch.micro_batch, batch.grad_accum, batch.chosen_by) == (4, 4, "auto")
    assert run.hf_trainer.state.global_step == 2 and seen["peak"] <= cap
    decided = json.loads((tmp_path / "run" / "training_config.json").read_text())["decided"]["batch"]
    assert decided["batch_size"] == 4 and decided["chosen_by"] == "auto"
