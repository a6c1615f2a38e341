"""``transformers.TrainingArguments`` from a voxplug :class:`~voxplug.config.RunConfig`.

The run config is the user's vocabulary; this module is the one place that translates it. Intervals that
depend on the data (``None`` = once per epoch) are resolved against the real number of optimizer steps, so a
10-clip dataset, which may take one optimizer step an epoch, is still logged, evaluated and checkpointed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.errors import TrainingError
from voxplug.training.devices import cuda_available
from voxplug.training.eval_schedule import spaced_eval_steps

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from voxplug.config import RunConfig, TrainingConfig
    from voxplug.training.context import TrainingContext

#: ``evaluation.best_model_metric`` -> the Trainer's metric name; all are "lower is better".
BEST_METRIC_KEYS = {"wer": "eval_wer", "cer": "eval_cer", "loss": "eval_loss"}


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps the run takes and how often it logs, evaluates and saves."""

    steps_per_epoch: int
    total_steps: int
    logging_steps: int
    eval_steps: int
    save_steps: int
    eval_note: str = ""  # why evaluations are further apart than one epoch, for the plan line


def plan_steps(
    training: TrainingConfig,
    *,
    train_rows: int | None,
    world_size: int,
    eval_rows: int = 0,
    batch_size: int | None = None,
    grad_accum: int | None = None,
) -> StepPlan:
    """Resolve step counts and intervals for ``train_rows`` examples spread over ``world_size`` processes.

    ``batch_size`` and ``grad_accum`` are the run's decided micro-batch and accumulation (default: the config's,
    which must then be a fixed size).

    ``train_rows`` is None for a stream whose size is unknown: ``training.max_steps`` then sets the length of the
    run, which counts as one epoch. ``eval_rows`` (the rows each evaluation runs on) spaces evaluations under
    ``training.max_eval_share`` (:mod:`voxplug.training.eval_schedule`).
    """
    if batch_size is None:
        if training.batch_size == "auto":
            raise ValueError("training.batch_size is auto: pass the micro-batch and accumulation the run decided")
        batch_size = training.batch_size
    grad_accum = grad_accum or training.grad_accum
    if train_rows is None:
        if training.max_steps <= 0:
            raise TrainingError(
                "the data streams from a source that does not say how many rows it has, so epochs cannot be "
                "counted: set training.max_steps (the number of optimizer steps to train)"
            )
        train_rows = training.max_steps * grad_accum * batch_size * world_size
    micro_batches = math.ceil(train_rows / (batch_size * world_size))
    steps_per_epoch = max(1, math.ceil(micro_batches / grad_accum))
    if training.max_steps > 0:
        total = training.max_steps
    else:
        total = max(1, math.ceil(training.epochs * steps_per_epoch))
    spacing = spaced_eval_steps(
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        rows_per_step=batch_size * grad_accum * world_size,
        eval_rows=eval_rows,
        max_share=training.max_eval_share,
    )
    eval_steps, save_steps = _eval_and_save_intervals(training, spacing.steps)
    return StepPlan(
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        logging_steps=max(1, min(training.logging_steps, steps_per_epoch)),
        eval_steps=eval_steps,
        save_steps=save_steps,
        eval_note=spacing.note if training.eval_steps is None and training.save_steps is None else "",
    )


def _eval_and_save_intervals(training: TrainingConfig, default_steps: int) -> tuple[int, int]:
    """``None`` follows the other interval, or ``default_steps``; saving must line up with evaluating."""
    eval_steps = training.eval_steps or training.save_steps or default_steps
    save_steps = training.save_steps or eval_steps
    if save_steps % eval_steps:
        raise TrainingError(
            f"training.save_steps={save_steps} must be a multiple of training.eval_steps={eval_steps}, "
            "so that every checkpoint has a WER to pick the best model by"
        )
    return eval_steps, save_steps


#: Data-loader workers when ``training.dataloader_workers`` is unset and a CUDA GPU is present: decoding audio and
#: extracting mel features would otherwise hold up the main process between GPU steps.
GPU_DATALOADER_WORKERS = 4


def dataloader_workers(training: TrainingConfig) -> int:
    """``training.dataloader_workers``, or :data:`GPU_DATALOADER_WORKERS` with a CUDA GPU and 0 on CPU when unset."""
    if training.dataloader_workers is not None:
        return training.dataloader_workers
    return GPU_DATALOADER_WORKERS if cuda_available() else 0


