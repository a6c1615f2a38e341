"""The tiny Voxtral really learns to transcribe through the real collator, trainer and run, and the test can fail.

20 bundled espeak-ng clips (three voices, 20 different sentences), a tiny random Voxtral, full fine-tuning with
``voxplug.training.run.train``: after 300 optimizer steps of 8 clips (lr 1e-2) the greedy transcripts of the
training clips are near-perfect (WER < 0.1). The negative control is the same run with a collator that drops
the EOS from the labels: the model learns the words but never learns to stop, so generation runs to
``max_new_tokens`` and every transcript runs on past its reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from voxplug_voxtral.family import VoxtralTranscriptionCollator

from voxplug import hookimpl

from .conftest import bundled_rows, run_config, validated, write_manifest

pytestmark = pytest.mark.slow
LEARNED_WER = 0.1
STEPS = 300


class NoEosCollator(VoxtralTranscriptionCollator):
    """The real collator, broken: labels end without EOS."""

    name = "voxtral-no-eos"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.collate._append_eos = False


class BrokenCollatorPlugin:
    @hookimpl
    def register_collators(self, register: Any) -> None:
        register(NoEosCollator)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("learning"), bundled_rows()[:20])


def fine_tune(tmp_path: Path, tiny_model: Path, clips: Path, collator: str | None) -> Any:
    from voxplug.plugins import PluginHost
    from voxplug.training.run import train

    host = PluginHost().load()
    host.register(BrokenCollatorPlugin(), name="broken-collator")
    config = run_config(
        tmp_path,
        tiny_model,
        clips,
        eval_manifest=clips,
        model__collator=collator,
        training__method="full",
        training__max_steps=STEPS,
        training__batch_size=8,
        training__learning_rate=1e-2,
        training__lr_scheduler="constant_with_warmup",
        training__warmup_ratio=0.05,
        training__eval_steps=STEPS,
        training__logging_steps=10,
        training__save_total_limit=1,
        evaluation__max_new_tokens=24,
        evaluation__batch_size=20,
    )
    return train(validated(config, tmp_path), host=host, progress=False)


def test_the_tiny_model_learns_to_transcribe_its_training_clips(tmp_path: Path, tiny_model: Path, clips: Path) -> None:
    result = fine_tune(tmp_path, tiny_model, clips, collator=None)
    print(
        f"\ntraining-clip WER {result.eval_results['eval_wer']:.3f} after {STEPS} steps, "
        f"{result.train_results['train_runtime']:.0f} s of training"
    )
    assert result.eval_results["eval_samples"] == 20
    assert result.eval_results["eval_wer"] < LEARNED_WER


def test_without_eos_in_the_labels_it_never_learns_to_stop(tmp_path: Path, tiny_model: Path, clips: Path) -> None:
    """Every transcript runs on past its reference until ``max_new_tokens``. What it runs on with depends on the
    machine's float arithmetic: more words (WER far above the bar) or a trail of dots glued to the last word, which
    WER's normalisation drops; so the run-on is counted in characters of the raw transcript."""
    result = fine_tune(tmp_path, tiny_model, clips, collator="voxtral-no-eos")
    rows = [json.loads(line) for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    run_on = [row for row in rows if len(row["hypothesis"]) > len(row["reference"]) + 3]
    print(f"\nno-EOS WER {result.eval_results['eval_wer']:.3f}; {len(run_on)}/20 transcripts run on")
    assert len(rows) == 20 and len(run_on) >= 18


def test_two_by_four_takes_the_same_optimizer_step_as_eight_by_one(make_config: Any, tmp_path: Path) -> None:
    """Gradient accumulation is exact: the loss of each micro-batch is normalised by the whole batch's label tokens.

    Same 8 clips in step 1 (the sampler's order does not depend on the micro-batch without length grouping), plain
    SGD and no clipping, so the update is the learning rate times the summed gradient: 8 x 1 and 2 x 4 must give
    the same adapter (only float summation order differs).
    """
    import torch
    from safetensors.torch import load_file

    from voxplug.training.run import train

    def adapter_after_one_step(batch_size: int, grad_accum: int) -> dict[str, Any]:
        name = f"mb{batch_size}x{grad_accum}"
        config = make_config(
            name=name,
            training__output_dir=str(tmp_path / name),
            training__batch_size=batch_size,
            training__grad_accum=grad_accum,
            training__max_steps=1,
            training__optim="sgd",
            training__learning_rate=1.0,
            training__max_grad_norm=0.0,
            training__group_by_length=False,
            evaluation__enabled=False,
        )
        result = train(validated(config, tmp_path), progress=False)
        return load_file(result.model_dir / "adapter_model.safetensors")

    whole, accumulated = adapter_after_one_step(8, 1), adapter_after_one_step(2, 4)
    assert whole.keys() == accumulated.keys()
    moved = [name for name in whole if "lora_B" in name and whole[name].abs().max() > 0]
    assert moved  # lora_B starts at zero: one step moved it
    for name in whole:
        assert torch.allclose(whole[name], accumulated[name], rtol=1e-4, atol=1e-7), name
