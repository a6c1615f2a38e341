"""transformers' ``Trainer``, taught what a speech fine-tune needs and nothing else.

* Every evaluation also transcribes the eval split greedily and adds ``eval_wer`` / ``eval_cer`` /
  ``eval_samples`` to the metrics before they are logged, so the best checkpoint can be chosen by WER.
* Length-grouped batches use clip durations (no audio is decoded to measure lengths) and still shuffle.
* Checkpoints hold weights under the model's in-memory names (``save_original_format=False``): the
  Trainer reloads them with a plain ``load_state_dict`` when resuming and when loading the best model, which
  silently loads nothing for models whose ``save_pretrained`` renames keys (Voxtral does).
* The ``on_checkpoint`` hook fires once every rank has finished writing a checkpoint.
* Decoder-only models compute logits only where a label is (:mod:`voxplug.training.label_logits`): the same
  loss as the model's own, without the 131k-wide logits of every audio position.
* Loss forwards ask for no KV cache, and ``torch_compile`` compiles block by block (``training.compile``).

This module imports transformers at the top: only the training run imports it, never plugin loading.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel, PrinterCallback, Trainer

from voxplug.training.label_logits import forward_takes, label_logit_mask, label_logits_loss, supports_label_logits
from voxplug.training.sampling import LengthGroupedShuffleSampler

if TYPE_CHECKING:
    from voxplug.evaluation.generation import GenerationEvaluator
    from voxplug.plugins import PluginHost


class TranscriptionTrainer(Trainer):
    """A ``Trainer`` with generation-based WER/CER, duration-grouped batches and checkpoint hooks."""

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
        self.label_logits_only = (
            label_logits_only and self.compute_loss_func is None and supports_label_logits(self.model)
        )
        if self.label_logits_only:
            self.compute_loss_func = label_logits_loss
        self.forward_takes_use_cache = forward_takes(self.model, "use_cache")
        self.remove_callback(PrinterCallback)  # voxplug's TrainingProgress shows the logs
        self.generation_evaluator = generation_evaluator
        self.train_lengths = train_lengths
        self.host = host
        self._generate_in_eval = False

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

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.train_lengths is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthGroupedShuffleSampler(self.train_lengths, self.args.per_device_train_batch_size, seed=seed)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if self.label_logits_only and "labels" in inputs:
            inputs = {**inputs, "logits_to_keep": label_logit_mask(inputs["labels"])}
        if self.forward_takes_use_cache:
            # Models default to use_cache=True and fill a KV cache nobody reads; inside compiled blocks its
            # per-layer state also forces a recompile for every layer (measured: torch.compile fell back to eager).
            inputs = {**inputs, "use_cache": False}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

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
            metrics = self.generation_evaluator.evaluate(
                self.model, step=self.state.global_step, autocast=self.autocast_smart_context_manager
            )
            output.metrics.update({f"{prefix}_{key}": value for key, value in metrics.items()})
        return output

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        with _in_memory_key_names(self.model):
            super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.host is not None and self.is_world_process_zero():
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
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
