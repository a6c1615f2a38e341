"""One fine-tuning run: data, model, trainer, evaluation, outputs and publishing, in that order.

:func:`train` is what ``voxplug train`` calls, in one process or in each process that ``accelerate launch``
starts. Every rank loads the data and the model and trains; only the main process fires hooks, writes the run
folder's files and publishes. The loop itself is transformers' ``Trainer`` (with accelerate underneath for
DDP and DeepSpeed); this module only wires voxplug's pieces into it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voxplug.data.languages import resolve_run_languages
from voxplug.errors import DataError, ModelError, TrainingError, VoxplugError
from voxplug.tempfiles import pending_interrupt, run_temp_dir
from voxplug.training.outputs import CHECKPOINTS_DIR, last_checkpoint
from voxplug.training.processes import finish_processes, is_main_process, launched_world_size

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.data.loading import TrainingData
    from voxplug.models.interface import ModelFamily
    from voxplug.plugins import PluginHost
    from voxplug.publishing.interface import PublishResult
    from voxplug.training.context import MemoryInputs, TrainingContext
    from voxplug.training.interface import TrainingMethod

log = logging.getLogger("voxplug.training")

ProgressMode = Literal["auto", "lines", "off"]
"""How a run reports progress: ``auto`` (a bar in a terminal, log lines elsewhere), ``lines`` (log lines
always) or ``off`` (nothing on the console; ``train.log`` still gets everything)."""


@dataclass
class RunResult:
    """What a finished run produced (on non-main ranks only ``run_dir`` and the metrics are meaningful)."""

    run_dir: Path
    model_dir: Path
    train_results: dict[str, Any]
    eval_results: dict[str, Any]
    saved: dict[str, Path] = field(default_factory=dict)
    published: PublishResult | None = None


def train(
    config: RunConfig,
    *,
    host: PluginHost | None = None,
    options: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: bool | ProgressMode = True,
    callbacks: list[Any] | None = None,
) -> RunResult:
    """Fine-tune the model ``config`` describes and return where everything went.

    ``options`` are the plugin options :func:`voxplug.config.check_config` already validated (the CLI passes them);
    without them they are validated here, once.
    With ``resume``, training continues from the newest complete checkpoint in the run folder (and starts
    afresh when there is none). ``progress`` is a :data:`ProgressMode` (``True`` means ``auto``, ``False``
    ``off``). Raises :class:`VoxplugError` subclasses with one-line, actionable messages; an interruption
    (Ctrl+C, SIGTERM) raises ``KeyboardInterrupt`` whose message says at which step it stopped, which checkpoint
    is kept and how to continue.
    """
    from voxplug.plugins import get_plugin_host

    mode: ProgressMode = {True: "auto", False: "off"}.get(progress, progress)  # type: ignore[arg-type]
    run = TrainingRun(
        config, host or get_plugin_host(), options=options, resume=resume, progress=mode, callbacks=callbacks
    )
    return run.execute()


class TrainingRun:
    """The state of one run while it executes; see :func:`train`."""

    def __init__(
        self,
        config: RunConfig,
        host: PluginHost,
        *,
        resume: bool,
        progress: ProgressMode,
        callbacks: list[Any] | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``options``: the plugin options already validated (None: they are validated here, once)."""
        from voxplug.config import resolve_plugin_options
        from voxplug.training.context import check_run_options
        from voxplug.training.monitoring import ResourceMonitor
        from voxplug.training.speed import SpeedReport

        self.config = config
        self.host = host
        self.options = resolve_plugin_options(config, host) if options is None else options
        check_run_options(config)
        if config.model.hub_kernels:  # before anything imports bitsandbytes (peft does)
            from voxplug.models.quantization import allow_bitsandbytes_hub_kernels

            allow_bitsandbytes_hub_kernels()
        #: what the run decided (:func:`voxplug.training.context.decide`), once the data is loaded
        self.context: TrainingContext | None = None
        self.run_dir = config.run_dir
        self.checkpoints_dir = self.run_dir / CHECKPOINTS_DIR
        self.resume_from = self._checkpoint_to_resume(resume)
        self.progress = progress
        self.extra_callbacks = list(callbacks or [])
        self.is_main = is_main_process()
        self.monitor = ResourceMonitor(host, self.run_dir, show=progress != "off")
        self.hf_trainer: Any = None
        self.progress_display: Any = None
        #: what the fast paths did (:func:`voxplug.training.speed.apply_speed`)
        self.speed = SpeedReport()

    def _checkpoint_to_resume(self, resume: bool) -> Path | None:
        found = last_checkpoint(self.checkpoints_dir)
        if resume:
            if found is None:
                log.warning("no complete checkpoint in %s; starting from step 0", self.checkpoints_dir)
            return found
        if found is not None:
            raise TrainingError(
                f"{self.run_dir} already holds checkpoints of an earlier run (newest: {found.name}); "
                "add --resume to continue it, or choose another run name (name=...) or training.output_dir"
            )
        return None

    def execute(self) -> RunResult:
        """Run every stage; on failure fire ``on_train_error`` and raise an error that says how to resume."""
        from voxplug.training.callbacks import RunLog

        with RunLog(self.run_dir / "train.log") if self.is_main else nullcontext(), run_temp_dir(self.run_dir):
            try:
                return self._stages()
            except BaseException as exc:
                interrupt = None if isinstance(exc, KeyboardInterrupt) else pending_interrupt()
                if interrupt is not None:  # a signal swallowed in a C callback surfaced as this error
                    interrupt.__cause__ = exc
                error = interrupt or exc
                self._close_progress()  # before anything is said: a live bar would draw over it, cursor hidden
                if self.is_main:
                    self.host.on_train_error(config=self.config, run_dir=self.run_dir, error=error)
                explained = self._explained(error)
                if explained is exc:
                    raise
                raise explained from exc
            finally:
                self._close_progress()

    def _close_progress(self) -> None:
        if self.progress_display is not None:
            self.progress_display.close()

    def _say(self, *lines: str) -> None:
        """Tell the user (stderr, unless progress is off) and ``train.log``; main process only."""
        if not self.is_main:
            return
        for line in lines:
            log.info(line)
            if self.progress != "off":
                print(line, file=sys.stderr, flush=True)

    def _stages(self) -> RunResult:
        from transformers import set_seed

        from voxplug.training.interface import prepare_for_training
        from voxplug.training.speed import apply_speed

        data = self.monitor.timed("data_loading", self._load_data)
        context, args = self._decide(data)
        set_seed(self.config.training.seed)  # adapters and new heads are initialised from the seed, as are shuffles
        family, model, processor = self.monitor.timed("model_loading", self._load_model, self._load_device(args))
        method = self._training_method()
        model = prepare_for_training(method, model, family, context, self.config)
        self.speed = apply_speed(model, family, context, method=method, fused_kernels=self.speed.fused_kernels)
        log.info("%s", self.speed.line())
        hf_trainer = self._hf_trainer(args, data, family, model, processor)
        if self.is_main:
            self.host.before_train(config=self.config, run_dir=self.run_dir)
        train_output = self.monitor.timed("training", self._train, hf_trainer)
        self._report_streamed_rows(hf_trainer, data)
        eval_results = self.monitor.timed("evaluation", self._final_evaluation, hf_trainer, bool(data.eval))
        saved = self.monitor.timed("saving", self._save_model, hf_trainer, method, family, processor, data)
        train_results = self._train_results(hf_trainer, train_output)
        result = RunResult(self.run_dir, self.run_dir / "model", train_results, eval_results, saved)
        finish_processes()  # the ranks' shared work is done: the other ranks leave now, with the group closed
        if self.is_main:
            self._write_run_files(hf_trainer, train_results, eval_results)
            self.host.after_train(config=self.config, run_dir=self.run_dir, results=train_results)
            result.published = self.monitor.timed("publishing", self._publish)
        return result

    def _decide(self, data: TrainingData) -> tuple[TrainingContext, Any]:
        """Decide the run's facts (:func:`~voxplug.training.context.decide`); build the Trainer's arguments from them.

        The processes are counted as the launcher says (``WORLD_SIZE``). A launcher that sets none (mpirun) is found
        out by the arguments' distributed state: the run then decides with the real count, before anything has used
        the first answer. Which process is the main one is the distributed state's word too.
        """
        from dataclasses import replace

        from voxplug.training.arguments import build_training_arguments
        from voxplug.training.context import decide

        eval_rows = len(data.eval) if data.eval and self.config.evaluation.enabled else 0  # rows transcribed

        def decided(world_size: int, memory: MemoryInputs | None) -> tuple[TrainingContext, Any]:
            context = decide(
                self.config,
                self.options,
                train_rows=data.train_rows,
                world_size=world_size,
                eval_rows=eval_rows,
                memory=memory,
                adapter=self._method_class().saves_adapter,
            )
            args = build_training_arguments(
                self.config, context, has_eval=bool(data.eval), output_dir=self.checkpoints_dir
            )
            return context, args

        context, args = decided(launched_world_size(), None)
        if args.world_size != context.world_size:  # launched by something that sets no WORLD_SIZE (mpirun)
            context, args = decided(args.world_size, None)
        # read once the arguments have started the processes' group (and chosen this rank's GPU): every rank then
        # decides the batch from the same reading
        memory = self._memory_inputs(data)
        if memory is not None:
            context, args = decided(args.world_size, memory)
        context = replace(context, is_main=args.process_index == 0)
        if data.stream is not None:  # an iterable dataset has no length the Trainer could count epochs by
            args.max_steps = context.plan.total_steps
        self.context, self.is_main = context, context.is_main
        if context.batch.chosen_by != "config":
            self._say(f"batch: {context.batch.line()}")
        return context, args

    def _memory_inputs(self, data: TrainingData) -> MemoryInputs | None:
        """What the memory estimate reads (:class:`~voxplug.training.context.MemoryInputs`), where it is used:
        ``auto`` batch size or checkpointing, or the fit check, with memory to measure against. The model's shape
        comes from its config, so a run that cannot fit stops before the weights load."""
        from voxplug.training.context import MemoryInputs
        from voxplug.training.memory import row_size

        training = self.config.training
        auto = training.batch_size == "auto" or training.gradient_checkpointing == "auto"
        if not (auto or training.fit_check):
            return None
        available = self._available_memory()
        if available is None:
            return None
        family, method = self._family(), self._training_method()
        shape = family.model_shape(self.config.model.name_or_path)
        trained = method.trained_weights(shape.model, family) if shape is not None else None
        if trained is None:
            log.info("memory estimate: not available for this model family or training method; nothing is checked")
        row = row_size(
            (example.duration_s for example in data.train),
            (example.text for example in data.train),
            max_duration_s=self.config.data.max_duration_s,
            chunk_s=shape.chunk_s if shape is not None else 30.0,
        )
        return MemoryInputs(shape, trained, row, adapter=method.saves_adapter, available_bytes=available)

    def _available_memory(self) -> int | None:
        """Bytes each process may use on its device: ``training.device_memory_gb``, else the GPU's free memory (the
        smallest over the processes, so that every rank decides alike), else None."""
        from voxplug.training.devices import cuda_available
        from voxplug.training.memory import free_device_memory, shared_minimum

        limit = self.config.training.device_memory_gb
        if limit is not None:
            return int(limit * 2**30)
        if not cuda_available():
            return None
        free = free_device_memory()
        return None if free is None else shared_minimum(free)

    @property
    def cuda_graphs(self) -> Any:
        """The layer graphs of this run (``self.speed.cuda_graphs``), or None."""
        return self.speed.cuda_graphs

    @property
    def encoder_cache(self) -> Any:
        """The frozen encoder's output cache of this run (``self.speed.encoder_cache``), or None."""
        return self.speed.encoder_cache

    def _context(self) -> TrainingContext:
        assert self.context is not None, "the run decides its facts once its data is loaded"
        return self.context

    # -- data and model -----------------------------------------------------------------------------------

    def _load_data(self) -> TrainingData:
        """Load and check the rows; say how many were kept and which were dropped why, and stop when too many were."""
        from voxplug.data.loading import load_training_data, write_data_summary
        from voxplug.data.scrub import write_scrub_report
        from voxplug.training.outputs import DroppedRows, write_data_split

        data = load_training_data(self.config, self.host, options=self.options, allow_stream=True)
        self._check_languages(data)
        dropped = DroppedRows(kept=len(data.train) + len(data.eval), problems=data.problems)
        dropped_file = None
        if self.is_main:
            write_scrub_report(self.run_dir, data.scrub_report)
            write_data_summary(self.run_dir, data.summary)
            dropped_file = dropped.write(self.run_dir)
            write_data_split(self.run_dir, data.train, data.eval)
            self._say(*dropped.lines(dropped_file))
            if data.stream is not None:
                known = data.stream.estimated_rows
                self._say(
                    f"data: training rows stream ({'unknown' if known is None else known} before checks; dropped "
                    f"rows are counted as they pass), {len(data.eval)} to evaluate on"
                )
            else:
                self._say(
                    f"data: {len(data.train)} rows to train on, {len(data.eval)} to evaluate on "
                    f"({data.summary.get('eval_source', 'held out')})"
                )
        limit = self.config.data.max_dropped_share
        if data.stream is None and dropped.share > limit:  # a stream's drops are counted as its rows pass
            where = f"all of them in {dropped_file}" if dropped_file else "listed above"
            raise DataError(
                f"{len(dropped.problems)} of {dropped.total} rows ({dropped.share:.0%}) cannot be used, more than "
                f"data.max_dropped_share={limit:g} ({where}): fix or remove them, or run the same command with "
                f"--allow-dropped (or a higher data.max_dropped_share) to train on the {dropped.kept} usable rows"
            )
        if self.is_main:
            self.host.after_data_load(config=self.config, summary=data.summary)
        return data

    def _check_languages(self, data: TrainingData) -> None:
        """Map every row's language to the model family's codes, and refuse tasks it cannot train, before the
        model loads: a code the model cannot take stops the run here, naming the row and the accepted codes."""
        support = self._family().language_support(self.config.model.name_or_path)
        resolve_run_languages([*data.train, *data.eval], support, default_language=self.config.data.language)
        if data.stream is not None:  # streamed rows are mapped as they pass, and dropped when they cannot be
            data.stream.gate.languages = support

    def _family(self) -> ModelFamily:
        from voxplug.models.detect import resolve_family

        return resolve_family(self.config, self.host, self.options)

    def _load_device(self, args: Any) -> str:
        """Where weights load: straight onto this rank's device, or CPU when DeepSpeed places them."""
        return "cpu" if self._context().deepspeed else str(args.device)

    def _load_model(self, device: str) -> tuple[ModelFamily, Any, Any]:
        from voxplug.training.speed import fuse_kernels

        context = self._context()
        family = self._family()
        dtype = load_dtype(
            self.config.model.dtype,
            context.precision,
            adapter=self._method_class().saves_adapter,
            master_weights=context.master_weights,
        )
        name = self.config.model.name_or_path
        try:
            model, processor = family.load(
                name,
                dtype=dtype,
                attn_implementation=self.config.model.attn_implementation,
                device=device,
                hub_kernels=self.config.model.hub_kernels,
                **self._quantization(family),
            )
        except VoxplugError:
            raise
        except (OSError, ValueError) as exc:
            raise ModelError(f"model.name_or_path={name!r}: cannot load it as a {family.name} model: {exc}") from exc
        self.speed.fused_kernels = fuse_kernels(family, model, context)
        return family, model, processor

    def _quantization(self, family: ModelFamily) -> dict[str, str]:
        """``{"quantization": ...}`` for ``family.load`` where ``model.quantization`` is set (``{}`` otherwise, so a
        family without the argument loads as before); a family that does not offer it is a ModelError."""
        quantization = self._context().quantization
        if quantization is None:
            return {}
        if quantization not in family.quantizations:
            offered = ", ".join(family.quantizations) or "none"
            raise ModelError(
                f"model.quantization={quantization}: the {family.name} family does not load 4-bit bases "
                f"(it offers: {offered}); remove model.quantization"
            )
        log.info("model: the frozen base loads in 4 bits (%s, model.quantization)", quantization)
        return {"quantization": quantization}

    def _method_class(self) -> type[TrainingMethod]:
        return self.host.extension("training method", self.config.training.method)

    def _training_method(self) -> TrainingMethod:
        method = self.config.training.method
        return self._method_class()(self.options.get(f"training.{method}"))

    def _collator(self, family: ModelFamily, processor: Any) -> Any:
        name = self.config.model.collator or family.default_collator
        collator_class = self.host.extension("collator", name)
        options = self.options.get(f"model.{name}")
        return collator_class(options, processor=processor, model_id=self.config.model.name_or_path)

    # -- the loop -----------------------------------------------------------------------------------------

    def _hf_trainer(self, args: Any, data: TrainingData, family: ModelFamily, model: Any, processor: Any) -> Any:
        from voxplug.evaluation.generation import GenerationEvaluator, GenerationSettings
        from voxplug.training.callbacks import PluginHookCallback, ProgressDisplay
        from voxplug.training.dataset import ExampleDataset
        from voxplug.training.transcription_trainer import TranscriptionTrainer

        data_config, evaluation = self.config.data, self.config.evaluation
        train_set = ExampleDataset(
            data.train, max_duration_s=data_config.max_duration_s, default_language=data_config.language
        )
        plan = self._context().plan
        if data.stream is not None:
            train_set = self._stream_dataset(data, train_set)
        eval_set = (
            ExampleDataset(data.eval, max_duration_s=data_config.max_duration_s, default_language=data_config.language)
            if data.eval
            else None
        )
        evaluator = None
        if data.eval and evaluation.enabled:
            settings = GenerationSettings(
                evaluation.max_new_tokens,
                evaluation.batch_size,
                data_config.max_duration_s,
                data_config.language,
                evaluation.cuda_graphs,
            )
            examples = data.eval[: evaluation.max_samples] if evaluation.max_samples else data.eval
            evaluator = GenerationEvaluator(
                family, processor, examples, settings, predictions_dir=self.run_dir / "eval_predictions", host=self.host
            )
        log.info(
            "plan: %d steps (%d per epoch), log every %d, evaluate and save every %d%s; %s",
            plan.total_steps,
            plan.steps_per_epoch,
            plan.logging_steps,
            plan.eval_steps,
            plan.eval_note,
            self._context().batch.line(),
        )
        self.progress_display = ProgressDisplay(mode=self.progress)
        self.hf_trainer = TranscriptionTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=self._collator(family, processor),
            callbacks=[
                self.monitor,  # first: it adds its readings to the logs the other callbacks show and forward
                PluginHookCallback(self.host, self.run_dir),
                self.progress_display,
                *self.extra_callbacks,
            ],
            generation_evaluator=evaluator,
            train_lengths=train_set.durations() if self.config.training.group_by_length and not data.stream else None,
            host=self.host,
            label_logits_only=self._context().speed.label_logits,
            epoch_stream=self._context().speed.epoch_stream,
            optimizer_cls_and_kwargs=self._master_weights_optimizer(args, model),
        )
        return self.hf_trainer

    def _master_weights_optimizer(self, args: Any, model: Any) -> tuple[type, dict[str, Any]] | None:
        """With fp32 masters in the optimizer: the Trainer's own optimizer (``training.optim``), wrapped in
        :class:`~voxplug.training.master_weights.MasterWeights`; else None (the Trainer builds its optimizer)."""
        if not self._context().master_weights:
            return None
        from transformers import Trainer

        from voxplug.training.master_weights import MasterWeights, embeddings_in_32_bits

        inner, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        log.info("master weights: the model trains in bf16; %s steps fp32 masters of its weights", inner.__name__)
        full_state = embeddings_in_32_bits(model, inner, kwargs)
        one_pass = self._context().speed.masters_one_pass
        return MasterWeights, {"inner": inner, "inner_kwargs": kwargs, "full_state": full_state, "fused": one_pass}

    def _stream_dataset(self, data: TrainingData, decoder: Any) -> Any:
        """The training set of a stream: batches read and decoded by each rank's data-loader workers."""
        from voxplug.training.stream_dataset import StreamingTrainDataset, stream_folder

        training, batch = self.config.training, self._context().batch
        assert data.stream is not None
        return StreamingTrainDataset(
            data.stream,
            decoder,
            batch_size=batch.micro_batch,
            by_duration=training.group_by_length,
            batches_per_epoch=self._context().plan.steps_per_epoch * batch.grad_accum,
            drops_dir=stream_folder(self.run_dir),
        )

    def _report_streamed_rows(self, hf_trainer: Any, data: TrainingData) -> None:
        """After streamed training: add the rows the readers dropped to ``data_summary.json`` and the log."""
        if data.stream is None or not self.is_main:
            return
        from voxplug.data.loading import write_data_summary
        from voxplug.training.stream_dataset import stream_folder, streamed_summary

        position = hf_trainer.stream_epochs.position if hf_trainer.stream_epochs is not None else None
        data.summary = streamed_summary(self.run_dir, data.summary, position)
        path = write_data_summary(self.run_dir, data.summary)
        counts = ", ".join(f"{code} {count}" for code, count in data.summary["rejected_counts"].items()) or "none"
        log.info(
            "data: the stream dropped %d training rows as they passed (%s); every dropped row, with its reason, "
            "is in %s (and %s)",
            data.summary["stream_dropped_rows"],
            counts,
            path,
            stream_folder(self.run_dir),
        )

    def _train(self, hf_trainer: Any) -> Any:
        import torch

        checkpoint = str(self.resume_from) if self.resume_from else None
        if self.resume_from is not None:
            check_master_weights_of(self.resume_from, self._context().master_weights)
        try:
            return hf_trainer.train(resume_from_checkpoint=checkpoint)
        except torch.OutOfMemoryError as exc:
            batch = self._context().batch
            compiled = (
                " or training.compile=false (compiled LoRA keeps more activations)" if self._context().compile else ""
            )
            smaller = (
                "lower training.batch_size (raise training.grad_accum to keep the same global batch; in a full "
                "fine-tune the accumulated gradients, as large as the weights, stay in memory, so this saves less)"
            )
            advice = (
                smaller if batch.gradient_checkpointing else f"set training.gradient_checkpointing=true or {smaller}"
            )
            raise TrainingError(
                f"out of memory at step {hf_trainer.state.global_step} with training.batch_size="
                f"{batch.micro_batch}: {advice}{compiled}"
            ) from exc

    def _final_evaluation(self, hf_trainer: Any, has_eval: bool) -> dict[str, Any]:
        """Metrics of the model being saved, labelled with the step it comes from and why it was kept.

        The kept model is the best checkpoint (see :func:`~voxplug.training.outputs.checkpoint_rank`) or, without
        evaluations, the final weights. Its evaluation from the loop is reused (metrics and predictions), so an
        earlier checkpoint's numbers are never logged again as the final step's; only a model that was never
        evaluated is evaluated now.
        """
        from voxplug.training.outputs import evaluation_at, kept_checkpoint_reason

        if not has_eval:
            return {}
        state = hf_trainer.state
        kept_step = state.best_global_step if hf_trainer.args.load_best_model_at_end else None
        kept_step = kept_step or state.global_step
        entry = evaluation_at(state.log_history, kept_step)
        if entry is not None:
            metrics = {key: value for key, value in entry.items() if key.startswith("eval_")}
        else:
            metrics = hf_trainer.evaluate()
        self._write_predictions(hf_trainer.generation_evaluator, kept_step)
        metric = hf_trainer.args.metric_for_best_model or "eval_loss"
        return {
            **metrics,
            "step": kept_step,
            "final_step": state.global_step,
            "checkpoint": f"checkpoint-{kept_step}" if kept_step != state.global_step else "final",
            "kept_because": kept_checkpoint_reason(state.log_history, kept_step, state.global_step, metric),
        }

    def _write_predictions(self, evaluator: Any, step: int) -> None:
        """``predictions.jsonl``: the kept model's transcripts, from its evaluation in the loop when there was one."""
        if evaluator is None or not self.is_main:
            return
        import shutil

        target = self.run_dir / "predictions.jsonl"
        at_step = evaluator.predictions_dir / f"step-{step:06d}.jsonl"
        if at_step.is_file():
            shutil.copyfile(at_step, target)
        elif evaluator.last is not None and evaluator.last[0] == step:
            from voxplug.evaluation.scoring import write_predictions

            write_predictions(target, evaluator.last[1].rows)

    # -- outputs ------------------------------------------------------------------------------------------

    def _save_model(
        self, hf_trainer: Any, method: TrainingMethod, family: ModelFamily, processor: Any, data: TrainingData
    ) -> dict[str, Path]:
        from voxplug.training.outputs import MODEL_INFO_FILE, model_info, write_json

        model_dir = self.run_dir / "model"
        saved: dict[str, Path] = {}
        with gathered_parameters(hf_trainer.model), exact_weights(hf_trainer) if self.is_main else nullcontext():
            if self.is_main:
                saved = method.save_model(hf_trainer.model, processor, model_dir)
        hf_trainer.accelerator.wait_for_everyone()
        if self.is_main:
            info = model_info(
                family=family.name,
                base_model=self.config.model.name_or_path,
                method=self.config.training.method,
                kind="adapter" if method.saves_adapter else "full",
                languages=sorted({e.language for e in data.train or data.eval if e.language}),
                datasets=data.datasets,
                dataset_licenses=data.dataset_licenses,
            )
            for folder in {model_dir, *saved.values()}:
                write_json(folder / MODEL_INFO_FILE, info)
        return saved

    def _train_results(self, hf_trainer: Any, train_output: Any) -> dict[str, Any]:
        from voxplug.training.freezing import count_parameters
        from voxplug.training.outputs import logged_losses

        state, context = hf_trainer.state, self._context()
        plan = context.plan
        return {
            **train_output.metrics,
            **logged_losses(state.log_history),
            "global_step": state.global_step,
            "planned_steps": plan.total_steps,
            "steps_per_epoch": plan.steps_per_epoch,
            "world_size": hf_trainer.args.world_size,
            "distributed_type": hf_trainer.accelerator.distributed_type.value,
            "precision": context.precision,
            "master_weights": "optimizer" if context.master_weights else "model",
            "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
            "best_metric": state.best_metric,
            "resumed_from": self.resume_from.name if self.resume_from else None,
            "parameters": count_parameters(hf_trainer.model),
            **self.speed.results(),
            **self.monitor.results(),
        }

    def _write_run_files(self, hf_trainer: Any, train_results: dict[str, Any], eval_results: dict[str, Any]) -> None:
        from voxplug.training.outputs import plot_curves, write_json

        write_json(self.run_dir / "train_results.json", train_results)
        write_json(self.run_dir / "eval_results.json", eval_results)
        write_json(self.run_dir / "training_config.json", self._resolved_config())
        hf_trainer.state.save_to_json(str(self.run_dir / "trainer_state.json"))
        plot_curves(hf_trainer.state.log_history, self.run_dir / "curves.png", kept_step=eval_results.get("step"))

    def _resolved_config(self) -> dict[str, Any]:
        return {
            **self.config.public_dict(),
            "resolved_options": {key: value.model_dump(mode="json") for key, value in self.options.items()},
            "resolved_precision": self._context().precision,
            "decided": self._context().record(),
        }

    def _publish(self) -> PublishResult | None:
        target = self.config.publish.target
        if target is None:
            return None
        if target not in self.host.extensions("publisher"):
            log.warning("publisher %r is not installed; the run is not published", target)
            return None
        from voxplug.publishing.publish import publish_model

        try:
            return publish_model(
                self.run_dir,
                target=target,
                destination=self.config.publish.repo_id,
                options=self.options.get(f"publish.{target}"),
                host=self.host,
            )
        except VoxplugError as exc:
            raise type(exc)(
                f"training finished (model in {self.run_dir / 'model'}) but publishing failed: {exc}"
            ) from exc

    # -- errors -------------------------------------------------------------------------------------------

    def _explained(self, exc: BaseException) -> BaseException:
        """Add where the last checkpoint is and how to resume to a training failure or an interruption."""
        if isinstance(exc, KeyboardInterrupt):
            return KeyboardInterrupt(self._interruption_message(str(exc)))
        if not isinstance(exc, Exception):
            return exc
        checkpoint = last_checkpoint(self.checkpoints_dir)
        if checkpoint is None:
            return (
                exc if isinstance(exc, VoxplugError) else TrainingError(f"training failed: {type(exc).__name__}: {exc}")
            )
        message = str(exc) if isinstance(exc, VoxplugError) else f"training failed: {type(exc).__name__}: {exc}"
        hint = f"; the last checkpoint is kept ({checkpoint}): run the same command with --resume to continue"
        return (type(exc) if isinstance(exc, VoxplugError) else TrainingError)(message + hint)

    def _interruption_message(self, cause: str = "") -> str:
        """``interrupted by SIGTERM at step 12 of 40; checkpoint-10 is kept: ...`` (what was kept, what to run next).

        ``cause`` is the interrupt's own message; a signal other than Ctrl-C's SIGINT that it names
        (``interrupted by SIGTERM``) is kept, so a run stopped by its scheduler does not read like one stopped by hand.
        """
        state = self.hf_trainer.state if self.hf_trainer is not None else None
        checkpoint = last_checkpoint(self.checkpoints_dir)
        signal_name = cause.removeprefix("interrupted by ") if cause.startswith("interrupted by SIG") else "SIGINT"
        by = "" if signal_name == "SIGINT" else f" by {signal_name}"
        if state is None or not state.max_steps:
            where = f"interrupted{by} before training started"
        else:
            where = f"interrupted{by} at step {state.global_step} of {state.max_steps}"
        if checkpoint is not None:
            return (
                f"{where}; {checkpoint.name} is kept ({checkpoint}): "
                "run the same command with --resume to continue from it"
            )
        if state is not None and state.max_steps:
            return f"{where}, before the first checkpoint (every {state.save_steps} steps): nothing to resume from"
        return f"{where}: nothing was saved"


