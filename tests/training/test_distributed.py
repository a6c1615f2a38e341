"""Real multi-process training on CPU: 2 DDP ranks over gloo and DeepSpeed ZeRO-2/ZeRO-3 on 2 ranks, launched with
``accelerate launch -m voxplug train`` and the repository's accelerate configs, each matching a one-process run
with the same global batch (4 clips per step) step for step.

Measured on 2 CPU cores: the per-step losses agree to about 1e-6 (relative); the tolerance below is 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voxplug.testing.cpu_deepspeed import cpu_deepspeed_env

from .conftest import launch_training, rank_test_config, validated, write_config

pytestmark = pytest.mark.slow
LOSS_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    """8 training clips (2 steps per epoch at 4 per step), 3 eval clips, and the one-process baseline."""
    from voxplug.training.run import train

    folder = tmp_path_factory.mktemp("distributed")

    def config(name: str, per_device_batch: int) -> dict[str, Any]:
        return rank_test_config(
            folder, tiny_model, name, per_device_batch, training__method="full", training__learning_rate=1e-3
        )

    baseline = train(validated(config("one", 4), folder), progress=False)
    return {"folder": folder, "config": config, "baseline": baseline}


def losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def check_matches_baseline(run_dir: Path, setup: dict[str, Any], distributed_type: str) -> None:
    baseline = setup["baseline"].run_dir
    results = json.loads((run_dir / "train_results.json").read_text())
    assert results["world_size"] == 2 and results["distributed_type"] == distributed_type
    assert results["global_step"] == 4
    assert losses(run_dir) == pytest.approx(losses(baseline), rel=LOSS_TOLERANCE)
    # generation-based eval: sharded over the ranks, gathered back in the eval manifest's order
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in predictions] == ["en_gb_000", "en_gb_001", "en_gb_002"]
    assert "eval_wer" in json.loads((run_dir / "eval_results.json").read_text())
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_two_cpu_processes_with_ddp_match_one_process(setup: dict[str, Any]) -> None:
    config = setup["config"]("ddp", 2)
    path = write_config(setup["folder"] / "ddp.yaml", config)
    launch_training("cpu-2proc", path, env={"ACCELERATE_USE_CPU": "1"})
    check_matches_baseline(Path(config["training"]["output_dir"]), setup, "MULTI_CPU")


def test_deepspeed_zero2_on_two_cpu_ranks_matches_one_process(setup: dict[str, Any]) -> None:
    config = setup["config"]("zero2", 2)
    path = write_config(setup["folder"] / "zero2.yaml", config)
    launch_training("zero2", path, num_processes=2, env=cpu_deepspeed_env(setup["folder"] / "plugins"))
    run_dir = Path(config["training"]["output_dir"])
    check_matches_baseline(run_dir, setup, "DEEPSPEED")
    assert list((run_dir / "checkpoints").glob("checkpoint-*/global_step*"))  # DeepSpeed's own checkpoint layout


def test_deepspeed_zero3_on_two_cpu_ranks_saves_the_whole_model(setup: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    config = setup["config"]("zero3", 2)
    config["training"]["device_memory_gb"] = 64  # the memory estimate and fit check run, as on a GPU
    path = write_config(setup["folder"] / "zero3.yaml", config)
    launch_training("zero3", path, num_processes=2, env=cpu_deepspeed_env(setup["folder"] / "plugins"))
    run_dir = Path(config["training"]["output_dir"])
    check_matches_baseline(run_dir, setup, "DEEPSPEED")
    # parameters sharded over the ranks, gathered for the final save under the standard checkpoint names
    sharded = load_file(run_dir / "model" / "model.safetensors")
    whole = load_file(setup["baseline"].run_dir / "model" / "model.safetensors")
    assert sharded.keys() == whole.keys()
    assert all((sharded[key] - whole[key]).abs().max() < 1e-4 for key in whole)


def test_two_ranks_deciding_the_batch_from_memory_agree_and_match_one_process(setup: dict[str, Any]) -> None:
    """``batch_size: auto`` (the default) under DDP: both ranks estimate against the same budget, take the same
    micro-batch for their ``effective_batch`` and train the baseline's global batch."""
    config = setup["config"]("auto", "auto")
    config["training"].update(effective_batch=2, device_memory_gb=64)
    path = write_config(setup["folder"] / "auto.yaml", config)
    launch_training("cpu-2proc", path, env={"ACCELERATE_USE_CPU": "1"})
    run_dir = Path(config["training"]["output_dir"])
    check_matches_baseline(run_dir, setup, "MULTI_CPU")
    decided = json.loads((run_dir / "training_config.json").read_text())["decided"]["batch"]
    assert (decided["batch_size"], decided["grad_accum"], decided["chosen_by"]) == (2, 1, "auto")
    assert decided["available_gib"] == 64 and not decided["gradient_checkpointing"]


def test_lora_under_deepspeed_zero3_on_two_cpu_ranks_evaluates_by_generation(setup: dict[str, Any]) -> None:
    """The decoding step reads every weight through its module, so ZeRO-3 gathers the partitioned norms too."""
    config = setup["config"]("lora-zero3", 2)
    config["training"].update(method="lora", learning_rate=5e-3, epochs=1)
    path = write_config(setup["folder"] / "lora-zero3.yaml", config)
    launch_training("zero3", path, num_processes=2, env=cpu_deepspeed_env(setup["folder"] / "plugins"))
    run_dir = Path(config["training"]["output_dir"])
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in predictions] == ["en_gb_000", "en_gb_001", "en_gb_002"]
    assert "eval_wer" in json.loads((run_dir / "eval_results.json").read_text())
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
