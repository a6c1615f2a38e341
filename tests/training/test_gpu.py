"""The single-GPU paths: bf16 LoRA, fp32-master full fine-tuning under bf16 autocast, DeepSpeed ZeRO-2 and ZeRO-3.

Skipped without CUDA. Run them on a GPU machine with ``python -m pytest tests/training/test_gpu.py -m gpu``.
They use the tiny offline Voxtral, so they need no network and take seconds per run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import bundled_rows, launch_training, run_cli, run_config, validated, write_config, write_manifest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("gpu-data")
    rows = bundled_rows()
    return write_manifest(folder, rows[:8], "train.jsonl"), write_manifest(folder, rows[8:10], "eval.jsonl")


def gpu_config(tmp_path: Path, tiny_model: Path, manifests: tuple[Path, Path], **overrides: Any) -> dict[str, Any]:
    train, evaluation = manifests
    return run_config(
        tmp_path,
        tiny_model,
        train,
        eval_manifest=evaluation,
        training__batch_size=4,
        training__epochs=2,
        evaluation__max_new_tokens=8,
        **overrides,
    )


@pytest.mark.parametrize("encoder_cache_gb", [0.0, 1.0])
def test_lora_trains_in_bf16_with_a_half_precision_base(
    tmp_path: Path, tiny_model: Path, manifests: Any, encoder_cache_gb: float
) -> None:
    """Also with the encoder-output cache: accelerate trains under autocast and generation runs without it."""
    from voxplug.training.run import train

    seen: dict[str, Any] = {}

    class Inspect:
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen["bf16"] = args.bf16
            seen["dtypes"] = {n: p.dtype for n, p in model.named_parameters()}

    from transformers import TrainerCallback

    callback = type("InspectCallback", (Inspect, TrainerCallback), {})()
    config = gpu_config(tmp_path, tiny_model, manifests, training__speed__encoder_cache_gb=encoder_cache_gb)
    result = train(validated(config, tmp_path), progress=False, callbacks=[callback])
    if encoder_cache_gb:
        assert result.train_results["encoder_cache"]["hits"] > 0
    assert result.train_results["precision"] == "bf16" and seen["bf16"]
    assert result.train_results["cuda_graphs"]["enabled"]  # set up by default, and no capture failed
    base = [dtype for name, dtype in seen["dtypes"].items() if "lora_" not in name]
    adapters = [dtype for name, dtype in seen["dtypes"].items() if "lora_" in name]
    assert set(base) <= {torch.bfloat16, torch.float32} and torch.bfloat16 in base  # norms may stay fp32
    assert set(adapters) == {torch.float32}
    assert "eval_wer" in result.eval_results


def test_full_fine_tuning_keeps_fp32_master_weights(tmp_path: Path, tiny_model: Path, manifests: Any) -> None:
    from safetensors.torch import load_file

    from voxplug.training.run import train

    config = gpu_config(tmp_path, tiny_model, manifests, training__method="full", training__learning_rate=1e-3)
    result = train(validated(config, tmp_path), progress=False)
    assert result.train_results["precision"] == "bf16"
    weights = load_file(result.model_dir / "model.safetensors")
    assert {tensor.dtype for name, tensor in weights.items() if "language_model" in name} == {torch.float32}


def test_full_fine_tuning_with_the_masters_in_the_optimizer_learns_as_with_them_in_the_model(
    tmp_path: Path, tiny_model: Path, manifests: Any
) -> None:
    """The model trains in bf16 while the optimizer steps fp32 masters; the losses follow the fp32-model run's and
    the saved language model holds the masters themselves, not their bf16 rounding."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from voxplug.training.run import train

    seen: dict[str, Any] = {}

    class Inspect(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen.setdefault("dtypes", {p.dtype for n, p in model.named_parameters() if "language_model" in n})

    losses, saved = {}, {}
    for where in ("model", "optimizer"):
        config = gpu_config(
            tmp_path / where,
            tiny_model,
            manifests,
            training__method="full",
            training__learning_rate=1e-3,
            training__master_weights=where,
            training__logging_steps=1,
        )
        seen.clear()
        (tmp_path / where).mkdir()
        result = train(validated(config, tmp_path / where), progress=False, callbacks=[Inspect()])
        assert result.train_results["master_weights"] == where
        assert seen["dtypes"] == {torch.float32 if where == "model" else torch.bfloat16}
        state = json.loads((result.run_dir / "trainer_state.json").read_text())
        losses[where] = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
        weights = load_file(result.model_dir / "model.safetensors")
        saved[where] = set(weights)
        language = [tensor for name, tensor in weights.items() if "language_model" in name]
        assert {tensor.dtype for tensor in language} == {torch.float32}
    assert saved["optimizer"] == saved["model"]  # every weight written, none dropped as shared memory
    assert len(losses["model"]) == len(losses["optimizer"]) >= 4
    assert losses["optimizer"][-1] < losses["optimizer"][0]
    for ours, theirs in zip(losses["optimizer"], losses["model"], strict=True):
        assert ours == pytest.approx(theirs, rel=0.05)
    masters = [t for n, t in weights.items() if "language_model" in n and t.is_floating_point()]
    assert any(not torch.equal(t, t.bfloat16().float()) for t in masters)  # fp32 values, not widened bf16


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_on_one_gpu(tmp_path: Path, tiny_model: Path, manifests: Any, stage: str) -> None:
    config = gpu_config(tmp_path, tiny_model, manifests, training__method="full", training__learning_rate=1e-3)
    path = write_config(tmp_path / "run.yaml", config)
    launch_training(stage, path, num_processes=1)
    run_dir = Path(config["training"]["output_dir"])
    results = json.loads((run_dir / "train_results.json").read_text())
    assert results["distributed_type"] == "DEEPSPEED" and results["precision"] == "bf16"
    assert "eval_wer" in json.loads((run_dir / "eval_results.json").read_text())
    from transformers import VoxtralForConditionalGeneration

    reloaded = VoxtralForConditionalGeneration.from_pretrained(run_dir / "model")  # full weights, gathered under ZeRO-3
    original = VoxtralForConditionalGeneration.from_pretrained(tiny_model)
    assert all(a.shape == b.shape for a, b in zip(reloaded.parameters(), original.parameters(), strict=True))


def test_lora_under_deepspeed_zero3_saves_a_loadable_adapter(tmp_path: Path, tiny_model: Path, manifests: Any) -> None:
    config = gpu_config(tmp_path, tiny_model, manifests, training__lora={"merge": True})
    path = write_config(tmp_path / "run.yaml", config)
    launch_training("zero3", path, num_processes=1)
    run_dir = Path(config["training"]["output_dir"])
    run_cli(
        [
            "evaluate",
            "--model",
            str(run_dir / "model"),
            "--data",
            str(manifests[1]),
            "--out",
            str(tmp_path / "e"),
            "--max-new-tokens",
            "8",
        ],
        cwd=tmp_path,
    )
    assert (tmp_path / "e" / "comparison.json").is_file() and (run_dir / "merged" / "model.safetensors").is_file()


def test_the_masters_one_pass_adamw_steps_as_the_three_passes_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the masters' AdamW runs in one pass (``masters_adamw``) where asked: bf16 weights and gradients,
    the same masters and moments as the unfused path's, and the weights their rounding."""
    import voxplug.training.master_weights as master_weights
    from voxplug.training.master_weights import MasterWeights
    from voxplug.training.speed.masters_adamw import adamw_step

    runs: list[bool] = []
    monkeypatch.setattr(master_weights, "adamw_step", lambda *a: runs.append(adamw_step(*a)) or runs[-1])
    generator = torch.Generator().manual_seed(0)
    sizes = (1 << 20, 4096 + 3, 777)
    start = [torch.randn(size, generator=generator).bfloat16().cuda() for size in sizes]
    models = [[torch.nn.Parameter(t.clone()) for t in start] for _ in range(2)]
    options = {"lr": 1e-3, "betas": (0.85, 0.98), "fused": True}

    def groups(params: list[Any]) -> list[dict[str, Any]]:  # as the Trainer's: weight decay on some weights only
        return [{"params": params[:1], "weight_decay": 0.01}, {"params": params[1:], "weight_decay": 0.0}]

    fused, plain = (
        MasterWeights(groups(params), inner=torch.optim.AdamW, inner_kwargs=options, fused=one_pass)
        for params, one_pass in zip(models, (True, False), strict=True)
    )
    assert fused.fused is True and plain.fused is False
    for _ in range(4):
        grads = [torch.randn(size, generator=generator).bfloat16().cuda() for size in sizes]
        for params, optimizer in zip(models, (fused, plain), strict=True):
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad.clone()
            optimizer.step()
            optimizer.zero_grad()
    assert runs == [False, True, True, True]
    ours = [m for chunk in fused.chunks for m in chunk.masters]
    theirs = [m for chunk in plain.chunks for m in chunk.masters]
    for mine, other, param in zip(ours, theirs, models[0], strict=True):
        torch.testing.assert_close(mine, other, rtol=2e-6, atol=2e-7)
        assert torch.equal(param, mine.bfloat16())
        ours, theirs = fused.state[mine], plain.state[other]
        torch.testing.assert_close(ours["exp_avg"], theirs["exp_avg"], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours["exp_avg_sq"], theirs["exp_avg_sq"], rtol=1e-6, atol=1e-9)
        assert float(ours["step"]) == float(theirs["step"]) == 4 and ours["step"].is_cuda