def build_training_arguments(
    config: RunConfig, context: TrainingContext, *, has_eval: bool, output_dir: Path
) -> TrainingArguments:
    """Return the ``TrainingArguments`` for ``config`` with what the run decided (``context``: precision, compile,
    the step plan)."""
    from transformers import TrainingArguments

    return TrainingArguments(**training_argument_values(config, context, has_eval=has_eval, output_dir=output_dir))


def training_argument_values(
    config: RunConfig, context: TrainingContext, *, has_eval: bool, output_dir: Path
) -> dict[str, Any]:
    """The keyword arguments of :func:`build_training_arguments`, as plain data (easy to inspect and test)."""
    training, plan, precision = config.training, context.plan, context.precision
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "run_name": config.name,
        "num_train_epochs": training.epochs,
        "max_steps": training.max_steps,
        "per_device_train_batch_size": context.batch.micro_batch,
        "per_device_eval_batch_size": (
            context.batch.micro_batch if training.eval_batch_size == "auto" else training.eval_batch_size
        ),
        "gradient_accumulation_steps": context.batch.grad_accum,
        "learning_rate": training.learning_rate,
        "lr_scheduler_type": training.lr_scheduler,
        "warmup_steps": training.warmup_ratio,  # a fraction below 1 is a share of the total steps
        "weight_decay": training.weight_decay,
        "max_grad_norm": training.max_grad_norm,
        "optim": training.optim,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        **_checkpointing_values(context.batch.gradient_checkpointing),
        "seed": training.seed,
        "data_seed": training.seed,
        "logging_strategy": "steps",
        "logging_steps": plan.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": plan.save_steps,
        "save_total_limit": training.save_total_limit,
        "dataloader_num_workers": dataloader_workers(training),
        # Workers keep their state (the collator's feature cache) from one epoch to the next.
        "dataloader_persistent_workers": dataloader_workers(training) > 0,
        "dataloader_pin_memory": cuda_available(),
        # copy each batch from pinned memory without waiting for the GPU to finish the step before it
        "accelerator_config": {"non_blocking": cuda_available()},
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "prediction_loss_only": True,
        "report_to": "none",
        "disable_tqdm": True,
        "ddp_find_unused_parameters": False,
        # regional (block by block, see TranscriptionTrainer), so generation keeps running the uncompiled model
        "torch_compile": context.compile,
        "deepspeed": _deepspeed_config(config),
    }
    values.update(_evaluation_values(config, plan, has_eval))
    return values


def _checkpointing_values(enabled: bool) -> dict[str, Any]:
    """Activation (gradient) checkpointing under the argument names of the installed transformers: newer releases
    call it ``activation_checkpointing`` and warn about the old name."""
    from transformers import TrainingArguments

    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
        else "gradient_checkpointing"
    )
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def _evaluation_values(config: RunConfig, plan: StepPlan, has_eval: bool) -> dict[str, Any]:
    if not has_eval:
        return {"eval_strategy": "no", "load_best_model_at_end": False}
    metric = config.evaluation.best_model_metric
    if not config.evaluation.enabled and metric != "loss":
        metric = "loss"  # WER and CER come from generation, which is switched off
    return {
        "eval_strategy": "steps",
        "eval_steps": plan.eval_steps,
        "load_best_model_at_end": True,
        "metric_for_best_model": BEST_METRIC_KEYS[metric],
        "greater_is_better": False,
    }


def deepspeed_config_path(config: RunConfig) -> str | None:
    """The DeepSpeed config JSON ``training.deepspeed`` names, found beside the config or among the presets."""
    return _deepspeed_config(config)


def _deepspeed_config(config: RunConfig) -> str | None:
    if not config.training.deepspeed:
        return None
    from voxplug.config import PRESETS_DIR

    given = Path(config.training.deepspeed)
    candidates = [given] if given.is_absolute() else [config.base_dir / given, PRESETS_DIR / given]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise TrainingError(
        f"training.deepspeed: {given} not found (looked in {', '.join(str(c.parent) for c in candidates)}; "
        "expected a DeepSpeed config JSON such as deepspeed/zero2.json)"
    )
