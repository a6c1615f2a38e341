"""TrainingArguments from a run config: intervals resolved against the real step count."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplug.config import validate_config
from voxplug.errors import TrainingError
from voxplug.training.arguments import build_training_arguments, plan_steps, training_argument_values
from voxplug.training.context import TrainingContext, decide


def config_with(tmp_path: Path, **training: object) -> object:
    return validate_config({"training": training}, base_dir=tmp_path)


def decided(config: object, train_rows: int) -> TrainingContext:
    """What a single-process run of ``config`` over ``train_rows`` rows decides on this machine."""
    return decide(config, {}, train_rows=train_rows, world_size=1)  # type: ignore[arg-type]


def test_small_dataset_is_logged_evaluated_and_saved_every_epoch(tmp_path: Path) -> None:
    # 10 recordings at an effective batch of 8: 2 steps an epoch, fewer than fixed intervals (log 10, save 50).
    config = config_with(tmp_path, batch_size=2, grad_accum=4, epochs=3, logging_steps=10)
    plan = plan_steps(config.training, train_rows=10, world_size=1)
    assert (plan.steps_per_epoch, plan.total_steps) == (2, 6)
    assert plan.logging_steps == 2 and plan.eval_steps == 2 and plan.save_steps == 2
    values = training_argument_values(config, decided(config, 10), has_eval=True, output_dir=tmp_path)
    assert values["logging_first_step"] is True
    assert values["eval_strategy"] == "steps" and values["save_strategy"] == "steps"


def test_world_size_divides_the_steps(tmp_path: Path) -> None:
    config = config_with(tmp_path, batch_size=2, grad_accum=1, epochs=1)
    assert plan_steps(config.training, train_rows=16, world_size=1).steps_per_epoch == 8
    assert plan_steps(config.training, train_rows=16, world_size=2).steps_per_epoch == 4


def test_the_eval_batch_follows_the_decided_micro_batch_unless_set(tmp_path: Path) -> None:
    for training, expected in (({"batch_size": 6}, 6), ({"batch_size": 6, "eval_batch_size": 2}, 2)):
        config = config_with(tmp_path, **training)
        args = build_training_arguments(config, decided(config, 30), has_eval=True, output_dir=tmp_path / "ckpt")
        assert args.per_device_eval_batch_size == expected
    # with the micro-batch auto too, the one the run decided (nothing measured on this CPU: 2)
    config = config_with(tmp_path, batch_size="auto")
    args = build_training_arguments(config, decided(config, 30), has_eval=True, output_dir=tmp_path / "ckpt")
    assert args.per_device_eval_batch_size == args.per_device_train_batch_size == 2


def test_every_training_key_reaches_the_arguments(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        epochs=2,
        max_steps=7,
        batch_size=3,
        eval_batch_size=5,
        grad_accum=2,
        learning_rate=1e-4,
        lr_scheduler="cosine",
        warmup_ratio=0.1,
        weight_decay=0.01,
        max_grad_norm=0.5,
        optim="adafactor",
        gradient_checkpointing=True,
        seed=7,
        save_total_limit=3,
        dataloader_workers=2,
        eval_steps=2,
        save_steps=4,
    )
    args = build_training_arguments(config, decided(config, 30), has_eval=True, output_dir=tmp_path / "ckpt")
    assert (args.num_train_epochs, args.max_steps) == (2, 7)
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (3, 5)
    assert (args.gradient_accumulation_steps, args.learning_rate, args.weight_decay) == (2, 1e-4, 0.01)
    assert (args.lr_scheduler_type.value, args.warmup_steps, args.max_grad_norm) == ("cosine", 0.1, 0.5)
    assert args.optim.value == "adafactor"
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert (args.seed, args.data_seed, args.save_total_limit, args.dataloader_num_workers) == (7, 7, 3, 2)
    assert (args.eval_steps, args.save_steps) == (2, 4)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_wer" and not args.greater_is_better
    assert args.remove_unused_columns is False and args.report_to == [] and args.label_names == ["labels"]
    assert not args.bf16 and not args.fp16


def test_best_model_falls_back_to_loss_without_generation(tmp_path: Path) -> None:
    config = validate_config({"evaluation": {"enabled": False}}, base_dir=tmp_path)
    values = training_argument_values(config, decided(config, 8), has_eval=True, output_dir=tmp_path)
    assert values["metric_for_best_model"] == "eval_loss"


def test_no_eval_rows_means_no_evaluation(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    values = training_argument_values(config, decided(config, 8), has_eval=False, output_dir=tmp_path)
    assert values["eval_strategy"] == "no" and values["load_best_model_at_end"] is False


def test_one_interval_follows_the_other(tmp_path: Path) -> None:
    only_save = plan_steps(config_with(tmp_path, batch_size=8, save_steps=6).training, train_rows=100, world_size=1)
    only_eval = plan_steps(config_with(tmp_path, batch_size=8, eval_steps=4).training, train_rows=100, world_size=1)
    assert (only_save.eval_steps, only_save.save_steps) == (6, 6)
    assert (only_eval.eval_steps, only_eval.save_steps) == (4, 4)


def test_misaligned_save_and_eval_steps_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"save_steps=5 must be a multiple of training.eval_steps=2"):
        plan_steps(
            config_with(tmp_path, batch_size=8, eval_steps=2, save_steps=5).training, train_rows=10, world_size=1
        )


def test_deepspeed_config_resolves_against_the_config_folder_then_the_presets(tmp_path: Path) -> None:
    zero2 = config_with(tmp_path, deepspeed="deepspeed/zero2.json")
    preset = training_argument_values(zero2, decided(zero2, 8), has_eval=False, output_dir=tmp_path)
    assert preset["deepspeed"].endswith("configs/deepspeed/zero2.json")
    missing = config_with(tmp_path, deepspeed="nope.json")
    with pytest.raises(TrainingError, match="training.deepspeed: nope.json not found"):
        training_argument_values(missing, decided(missing, 8), has_eval=False, output_dir=tmp_path)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cpu_is_one_clear_error(precision: str) -> None:
    from voxplug.training.devices import cuda_available, resolve_precision

    if cuda_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(TrainingError, match=f"training.precision={precision} needs a CUDA GPU"):
        resolve_precision(precision)
    assert resolve_precision("auto") == "fp32"


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("model", {"attn_implementation": "flash_attention_2"}, "flash_attention_2 needs a CUDA GPU"),
        ("training", {"optim": "adamw_8bit"}, "adamw_8bit needs a CUDA GPU"),
        ("training", {"deepspeed": "deepspeed/zero2.json"}, "DeepSpeed needs CUDA GPUs"),
    ],
)
def test_gpu_only_options_on_cpu_are_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str, values: dict, message: str
) -> None:
    from voxplug.training.context import check_run_options
    from voxplug.training.devices import cuda_available

    if cuda_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("VOXPLUG_TEST_CPU_DEEPSPEED", raising=False)
    with pytest.raises(TrainingError, match=message):
        check_run_options(validate_config({section: values}, base_dir=tmp_path))


@pytest.mark.parametrize("cuda", [True, False])
def test_batches_reach_a_gpu_from_pinned_memory_without_a_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda: bool
) -> None:
    """A blocking copy would wait for the previous step to finish on the GPU before the next could be queued."""
    import voxplug.training.arguments as arguments

    monkeypatch.setattr(arguments, "cuda_available", lambda: cuda)
    config = config_with(tmp_path)
    values = training_argument_values(config, decided(config, 16), has_eval=False, output_dir=tmp_path)
    assert values["dataloader_pin_memory"] is cuda
    assert values["accelerator_config"] == {"non_blocking": cuda}
