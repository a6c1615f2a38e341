"""QLoRA (``model.quantization: nf4``) through the real run on the CPU: a 4-bit tiny Voxtral trains, its adapter
reloads, and the merged model is the bf16 base plus the adapter, never the 4-bit weights.

bitsandbytes' 4-bit layers run on the CPU, so this is transformers' own ``BitsAndBytesConfig`` load, PEFT's
bitsandbytes LoRA layers and the Trainer, exactly as on a GPU, on a tiny model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from voxplug.errors import ConfigError, ModelError, TrainingError

from .conftest import run_config, validated

pytest.importorskip("bitsandbytes")

STEPS = 30


@pytest.fixture(scope="module")
def tiny_model_4bit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Voxtral with a language model 64 wide: bitsandbytes' CPU decoding packs each 4-bit weight in
    blocks of 32 output rows (the default tiny's key/value projections have 24)."""
    from voxplug_voxtral.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("tiny-voxtral-64"), text_hidden=64)


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_4bit: Path, speech_manifest: Path) -> Any:
    """One QLoRA run of the tiny Voxtral: 30 steps of 2 clips, merge on."""
    from voxplug.training.run import train

    tmp_path = tmp_path_factory.mktemp("qlora")
    config = run_config(
        tmp_path,
        tiny_model_4bit,
        speech_manifest,
        model__quantization="nf4",
        training__max_steps=STEPS,
        training__learning_rate=2e-2,
        training__lr_scheduler="constant",
        training__eval_steps=STEPS,
        training__lora={"merge": True, "r": 16, "alpha": 32},
    )
    return train(validated(config, tmp_path), progress=False)


