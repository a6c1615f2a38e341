"""transformers' ``Trainer``, taught what a speech fine-tune needs and nothing else.

* Every evaluation also transcribes the eval split greedily and adds ``eval_wer`` / ``eval_cer`` /
  ``eval_samples`` to the metrics before they are logged, so the best checkpoint can be chosen by WER.
* Length-grouped batches (``training.group_by_length``, off by default) use clip durations (no audio is decoded
  to measure lengths) and still shuffle; either way the order comes from the seed and the epoch alone.
* Streamed training data (:mod:`voxplug.training.stream_dataset`) gets its own loader: each worker reads its own
  shard, and a resumed run continues the stream from the position its checkpoint recorded.
* Checkpoints hold weights under the model's in-memory names (``save_original_format=False``): the Trainer
  reloads them with a plain ``load_state_dict`` when resuming and when loading the best model, which silently
  loads nothing for models whose ``save_pretrained`` renames keys (Voxtral does). The ``on_checkpoint`` hook fires
  once every rank has finished writing a checkpoint.
* The best checkpoint is chosen by :func:`~voxplug.training.outputs.checkpoint_rank`: a tie on the chosen metric
  goes to the other error rate, then the loss, then the later step (the Trainer keeps the earliest of a tie).

The fast paths (label-position logits, one batch stream across epochs, ...) come from
:class:`~voxplug.training.speed.trainer.SpeedTrainerMixin`. This module imports transformers at the top: only the
training run imports it, never plugin loading.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel, PrinterCallback, Trainer
from transformers.trainer_utils import has_length

from voxplug.training.sampling import LengthGroupedShuffleSampler, ShuffleSampler
from voxplug.training.speed.trainer import SpeedTrainerMixin

if TYPE_CHECKING:
    from voxplug.evaluation.generation import GenerationEvaluator
    from voxplug.plugins import PluginHost

log = logging.getLogger("voxplug.training")


class TranscriptionTrainer(SpeedTrainerMixin, Trainer):
    """A ``Trainer`` with generation-based WER/CER, optional duration-grouped batches, streamed data and checkpoint
    hooks (``label_logits_only`` and ``epoch_stream`` switch fast paths: :class:`SpeedTrainerMixin`)."""

    def __init__(
        self,
        *args: Any,
        generation_evaluator: GenerationEvaluator | None = None,
        train_lengths: list[float] | None = None,
        host: PluginHost | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.args.n_gpu > 1:  # one process seeing several GPUs: the Trainer would wrap nn.DataParallel
            # DataParallel's replicas share the instance-level forwards voxplug installs (frozen encoder, one-node
            # LoRA, fused kernels), which would run the first GPU's weights; train on one GPU, as transformers
            # itself does for model parallelism. All GPUs: accelerate launch (docs/multi-gpu.md).
            log.warning(
                "%d GPUs are visible to one process: training on the first; for all of them, start the same "
                "command with accelerate launch (docs/multi-gpu.md)",
                self.args.n_gpu,
            )
            self.args._n_gpu = 1
        self.remove_callback(PrinterCallback)  # voxplug's ProgressDisplay shows the logs
        self.generation_evaluator = generation_evaluator
        self.train_lengths = train_lengths
        self.host = host
        self._generate_in_eval = False
        self._resume_checkpoint: str | None = None
        #: the loader of streamed training data, once built (it records how far the stream got)
        self.stream_epochs: Any = None

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._resume_checkpoint = resume_from_checkpoint if isinstance(resume_from_checkpoint, str) else None
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if self.train_lengths is not None:
            return LengthGroupedShuffleSampler(self.train_lengths, self.args.per_device_train_batch_size, seed=seed)
        if has_length(dataset):
            return ShuffleSampler(len(dataset), seed=seed)
        return super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self) -> Any:
        """Streamed training data gets its own loader (:func:`~voxplug.training.stream_dataset.stream_loader`)."""
        from voxplug.training.stream_dataset import StreamingTrainDataset, stream_loader

        if not isinstance(self.train_dataset, StreamingTrainDataset):
            return super().get_train_dataloader()
        collate = self._get_collator_with_removed_columns(self.data_collator, "Training")
        self.stream_epochs = stream_loader(self.train_dataset, self.args, collate, self._resume_checkpoint)
        return self.stream_epochs

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        """A stream's loader starts where its checkpoint stood already; other loaders skip as the Trainer's do."""
        from voxplug.training.stream_dataset import StreamEpochs

        if isinstance(dataloader, StreamEpochs):
            return dataloader
        return super().get_resumed_dataloader(dataloader, num_batches)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        self._generate_in_eval = True
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._generate_in_eval = False

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        output = super().evaluation_loop(*args, **kwargs)
        if self._generate_in_eval and self.generation_evaluator is not None:
            prefix = kwargs.get("metric_key_prefix", "eval")
            # accelerate autocasts the model's forward, not the decoder's own steps: give them the same autocast
            metrics = self.generation_evaluator.evaluate(
                self.model, step=self.state.global_step, autocast=self.accelerator.autocast
            )
            output.metrics.update({f"{prefix}_{key}": value for key, value in metrics.items()})
        return output

    def _determine_best_metric(self, metrics: dict[str, float], trial: Any) -> bool:
        """Whether this evaluation beats the best so far by :func:`~voxplug.training.outputs.checkpoint_rank`."""
        from voxplug.training.outputs import checkpoint_rank, evaluation_at

        name = self.args.metric_for_best_model
        primary = name if name is None or name.startswith("eval_") else f"eval_{name}"
        if primary is None or primary not in metrics or self.args.greater_is_better:
            return super()._determine_best_metric(metrics=metrics, trial=trial)
        state = self.state
        best = evaluation_at(state.log_history, state.best_global_step)
        rank = checkpoint_rank(metrics, primary, state.global_step)
        if best is not None and rank >= checkpoint_rank(best, primary, int(best["step"])):
            return False
        if best is None and state.best_metric is not None and not metrics[primary] < state.best_metric:
            return False  # the best evaluation left the log (it should not): fall back to the Trainer's rule
        state.best_metric = metrics[primary]
        state.best_global_step = state.global_step
        return True

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        if self.stream_epochs is not None:  # before trainer_state.json, which marks the checkpoint complete
            from voxplug.training.stream_dataset import write_position

            args = self.args
            readers = max(1, args.dataloader_num_workers)
            write_position(folder, args.process_index, args.world_size, readers, self.stream_epochs.position)
            self.accelerator.wait_for_everyone()
        with _in_memory_key_names(self.model):
            super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.host is not None and self.is_world_process_zero():
            self.host.on_checkpoint(checkpoint_dir=folder, step=self.state.global_step)


@contextmanager
def _in_memory_key_names(model: Any) -> Iterator[None]:
    """Make ``model.save_pretrained`` keep in-memory parameter names while the block runs."""
    if not isinstance(model, PreTrainedModel):  # PEFT adapters keep their names anyway
        yield
        return
    model.save_pretrained = partial(type(model).save_pretrained, model, save_original_format=False)
    try:
        yield
    finally:
        del model.save_pretrained