def load_dtype(requested: str, precision: str, *, adapter: bool, master_weights: bool = False) -> str:
    """The dtype to load weights in: half precision for frozen bases under adapters and for weights whose fp32
    masters the optimizer keeps, else fp32."""
    if requested != "auto":
        return requested
    half = adapter or master_weights
    return precision if half and precision in ("bf16", "fp16") else "fp32"


def check_master_weights_of(checkpoint: Path, master_weights: bool) -> None:
    """Refuse to resume from ``checkpoint`` with the other ``training.master_weights`` than it was trained with (its
    optimizer state holds fp32 masters, or not), before the Trainer fails on it deep inside torch."""
    import torch

    state_file = checkpoint / "optimizer.pt"
    if not state_file.is_file():
        return
    try:
        saved = torch.load(state_file, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # a state only its optimizer can read (the Trainer loads it then): nothing to compare
        return
    had = isinstance(saved, dict) and "masters" in saved
    if had != master_weights:
        trained, asked = ("optimizer", "model") if had else ("model", "optimizer")
        raise TrainingError(
            f"{checkpoint.name} was trained with training.master_weights={trained}, and this run asks for {asked}: "
            f"resume with training.master_weights={trained}"
        )


def exact_weights(hf_trainer: Any) -> Any:
    """Where the optimizer keeps the fp32 masters (``training.master_weights: optimizer``), put them in the model
    while it is saved; otherwise do nothing.

    The masters must be those of the weights the model holds: where the Trainer has loaded the best checkpoint at
    the end, they are read from that checkpoint's optimizer state. Where they still differ (a checkpoint without
    its optimizer state), the model's own weights are saved, and a warning says so.
    """
    from voxplug.training.master_weights import MasterWeights

    optimizer = hf_trainer.optimizer
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the Trainer's optimizer
    if not isinstance(inner, MasterWeights):
        return nullcontext()
    if inner.hold_the_model():
        return inner.weights_from_masters()
    best = hf_trainer.state.best_model_checkpoint
    if best and (Path(best) / "optimizer.pt").is_file():
        inner.load_masters(Path(best) / "optimizer.pt")
        if inner.hold_the_model():
            return inner.weights_from_masters()
    log.warning("the fp32 masters are not those of the model's weights: the model is saved as it is, in bf16")
    return nullcontext()


def gathered_parameters(model: Any) -> Any:
    """Under DeepSpeed ZeRO-3, gather the full weights on every rank for saving; otherwise do nothing.

    It also drops the weight-renaming record transformers keeps from loading: for a model loaded under ZeRO-3's
    ``zero.Init`` that record is wrong (reverting it writes ``language_model.model.model.*`` keys that no loader
    finds), so ``save_pretrained`` falls back to the model type's standard mapping.
    """
    from transformers import PreTrainedModel
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and getattr(module, "_weight_conversions", None) is not None:
            module._weight_conversions = None
    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