def lm_linear(model: Any, name: str = "q_proj") -> Any:
    """The first language-model decoder layer's ``name`` projection of a (plain or PEFT) Voxtral."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base.model.language_model.layers[0].self_attn, name)


@pytest.mark.slow
def test_a_4bit_base_trains_and_its_loss_falls(qlora_run: Any) -> None:
    losses = [entry["loss"] for entry in qlora_run_history(qlora_run) if "loss" in entry]
    assert len(losses) == STEPS
    # the untrained tiny model's loss is about ln(vocabulary) = 8.0 on every batch; adapters on its narrow language
    # model under a frozen random head lower it slowly, by a few tenths in 30 steps
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, losses
    results = qlora_run.train_results
    assert results["global_step"] == STEPS
    # the paths that cannot run over 4-bit layers say so; one-node adapters were not put on PEFT's 4-bit layers
    assert set(results["speed_stepped_aside"]) == {"cuda_graphs", "lora.one_node"}
    decided = json.loads((qlora_run.run_dir / "training_config.json").read_text())["decided"]
    assert decided["quantization"] == "nf4" and decided["speed"]["eager_adapters"] is False


def qlora_run_history(run: Any) -> list[dict[str, Any]]:
    return json.loads((run.run_dir / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_the_adapter_reloads_and_the_merge_is_the_bf16_base_plus_the_adapter(
    qlora_run: Any, tiny_model_4bit: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import VoxtralForConditionalGeneration

    adapter_dir, merged_dir = qlora_run.saved["adapter"], qlora_run.saved["merged"]
    merged_config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in merged_config and merged_config["dtype"] == "bfloat16"

    base = VoxtralForConditionalGeneration.from_pretrained(tiny_model_4bit, dtype=torch.bfloat16)
    original = lm_linear(base).weight.detach().float().clone()
    adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    merged = VoxtralForConditionalGeneration.from_pretrained(merged_dir).eval()
    assert lm_linear(merged).weight.dtype == torch.bfloat16

    # the merged weight is the original bf16 weight plus the adapter's update: a merge into the 4-bit weights
    # would be off by NF4's rounding, far more than bf16's
    layer = lm_linear(adapted)
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight).float() * layer.scaling["default"]
    assert delta.abs().max() > 1e-3  # the adapter learned something
    expected = original + delta
    difference = (lm_linear(merged).weight.float() - expected).abs().max()
    assert difference <= 2 * torch.finfo(torch.bfloat16).eps * expected.abs().max(), difference

    ids = torch.tensor([[1, 3, 24, 24, 4, 100, 200, 2]])
    with torch.no_grad():
        want = adapted(input_ids=ids).logits.float()
        got = merged(input_ids=ids).logits.float()
    assert torch.allclose(got, want, atol=0.05 * want.abs().max().item()), (got - want).abs().max()


def test_quantization_needs_the_lora_method(tmp_path: Path, make_config: Any) -> None:
    with pytest.raises(ConfigError, match=r"model\.quantization=nf4 .*training\.method=lora"):
        validated(make_config(model__quantization="nf4", training__method="full"), tmp_path)


def test_quantization_without_bitsandbytes_names_the_extra(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxplug.training.context import check_run_options

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what Python's import sees when it is not installed
    with pytest.raises(ModelError, match=r"voxplug\[qlora\]"):
        check_run_options(validated(make_config(model__quantization="nf4"), tmp_path))


def test_quantization_refuses_deepspeed(tmp_path: Path, make_config: Any) -> None:
    from voxplug.training.context import check_run_options

    config = make_config(model__quantization="nf4", training__deepspeed=str(Path("configs/deepspeed/zero2.json")))
    with pytest.raises(TrainingError, match=r"model\.quantization=nf4 does not run under DeepSpeed"):
        check_run_options(validated(config, Path(__file__).resolve().parents[2]))


def test_a_family_without_4bit_loading_is_refused_before_loading(tmp_path: Path, speech_manifest: Path) -> None:
    from voxplug_whisper.tiny import build_tiny_whisper

    from voxplug.training.run import train

    whisper = build_tiny_whisper(tmp_path / "whisper")
    config = run_config(tmp_path, whisper, speech_manifest, model__quantization="nf4", training__max_steps=1)
    with pytest.raises(ModelError, match=r"the whisper family does not load 4-bit bases"):
        train(validated(config, tmp_path), progress=False)


@pytest.mark.slow
def test_qlora_on_two_cpu_ranks_with_ddp_matches_one_process(tmp_path: Path, tiny_model_4bit: Path) -> None:
    """``accelerate launch`` with two DDP ranks over gloo: each rank loads the 4-bit base, DDP reduces the adapters'
    gradients, and the losses follow a one-process run of the same global batch; the merged model is saved once."""
    from voxplug.training.run import train

    from .conftest import launch_training, rank_test_config, write_config

    def config(name: str, per_device_batch: int) -> dict[str, Any]:
        return rank_test_config(
            tmp_path,
            tiny_model_4bit,
            name,
            per_device_batch,
            model__quantization="nf4",
            training__learning_rate=1.0,
            training__optim="sgd",  # updates linear in the gradients: Adam's would magnify rounding into sign flips
            training__lora={"merge": True, "r": 16, "alpha": 32},
        )

    one = train(validated(config("one", 4), tmp_path), progress=False).run_dir
    two = config("two", 2)
    launch_training("cpu-2proc", write_config(tmp_path / "two.yaml", two), env={"ACCELERATE_USE_CPU": "1"})
    run_dir = Path(two["training"]["output_dir"])
    results = json.loads((run_dir / "train_results.json").read_text())
    assert (results["world_size"], results["distributed_type"], results["global_step"]) == (2, "MULTI_CPU", 4)

    def losses(folder: Path) -> list[float]:
        return [entry["loss"] for entry in qlora_run_history_of(folder) if "loss" in entry]

    # bitsandbytes' 4-bit CPU matmuls depend a little on which rows share a batch, so the adapters drift apart
    # where an unquantized base keeps them equal; the losses stay close
    assert losses(run_dir) == pytest.approx(losses(one), rel=1e-3)
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in predictions] == ["en_gb_000", "en_gb_001", "en_gb_002"]
    merged = json.loads((run_dir / "merged" / "config.json").read_text())
    assert "quantization_config" not in merged  # the bf16 base plus the adapter, never the 4-bit weights


def qlora_run_history_of(run_dir: Path) -> list[dict[str, Any]]:
    return json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
