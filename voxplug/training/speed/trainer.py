"""The speed overrides of voxplug's ``Trainer`` (:class:`SpeedTrainerMixin`), kept apart from what it trains.

* Decoder-only models compute logits only where a label is (:mod:`voxplug.training.speed.label_logits`): the same
  loss as the model's own, without the 131k-wide logits of every audio position. The positions are found on the
  CPU by the data loader, so the step never waits for the GPU to learn how many there are
  (``training.speed.label_logits``).
* With data loader workers in a single process, the batches run on from one epoch into the next
  (:mod:`voxplug.training.speed.epoch_stream`), so the GPU does not wait at each epoch's start
  (``training.speed.epoch_stream``).
* Non-finite losses are kept out of the logged loss without waiting for the GPU (the Trainer's own
  ``logging_nan_inf_filter`` reads each step's loss back to the host).
* Loss forwards ask for no KV cache, ``torch_compile`` compiles block by block (``training.compile``), and the
  FLOP count and gradient clipping list the parameters once rather than every step.
* The eval-loss pass attends with PyTorch's flash and memory-efficient SDPA kernels, not cuDNN's: cuDNN plans
  every new sequence length on the host first, and an evaluation's padded lengths are mostly new to the run.

Each changes how fast a step runs, never what it computes; ``tests/training/test_fast_paths.py`` and
``tests/training/test_sampling.py`` hold each against the plain path.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from transformers.trainer_utils import seed_worker

from voxplug.training.speed.label_logits import (
    POSITIONS_KEY,
    TARGETS_KEY,
    LabelPositionsCollator,
    forward_takes,
    label_logits_loss,
    label_positions,
    supports_label_logits,
)


class SpeedTrainerMixin:
    """Put before ``transformers.Trainer`` in a trainer's bases: the fast paths listed in the module docstring.

    ``label_logits_only`` and ``epoch_stream`` switch the two paths that a run may turn off
    (``training.speed.label_logits`` / ``epoch_stream``); the rest are always exact and always on.
    """

    def __init__(self, *args: Any, label_logits_only: bool = True, epoch_stream: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        #: one batch stream across epochs where it can be (see :meth:`get_train_dataloader`)
        self.epochs_in_one_stream = epoch_stream
        self._resuming = False

    def _build_accelerator_args(self, **kwargs: Any) -> dict[str, Any]:
        """With ``torch_compile``, compile each repeated block (accelerate's regional compilation) with dynamic shapes.

        Regional compilation compiles one decoder layer and reuses it for all of them (seconds, not the minutes a
        whole-model graph takes), and it compiles a copy: the model that generates during evaluation stays
        uncompiled, so decoding with a growing KV cache does not recompile every step. Dynamic shapes: every
        batch has another padded length.
        """
        args = super()._build_accelerator_args(**kwargs)  # type: ignore[misc]
        plugin = args.get("dynamo_plugin")
        if plugin is not None and self.args.torch_compile:
            plugin.use_regional_compilation = True
            plugin.dynamic = True
        return args

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._resuming = bool(resume_from_checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)  # type: ignore[misc]

    def get_train_dataloader(self) -> Any:
        """With workers in a single process, one batch stream across epochs (:class:`EpochSlices`); otherwise
        the Trainer's loader. A resumed run takes the Trainer's, which knows how to skip the batches already
        trained (the order is the same: it comes from the seed and the epoch)."""
        from voxplug.training.sampling import EpochSampler
        from voxplug.training.speed.epoch_stream import EpochBatches, EpochSlices

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
            return super().get_train_dataloader()  # type: ignore[misc]
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
        return super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )

    def prediction_step(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's eval-loss step without cuDNN's attention (each eval batch is padded to its own length:
        :func:`~voxplug.evaluation.decoding.unplanned_attention`)."""
        from voxplug.evaluation.decoding import unplanned_attention

        with unplanned_attention():
            return super().prediction_step(*args, **kwargs)  # type: ignore[misc]

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
            return super()._clip_grad_norm(model)  # type: ignore[misc]
        if self._trainable is None or self._trainable[0] != id(model):
            self._trainable = (id(model), [p for p in model.parameters() if p.requires_grad])
        return self.accelerator.clip_grad_norm_(self._trainable[1], self.args.max_grad_norm)

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        if not self.filter_non_finite_loss:
            return loss
        import torch

        # the Trainer's filter (`logging_nan_inf_filter`): a non-finite step adds the mean of the logged steps so far
        average = self._tr_loss / (1 + self.state.global_step - self._globalstep_last_logged)
        return torch.where(torch.isfinite(loss), loss, average.to(loss.dtype))
