"""The facts of one training run, decided once: :class:`TrainingContext` and :func:`decide`.

Every choice a run makes from its config and the machine is made here and nowhere else: the precision, whether
DeepSpeed is in use, whether the model's blocks are compiled (``training.compile: null`` is settled from the step
count), the step plan, and which speed paths may apply. The run builds one frozen context and passes it down
(:meth:`~voxplug.training.interface.TrainingMethod.prepare_model` gets it), so nothing downstream re-derives a fact
from the raw config, and the config itself is never changed to carry a decision.

:func:`check_run_options` refuses, before any data or model is loaded, the options this machine cannot run;
:func:`decide` then needs the number of training rows (the step plan counts them), so it runs once the data is in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from voxplug.errors import TrainingError
from voxplug.training import devices
from voxplug.training.arguments import StepPlan, plan_steps
from voxplug.training.memory import BatchChoice, FitRequest, choose_fit

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.training.memory import ModelShape, RowSize, TrainedWeights

log = logging.getLogger("voxplug.training")

#: Optimizer steps from which ``training.compile: null`` (auto) compiles: about where the minutes spent compiling
#: are paid back by faster steps (the measurements are in benchmarks/NOTES.md).
COMPILE_AUTO_MIN_STEPS = 2000


@dataclass(frozen=True)
class SpeedPaths:
    """Which fast paths this run allows; each still needs the model family (and training method) to offer it.

    ``fused_kernels``: the family's fused GPU kernels are swapped in at load. ``cuda_graphs``: repeated layers may
    be replayed as CUDA graphs in training. ``eager_adapters``: the model runs eagerly (not compiled) without
    DeepSpeed, so a method may replace its adapters' forward (the ``lora`` method's one-node layers).
    ``encoder_cache_gb``: memory for reusing a frozen encoder's outputs (0: off). ``label_logits``: logits only where
    a label is. ``epoch_stream``: one batch stream across epochs (where the loader has workers in one process).
    ``masters_one_pass``: fp32 masters kept by the optimizer are stepped in one pass where the optimizer allows it.
    """

    fused_kernels: bool
    cuda_graphs: bool
    eager_adapters: bool
    encoder_cache_gb: float
    label_logits: bool
    epoch_stream: bool
    masters_one_pass: bool = True


@dataclass(frozen=True)
class TrainingContext:
    """What one run decided, built once by :func:`decide` and read by every later step (never changed)."""

    #: the validated plugin options by key path (``"training.lora"``, ``"data.jsonl"``, ...)
    options: Mapping[str, Any]
    #: ``"bf16"``, ``"fp16"`` or ``"fp32"``: ``training.precision`` resolved for this machine
    precision: str
    #: processes training together
    world_size: int
    #: whether this is the global rank-0 process (it fires hooks and writes the run folder's files)
    is_main: bool
    #: whether DeepSpeed trains the model (``training.deepspeed`` or ``accelerate launch`` asked for it)
    deepspeed: bool
    #: whether the model's repeated blocks are compiled (``training.compile``, auto settled)
    compile: bool
    plan: StepPlan
    speed: SpeedPaths
    #: the micro-batch, accumulation and gradient checkpointing the run trains with (``auto`` settled)
    batch: BatchChoice
    #: ``model.quantization``: the frozen base's linear layers load in 4 bits (``"nf4"``), or None for the load dtype
    quantization: str | None = None
    #: whether the model trains in bf16 with its fp32 masters kept by the optimizer (``training.master_weights``)
    master_weights: bool = False

    def options_of(self, key: str) -> Any:
        """The validated options at ``key`` (``"training.lora"``), or None where that extension has none."""
        return self.options.get(key)

    def record(self) -> dict[str, Any]:
        """The decisions as plain data, for ``training_config.json`` (options are recorded beside them)."""
        return {
            "precision": self.precision,
            "world_size": self.world_size,
            "deepspeed": self.deepspeed,
            "compile": self.compile,
            "quantization": self.quantization,
            "master_weights": "optimizer" if self.master_weights else "model",
            "plan": asdict(self.plan),
            "speed": asdict(self.speed),
            "batch": self.batch.record(),
        }


@dataclass(frozen=True)
class MemoryInputs:
    """What the memory estimate reads, gathered before the model loads: the model's shape and what the method
    trains in it (None where the family or method cannot say), the longest row, whether the method trains adapters
    on a frozen base (which loads in half precision), and the bytes each process may use on its device (None:
    unknown, as on a CPU, where auto takes a fixed small batch and nothing is checked)."""

    shape: ModelShape | None
    trained: TrainedWeights | None
    row: RowSize
    adapter: bool
    available_bytes: int | None


def deepspeed_wanted(config: RunConfig) -> bool:
    """True when the run uses DeepSpeed: ``training.deepspeed`` is set or ``accelerate launch`` asked for it."""
    return bool(config.training.deepspeed) or devices.deepspeed_requested()


def check_run_options(config: RunConfig) -> None:
    """Raise :class:`TrainingError` for options this machine cannot run, naming the config key and the fix.

    Called before any data or model is loaded, on every rank, so a bad combination fails in a second rather than
    after minutes of loading.
    """
    devices.resolve_precision(config.training.precision)
    deepspeed = deepspeed_wanted(config)
    _refuse_compile_under_deepspeed(config, deepspeed)
    _check_quantization(config, deepspeed)
    if devices.cuda_available():
        return
    gpu_only = {
        "model.attn_implementation=flash_attention_2": config.model.attn_implementation == "flash_attention_2",
        "model.dtype=fp16": config.model.dtype == "fp16",
        "training.optim=adamw_8bit": config.training.optim == "adamw_8bit",
    }
    for option, chosen in gpu_only.items():
        if chosen:
            raise TrainingError(f"{option} needs a CUDA GPU and this machine has none; remove it to train on CPU")
    if deepspeed and not devices.cpu_deepspeed_allowed():
        raise TrainingError(
            "DeepSpeed needs CUDA GPUs and this machine has none; on CPU run several processes with "
            "`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m voxplug train ...` "
            "(DDP over gloo)"
        )


def _check_quantization(config: RunConfig, deepspeed: bool) -> None:
    """``model.quantization`` needs bitsandbytes and, on a GPU, bf16 (its compute dtype); and runs without DeepSpeed
    (ZeRO shards weights that bitsandbytes packs into its own layout)."""
    quantization = config.model.quantization
    if quantization is None:
        return
    from voxplug.models.quantization import require_bitsandbytes

    require_bitsandbytes(f"model.quantization={quantization}")
    if devices.cuda_available() and not devices.bf16_supported():
        raise TrainingError(
            f"model.quantization={quantization} computes in bf16, which this GPU does not have (Ampere or newer "
            "does); remove model.quantization and train over a half-precision base"
        )
    if deepspeed:
        raise TrainingError(
            f"model.quantization={quantization} does not run under DeepSpeed (it cannot shard 4-bit weights): train "
            "on one GPU, or on several with plain `accelerate launch` (each process holds the 4-bit base)"
        )


def decide(
    config: RunConfig,
    options: Mapping[str, Any],
    *,
    train_rows: int | None,
    world_size: int,
    eval_rows: int = 0,
    is_main: bool = True,
    memory: MemoryInputs | None = None,
    adapter: bool = False,
) -> TrainingContext:
    """Decide everything the run needs from ``config``, the machine and the data: THE place each choice is made.

    ``options`` are the plugin options already validated (:func:`voxplug.config.resolve_plugin_options`);
    ``train_rows`` the number of training rows (None for a stream of unknown size); ``world_size`` and ``is_main``
    describe the processes training together; ``eval_rows`` the rows each evaluation transcribes, which spaces
    evaluations under ``training.max_eval_share``; ``memory`` what the memory estimate reads, which settles
    ``batch_size: auto`` and ``gradient_checkpointing: auto`` and refuses, with what to change, a run that does not
    fit (:func:`~voxplug.training.memory.choose_fit`); ``adapter`` whether the training method trains adapters on a
    frozen base.
    """
    training = config.training
    precision = devices.resolve_precision(training.precision)
    deepspeed = deepspeed_wanted(config)
    masters = master_weights_decision(config, precision=precision, deepspeed=deepspeed, adapter=adapter)
    batch = batch_decision(
        config, memory, precision=precision, world_size=world_size, deepspeed=deepspeed, master_weights=masters
    )
    if masters and (batch.grad_accum > 1 or world_size > 1):
        log.warning(
            "training.master_weights=optimizer with %d micro-batches a step on %d processes: their gradients add up "
            "in bf16 before the fp32 step (fp32 weights in the model add them in fp32)",
            batch.grad_accum,
            world_size,
        )
    plan = plan_steps(
        training,
        train_rows=train_rows,
        world_size=world_size,
        eval_rows=eval_rows,
        batch_size=batch.micro_batch,
        grad_accum=batch.grad_accum,
    )
    cuda = devices.cuda_available()
    quantized = config.model.quantization is not None
    compiled = compile_decision(config, total_steps=plan.total_steps, world_size=world_size, deepspeed=deepspeed)
    if training.compile is None:
        log.info(
            "training.compile (auto): %s for %d optimizer steps (compiling pays back from %d steps on one GPU)",
            "on" if compiled else "off",
            plan.total_steps,
            COMPILE_AUTO_MIN_STEPS,
        )
    speed = SpeedPaths(
        # the kernels are CUDA-only (bf16/fp16 means a CUDA device here); the compiler fuses instead
        fused_kernels=training.speed.fused_kernels and precision != "fp32" and not compiled,
        # compile has graphs of its own; ZeRO-3 gathers weights into new places every step; recomputing inside a
        # captured backward (gradient checkpointing) is untested, and so are bitsandbytes' 4-bit kernels in a graph
        cuda_graphs=training.speed.cuda_graphs
        and cuda
        and world_size == 1
        and not deepspeed
        and not compiled
        and not batch.gradient_checkpointing
        and not quantized,
        # compiled blocks fuse adapters and casts themselves; ZeRO-3 gathers weights only for modules it calls; a
        # method's own adapter arithmetic reads the base weight, which a 4-bit base packs
        eager_adapters=not compiled and not deepspeed and not quantized,
        encoder_cache_gb=training.speed.encoder_cache_gb,
        label_logits=training.speed.label_logits,
        epoch_stream=training.speed.epoch_stream and world_size == 1,
        masters_one_pass=training.speed.masters_one_pass,
    )
    return TrainingContext(
        options=MappingProxyType(dict(options)),
        precision=precision,
        world_size=world_size,
        is_main=is_main,
        deepspeed=deepspeed,
        compile=compiled,
        plan=plan,
        speed=speed,
        batch=batch,
        quantization=config.model.quantization,
        master_weights=masters,
    )


def batch_decision(
    config: RunConfig,
    memory: MemoryInputs | None,
    *,
    precision: str,
    world_size: int,
    deepspeed: bool,
    master_weights: bool = False,
) -> BatchChoice:
    """The micro-batch, accumulation and checkpointing of the run: the config's, or ``auto`` settled from the
    memory estimate; raises :class:`TrainingError` when the run does not fit (``training.fit_check``), proposing
    fp32 masters in the optimizer where they would apply and fit."""
    from voxplug.training.memory import step_memory, zero_sharding

    request = FitRequest.of(config)
    if memory is None or memory.shape is None or memory.trained is None:
        return choose_fit(request, None, memory.available_bytes if memory is not None else None)
    from voxplug.training.arguments import deepspeed_config_path
    from voxplug.training.run import load_dtype

    def memory_with(masters: bool) -> Any:
        assert memory is not None and memory.shape is not None and memory.trained is not None
        return step_memory(
            memory.shape,
            memory.trained,
            memory.row,
            base_dtype=load_dtype(config.model.dtype, precision, adapter=memory.adapter, master_weights=masters),
            precision=precision,
            optim=config.training.optim,
            quantized=getattr(config.model, "quantization", None) == "nf4",
            zero=zero_sharding(deepspeed_config_path(config), world_size=world_size) if deepspeed else None,
            master_weights=masters,
        )

    could = not master_weights and (
        master_weights_moot(config, precision=precision, deepspeed=deepspeed, adapter=memory.adapter) is None
    )
    proposal = memory_with(True) if could else None
    return choose_fit(request, memory_with(master_weights), memory.available_bytes, masters=proposal)


def master_weights_moot(config: RunConfig, *, precision: str, deepspeed: bool, adapter: bool) -> str | None:
    """Why fp32 masters in the optimizer cannot apply to this run, or None where they can: a run that trains
    adapters (fp32 already), computes in fp16 (whose loss scaler needs fp32 weights) or fp32, runs under DeepSpeed
    (which keeps masters of its own) or loads its weights in a dtype of the config's choosing."""
    if adapter:
        return "the training method trains adapters, which are kept in fp32 already"
    if precision != "bf16":
        return f"the run computes in {precision}, not bf16"
    if deepspeed:
        return "DeepSpeed keeps fp32 masters of its own"
    if config.model.dtype not in ("auto", "bf16"):
        return f"model.dtype={config.model.dtype} sets the weights' dtype"
    return None


