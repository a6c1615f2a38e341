"""transformers' ``Trainer``, taught what a speech fine-tune needs and nothing else.

* Every evaluation also transcribes the eval split greedily and adds ``eval_wer`` / ``eval_cer`` /
  ``eval_samples`` to the metrics before they are logged, so the best checkpoint can be chosen by WER.
* Length-grouped batches (``training.group_by_length``, off by default) use clip durations (no audio is decoded
  to measure lengths) and still shuffle; either way the order comes from the seed and the epoch alone.
* With data loader workers in a single process, the batches run on from one epoch into the next
  (:class:`~voxplug.training.sampling.EpochSlices`), so the GPU does not wait at each epoch's start.
* Checkpoints hold weights under the model's in-memory names (``save_original_format=False``): the
  Trainer reloads them with a plain ``load_state_dict`` when resuming and when loading the best model, which
  silently loads nothing for models whose ``save_pretrained`` renames keys (Voxtral does).
* The ``on_checkpoint`` hook fires once every rank has finished writing a checkpoint.
* The best checkpoint is chosen by :func:`~voxplug.training.outputs.checkpoint_rank`: a tie on the chosen metric
  goes to the other error rate, then the loss, then the later step (the Trainer keeps the earliest of a tie).
* Decoder-only models compute logits only where a label is (:mod:`voxplug.training.label_logits`): the same
  loss as the model's own, without the 131k-wide logits of every audio position. The positions are found on the
  CPU by the data loader, so the step never waits for the GPU to learn how many there are.
* Non-finite losses are kept out of the logged loss without waiting for the GPU (the Trainer's own
  ``logging_nan_inf_filter`` reads each step's loss back to the host).
* Streamed training data (:mod:`voxplug.training.stream_dataset`) gets its own loader: each worker reads its own
  shard, and a resumed run continues the stream from the position its checkpoint recorded.
* Loss forwards ask for no KV cache, and ``torch_compile`` compiles block by block (``training.compile``).

This module imports transformers at the top: only the training run imports it, never plugin loading.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel, PrinterCallback, Trainer
from transformers.trainer_utils import has_length, seed_worker

from voxplug.training.label_logits import (
    POSITIONS_KEY,
    TARGETS_KEY,
    LabelPositionsCollator,
    forward_takes,
    label_logits_loss,
    label_positions,
    supports_label_logits,
)
from voxplug.training.sampling import (
    EpochBatches,
    EpochSampler,
    EpochSlices,
    LengthGroupedShuffleSampler,
    ShuffleSampler,
)

if TYPE_CHECKING:
    from voxplug.evaluation.generation import GenerationEvaluator
    from voxplug.plugins import PluginHost

log = logging.getLogger("voxplug.training")


class TranscriptionTrainer(Trainer):
    """A ``Trainer`` with generation-based WER/CER, label-position logits, optional duration-grouped batches and
    checkpoint hooks."""

    def __init__(
        self,
        *args: Any,
        generation_evaluator: GenerationEvaluator | None = None,
        train_lengths: list[float] | None = None,
        host: PluginHost | None = None,
        label_logits_only: bool = True,
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
        self.label_logits_only = (
            label_logits_only and self.compute_loss_func is None and supports_label_logits(self.model)
        )
        if self.label_logits_only:
            self.compute_loss_func = label_logits_loss
            if self.data_collator is not None:
                self.data_collator = LabelPositionsCollator(self.data_collator)
        # the same filter as the Trainer's, on the device (see training_step); the user's choice stays readable on
        # the arguments, which a second trainer may share
        chosen = getattr(self.args, "_voxplug_filter_non_finite_loss", self.args.logging_nan_inf_filter)
        self.filter_non_finite_loss = self.args._voxplug_filter_non_finite_loss = chosen
        self.args.logging_nan_inf_filter = False
        self.forward_takes_use_cache = forward_takes(self.model, "use_cache")
        self._parameter_count: int | None = None
        self._trainable: tuple[int, list[Any]] | None = None
        self.remove_callback(PrinterCallback)  # voxplug's ProgressDisplay shows the logs
        self.generation_evaluator = generation_evaluator
        self.train_lengths = train_lengths
        self.host = host
        self._generate_in_eval = False
        #: one batch stream across epochs where it can be (see :meth:`get_train_dataloader`)
        self.epochs_in_one_stream = True
        self._resuming = False
        self._resume_checkpoint: str | None = None
        #: the loader of streamed training data, once built (it records how far the stream got)
        self.stream_epochs: Any = None

    def _build_accelerator_args(self, **kwargs: Any) -> dict[str, Any]:
        """With ``torch_compile``, compile each repeated block (accelerate's regional compilation) with dynamic shapes.

        Regional compilation compiles one decoder layer and reuses it for all of them (seconds, not the minutes a
        whole-model graph takes), and it compiles a copy: the model that generates during evaluation stays
        uncompiled, so decoding with a growing KV cache does not recompile every step. Dynamic shapes: every
        batch has another padded length.
        """
        args = super()._build_accelerator_args(**kwargs)
        plugin = args.get("dynamo_plugin")
        if plugin is not None and self.args.torch_compile:
            plugin.use_regional_compilation = True
            plugin.dynamic = True
        return args

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._resuming = bool(resume_from_checkpoint)
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
        """With workers in a single process, one batch stream across epochs (:class:`EpochSlices`); otherwise
        the Trainer's loader. A resumed run takes the Trainer's, which knows how to skip the batches already
        trained (the order is the same: it comes from the seed and the epoch)."""
        from voxplug.training.stream_dataset import StreamingTrainDataset

        if isinstance(self.train_dataset, StreamingTrainDataset):
            return self._stream_dataloader(self.train_dataset)
        args = self.args
        streams = (
            self.epochs_in_one_stream
            and not self._resuming
            and args.dataloader_num_workers > 0
            and args.world_size == 1
            and self.train_dataset is not None
        )
        sampler = self._get_train_sampler() if streams else None
        if not isinstance(sampler, EpochSampler):
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        # as Trainer._get_dataloader builds it (map-style datasets only: the sampler has a length)
        batches = EpochBatches(sampler, self._train_batch_size, drop_last=args.dataloader_drop_last)
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=batches,
            collate_fn=self._get_collator_with_removed_columns(self.data_collator, description="Training"),
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            prefetch_factor=args.dataloader_prefetch_factor,
            in_order=args.dataloader_in_order,
            worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        )
        return EpochSlices(self.accelerator.prepare(loader), batches)

    def _stream_dataloader(self, dataset: Any) -> Any:
        """The loader of streamed training data (:mod:`voxplug.training.stream_dataset`): each worker reads its own
        shard, each batch comes whole from one worker, and a resumed run starts where its checkpoint's stream stood.

        The loader is not handed to accelerate, which would split an iterable dataset across the ranks again.
        """
        from torch.utils.data import DataLoader

        from voxplug.training.stream_dataset import (
            StreamCollator,
            StreamEpochs,
            StreamPosition,
            forget_drops,
            read_position,
        )

        args = self.args
        readers = max(1, args.dataloader_num_workers)
        if self._resume_checkpoint is not None:
            start = read_position(Path(self._resume_checkpoint), args.process_index, args.world_size, readers)
        else:
            start = StreamPosition()
            if dataset.drops_dir is not None:
                forget_drops(dataset.drops_dir, args.process_index)
        dataset.place(rank=args.process_index, world_size=args.world_size, readers=readers, start=start)
        workers = args.dataloader_num_workers
        loader = DataLoader(
            dataset,
            batch_size=None,
            collate_fn=StreamCollator(self._get_collator_with_removed_columns(self.data_collator, "Training")),
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=workers > 0 and args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context if workers > 0 else None,
            prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
            in_order=True,  # batch k comes from worker k mod workers: what a resumed run's order relies on
        )
        self.stream_epochs = StreamEpochs(loader, dataset.batches_per_epoch, start)
        return self.stream_epochs

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        """A stream's loader starts where its checkpoint stood already; other loaders skip as the Trainer's do."""
        from voxplug.training.stream_dataset import StreamEpochs

        if isinstance(dataloader, StreamEpochs):
            return dataloader
        return super().get_resumed_dataloader(dataloader, num_batches)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if self.label_logits_only and "labels" in inputs:
            if TARGETS_KEY in inputs:
                positions, targets = inputs[POSITIONS_KEY], inputs[TARGETS_KEY]
            else:  # a batch from elsewhere than the data loader: sizing the positions waits for the device
                positions, targets = (t.to(inputs["labels"].device) for t in label_positions(inputs["labels"]))
            rest = {key: value for key, value in inputs.items() if key != TARGETS_KEY}
            inputs = {**rest, POSITIONS_KEY: positions, "labels": targets}
        if self.forward_takes_use_cache:
            # Models default to use_cache=True and fill a KV cache nobody reads; inside compiled blocks its
            # per-layer state also forces a recompile for every layer, until torch.compile gives up and runs eagerly.
            inputs = {**inputs, "use_cache": False}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate (6 x input tokens x non-embedding parameters), the parameters counted once.

        Counting walks every module, too slow to repeat each step on the host of a host-bound run: it is done once.
        """
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        if self._parameter_count is None:
            self._parameter_count = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._parameter_count

    def _clip_grad_norm(self, model: Any) -> Any:
        """The Trainer's clipping over the parameters that train, listed once (not every parameter, every step)."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled or self._has_mixed_mesh_grads(model):
            return super()._clip_grad_norm(model)
        if self._trainable is None or self._trainable[0] != id(model):
            self._trainable = (id(model), [p for p in model.parameters() if p.requires_grad])
        return self.accelerator.clip_grad_norm_(self._trainable[1], self.args.max_grad_norm)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not self.filter_non_finite_loss:
            return loss
        import torch

        # the Trainer's filter (`logging_nan_inf_filter`): a non-finite step adds the mean of the logged steps so far
        average = self._tr_loss / (1 + self.state.global_step - self._globalstep_last_logged)
        return torch.where(torch.isfinite(loss), loss, average.to(loss.dtype))

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
