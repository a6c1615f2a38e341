"""Streamed training data on a CUDA GPU: four data-loader workers with pinned memory feed a LoRA run, and a run
stopped after its third step resumes with the uninterrupted run's losses.

Skipped without CUDA. Run on a GPU machine with ``python -m pytest tests/training/test_streaming_gpu.py -m gpu``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import bundled_rows, run_config, validated, write_manifest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
STEPS = 7


def losses(run_dir: Path) -> dict[int, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def test_streamed_lora_on_a_gpu_resumes_with_the_same_losses(tmp_path: Path, tiny_model: Path) -> None:
    from transformers import TrainerCallback

    from voxplug.training.run import train

    rows = bundled_rows()
    manifest = write_manifest(tmp_path / "data", rows[:20], "train.jsonl")
    eval_manifest = write_manifest(tmp_path / "data", rows[20:22], "eval.jsonl")

    def config(name: str) -> Any:
        raw = run_config(
            tmp_path / name,
            tiny_model,
            manifest,
            eval_manifest=eval_manifest,
            name=name,
            evaluation__enabled=False,
            data__streaming=True,
            training__precision="fp32",
            training__batch_size=2,
            training__max_steps=STEPS,
            training__save_steps=3,
            training__dataloader_workers=4,
        )
        return validated(raw, tmp_path)

    class StopAtThree(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step == 3:
                control.should_training_stop = True
            return control

    uninterrupted = train(config("a"), progress=False)
    train(config("b"), progress=False, callbacks=[StopAtThree()])
    resumed = train(config("b"), progress=False, resume=True)
    assert resumed.train_results["global_step"] == STEPS
    before, after = losses(uninterrupted.run_dir), losses(resumed.run_dir)
    for step in range(1, STEPS + 1):
        assert after[step] == pytest.approx(before[step], rel=1e-4, abs=1e-5), step
    assert resumed.train_results["resumed_from"].endswith("checkpoint-3")
    # checkpoint-3 itself is rotated out (save_total_limit 2); the resumed run's checkpoint-6 carries on its count
    position = json.loads((resumed.run_dir / "checkpoints" / "checkpoint-6" / "voxplug_stream_rank0.json").read_text())
    assert position["readers"] == 4 and position["batches"] == 6