def master_weights_decision(config: RunConfig, *, precision: str, deepspeed: bool, adapter: bool) -> bool:
    """Whether the optimizer keeps the fp32 masters (``training.master_weights: optimizer`` where it applies; a
    warning says why where it does not)."""
    if config.training.master_weights != "optimizer":
        return False
    moot = master_weights_moot(config, precision=precision, deepspeed=deepspeed, adapter=adapter)
    if moot is not None:
        log.warning("training.master_weights=optimizer does not apply: %s; the weights stay in the model", moot)
    return moot is None


def compile_decision(config: RunConfig, *, total_steps: int | None, world_size: int, deepspeed: bool) -> bool:
    """Whether the run compiles the model's repeated blocks: ``training.compile``, where ``None`` (auto) means "on
    with a CUDA GPU in a single process for a run of at least :data:`COMPILE_AUTO_MIN_STEPS` optimizer steps" (off
    when ``total_steps`` is not known, and over a 4-bit base, whose compiled training is untested). Compiling has run
    on one GPU only; DeepSpeed's engine would compile blocks in place, generation included, so it is refused there."""
    if config.training.compile is None:
        long_enough = total_steps is not None and total_steps >= COMPILE_AUTO_MIN_STEPS
        plain_base = config.model.quantization is None
        return long_enough and devices.cuda_available() and not deepspeed and world_size == 1 and plain_base
    _refuse_compile_under_deepspeed(config, deepspeed)
    return config.training.compile


def _refuse_compile_under_deepspeed(config: RunConfig, deepspeed: bool) -> None:
    if config.training.compile and deepspeed:
        raise TrainingError(
            "training.compile=true is not supported under DeepSpeed (its engine would compile generation too); "
            "remove it or set training.compile=false"
        )


def retired_decision(name: str) -> Callable[..., bool]:
    """The functions ``voxplug.api`` no longer declares (``compile_enabled``, ``cuda_graphs_possible``,
    ``deepspeed_wanted``), for plugins written against them: each answers from a config as it used to, by the rules
    above. A plugin reads the :class:`TrainingContext` it is given instead."""
    from voxplug.training.processes import launched_world_size

    def compile_enabled(config: RunConfig, total_steps: int | None = None) -> bool:
        world = launched_world_size()
        return compile_decision(config, total_steps=total_steps, world_size=world, deepspeed=deepspeed_wanted(config))

    def cuda_graphs_possible(config: RunConfig) -> bool:
        training = config.training
        return (
            devices.cuda_available()
            and launched_world_size() == 1
            and not deepspeed_wanted(config)
            and not compile_enabled(config)
            and training.gradient_checkpointing is False
        )

    return {
        "compile_enabled": compile_enabled,
        "cuda_graphs_possible": cuda_graphs_possible,
        "deepspeed_wanted": deepspeed_wanted,
    }[name]
