"""Peak GPU memory of a training step, estimated before any weight is loaded, and the micro-batch that fits.

The estimate works from what is known before loading: the model's shape (a copy built from the checkpoint's
``config.json`` on PyTorch's meta device, which holds shapes and no weights), the weights the training method
trains, the dtypes, the optimizer, the DeepSpeed ZeRO stage, and the longest row of the data. It adds up

- the weights: frozen ones at their load dtype (4-bit NF4 when ``model.quantization`` is ``nf4``), trained ones
  with their gradients and optimizer state (divided over the processes where ZeRO shards them);
- the activations a micro-batch keeps for the backward pass: each repeated layer that gradients flow through keeps
  a multiple of its width for every token of every row (only the layer inputs with gradient checkpointing, plus
  one layer recomputed at a time), and the logits at the label positions (or at every position);
- what mixed precision adds: half-precision copies of fp32 weights kept from the forward to the backward.

Two moments are compared: the end of the forward pass with the first gradients of the backward (activations at
their largest), and the end of the backward pass (every gradient alive). The coefficients were fitted to measured
peaks; the numbers and where they come from are in benchmarks/NOTES.md ("Memory estimate").

:func:`choose_fit` turns the estimate into the run's decision: the micro-batch and checkpointing the config asks
for (``"auto"`` picks them from the free memory) and a :class:`~voxplug.errors.TrainingError` that says what the
run needs and what to change when it cannot fit.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.errors import TrainingError

if TYPE_CHECKING:
    from voxplug.config import RunConfig

GIB = 2**30

#: Bytes a saved activation takes per element of ``8 x hidden + 3 x intermediate`` (a transformer block's inputs
#: of its norms, projections and MLP), per token and layer, by how the block computes: ``half`` (half-precision
#: weights and compute), ``mixed`` (fp32 weights under half-precision autocast), ``fp32``. Fitted to measured peaks.
ACTIVATION_BYTES = {"half": 1.8, "mixed": 2.8, "fp32": 3.6}
#: Bytes a cross-attention layer keeps per encoder position and hidden element: keys, values and the two
#: projections' inputs, in the compute dtype.
CROSS_ATTENTION_BYTES = {"half": 8, "mixed": 8, "fp32": 16}
#: Bytes per element of the hidden state each layer keeps under gradient checkpointing (its input).
CHECKPOINT_BYTES = {"half": 2, "mixed": 4, "fp32": 4}
#: Bytes per label position and vocabulary entry: the logits, their fp32 copy for the loss and its gradient.
LOGIT_BYTES = {"half": 10, "mixed": 10, "fp32": 12}
#: Memory beyond the counted tensors: kernels' scratch space and allocator rounding.
WORKSPACE_BYTES = GIB // 4
#: Text tokens a row is taken to have per character of its transcript (tokenizers give 3-4 characters a token for
#: alphabetic scripts and about one for CJK), plus the prompt around the transcript.
TOKENS_PER_CHAR = 0.4
PROMPT_TOKENS = 16
#: Text tokens a second of audio where no transcript is known (a stream): the generation budget's rate.
TOKENS_PER_AUDIO_S = 15
#: Memory outside PyTorch's counted allocations (cuBLAS and NCCL buffers): the fit check adds it to the estimate.
OUTSIDE_ALLOCATOR_BYTES = GIB
#: ``batch_size: auto`` keeps this share of the free memory unused, for the allocator's fragmentation and for rows
#: longer than the estimate's.
AUTO_HEADROOM = 0.1
#: The micro-batch a run takes with ``batch_size: auto`` where nothing is measured (no GPU, no memory budget).
CPU_AUTO_BATCH = 2

#: Elements of one chunk of the fp32 master weights kept by the optimizer (``training.master_weights: optimizer``;
#: a larger parameter is a chunk of its own); the gradients are copied to fp32 one chunk at a time.
CHUNK_ELEMENTS = 64 * 2**20

#: Optimizer state bytes per trained parameter, as a multiple of the parameter's own bytes (AdamW: two moments in
#: the parameter's dtype) or as fixed bytes (8-bit AdamW: two one-byte moments).
OPTIMIZER_STATE = {"adamw_torch": ("times", 2), "adamw_torch_fused": ("times", 2), "adamw_8bit": ("bytes", 2)}
#: NF4 weights: half a byte each and one fp32 scale per block of 64.
NF4_BYTES = 0.5 + 4 / 64
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class LayerStack:
    """One stack of repeated layers (an audio encoder, a language model, a decoder), in forward order.

    ``scope`` names the family's part holding it (a LoRA scope); ``audio_tokens`` is how many positions a 30 s chunk
    of audio gives this stack, ``text`` whether the row's text tokens pass through it too, and
    ``cross_audio_tokens`` how many encoder positions a chunk gives each layer's cross-attention (keys and values).
    """

    scope: str
    layers: int
    hidden: int
    intermediate: int
    audio_tokens: int
    text: bool
    cross_audio_tokens: int = 0


@dataclass(frozen=True)
class ModelShape:
    """A model's shape for the estimate: the model built on the meta device and its repeated stacks in forward
    order (``chunk_s``: the seconds of audio one chunk holds)."""

    model: Any
    stacks: tuple[LayerStack, ...]
    chunk_s: float = 30.0


@dataclass(frozen=True)
class TrainedWeights:
    """What a training method trains in a model: the names of the model's own parameters that train, the
    parameter elements it adds and trains (adapters), and the family's parts (LoRA scopes) holding either."""

    base: frozenset[str]
    added: int
    scopes: frozenset[str]


@dataclass(frozen=True)
class RowSize:
    """The longest row a micro-batch holds: 30 s audio chunks and text tokens (prompt and transcript)."""

    chunks: int
    text_tokens: int


@dataclass(frozen=True)
class ZeroSharding:
    """DeepSpeed ZeRO as it divides memory: the stage (0: none), the processes sharing, and whether the optimizer
    state or the parameters are offloaded to the host."""

    stage: int = 0
    world_size: int = 1
    offload_optimizer: bool = False
    offload_params: bool = False


@dataclass(frozen=True)
class StepMemory:
    """The memory facts of a run that do not depend on the micro-batch, in bytes and elements."""

    frozen_weight_bytes: float
    trained_weight_bytes: float
    gradient_bytes: float
    optimizer_bytes: float
    autocast_copy_bytes: float
    head_gradient_bytes: float
    trained_elements: int
    #: per row: activations kept without and with checkpointing, one layer recomputed, one frozen layer's scratch
    row_activation_bytes: float
    row_checkpoint_bytes: float
    row_recompute_bytes: float
    row_frozen_scratch_bytes: float
    #: per row: logits at the label positions and at every position
    row_label_logit_bytes: float
    row_full_logit_bytes: float


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated peak of one training step, in bytes, and its parts at that moment (what the fit error prints):
    frozen weights, trained weights with the gradients and optimizer state alive then, activations (with the
    half-precision weight copies autocast keeps), and scratch space."""

    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    weights: float
    trained: float
    activations: float
    scratch: float

    @property
    def peak(self) -> float:
        """The parts' sum."""
        return self.weights + self.trained + self.activations + self.scratch

    def line(self) -> str:
        """``20.5 GiB (frozen weights 8.7 GiB, trained weights with their gradients and optimizer state 207 MiB,
        activations of 8 rows 11.3 GiB, scratch 256 MiB)``."""
        checkpointing = " with gradient checkpointing" if self.gradient_checkpointing else ""
        return (
            f"{gib(self.peak)} (frozen weights {gib(self.weights)}, trained weights with their gradients and "
            f"optimizer state {gib(self.trained)}, activations of {self.micro_batch} "
            f"{'row' if self.micro_batch == 1 else 'rows'}{checkpointing} "
            f"{gib(self.activations)}, scratch {gib(self.scratch)})"
        )


def gib(value: float) -> str:
    """Bytes as GiB with one decimal, or as MiB below 1 GiB."""
    return f"{value / GIB:.1f} GiB" if value >= GIB else f"{value / 2**20:.0f} MiB"


def _block_elements(stack: LayerStack) -> int:
    return 8 * stack.hidden + 3 * stack.intermediate


def _stack_tokens(stack: LayerStack, row: RowSize) -> int:
    return stack.audio_tokens * row.chunks + (row.text_tokens if stack.text else 0)


def _linear_weight_names(model: Any) -> set[str]:
    import torch

    return {
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def step_memory(
    shape: ModelShape,
    trained: TrainedWeights,
    row: RowSize,
    *,
    base_dtype: str,
    precision: str,
    optim: str,
    quantized: bool = False,
    zero: ZeroSharding | None = None,
    master_weights: bool = False,
) -> StepMemory:
    """The micro-batch-independent facts of a step (:class:`StepMemory`) from the model's shape and the run's
    choices: ``base_dtype`` the dtype the weights load in (``bf16``, ``fp16``, ``fp32``), ``precision`` the run's
    compute precision, ``optim`` the Trainer's optimizer name, ``quantized`` frozen linear weights in 4-bit NF4,
    ``master_weights`` fp32 masters of the trained weights kept by the optimizer (its state is then fp32, plus the
    masters and one chunk of fp32 gradients, at least the largest trained parameter)."""
    zero = zero or ZeroSharding()
    model = shape.model
    params = dict(model.named_parameters())
    linear = _linear_weight_names(model)
    output = model.get_output_embeddings()
    head_names = {name for name, p in params.items() if output is not None and p is output.weight}
    base_bytes = DTYPE_BYTES[base_dtype]
    frozen = 0.0
    trained_base = trained_linear = largest_trained = 0
    for name, parameter in params.items():
        count = parameter.numel()
        if name in trained.base:
            trained_base += count
            largest_trained = max(largest_trained, count)
            trained_linear += count if name in linear else 0
        elif quantized and name in linear and name not in head_names:
            frozen += count * NF4_BYTES
        else:
            frozen += count * base_bytes
    # adapters on half-precision weights are kept in fp32 (PEFT's default); trained base weights in their load dtype
    added_bytes = 4 if base_bytes == 2 else base_bytes
    trained_bytes = trained_base * base_bytes + trained.added * added_bytes
    trained_elements = trained_base + trained.added
    kind, amount = OPTIMIZER_STATE.get(optim, ("times", 0))
    optimizer = trained_bytes * amount if kind == "times" else trained_elements * amount
    if master_weights:
        state = trained_elements * 4 * amount if kind == "times" else trained_elements * amount
        # one chunk's fp32 gradients at a time; a parameter larger than a chunk is a chunk of its own
        scratch = max(min(trained_elements, CHUNK_ELEMENTS), largest_trained) * 4
        optimizer = state + trained_elements * 4 + scratch
    mixed = precision in ("bf16", "fp16") and base_bytes == 4
    regime = "mixed" if mixed else ("fp32" if precision == "fp32" else "half")
    autocast_copies = 2 * trained_linear if mixed else 0
    head_gradient = sum(params[name].numel() for name in head_names if name in trained.base) * base_bytes
    frozen, trained_bytes, gradient, optimizer = _sharded(frozen, trained_bytes, trained_bytes, optimizer, zero)
    act = ACTIVATION_BYTES[regime]
    kept = _stacks_with_gradients(shape.stacks, trained.scopes)
    activation = checkpoint = recompute = scratch = 0.0
    for stack in shape.stacks:
        tokens = _stack_tokens(stack, row)
        cross = stack.cross_audio_tokens * row.chunks * stack.hidden * CROSS_ATTENTION_BYTES[regime]
        layer = tokens * _block_elements(stack) * act + cross
        if stack in kept:
            activation += layer * stack.layers
            checkpoint += tokens * stack.hidden * CHECKPOINT_BYTES[regime] * stack.layers
            recompute = max(recompute, layer)
        else:
            scratch = max(scratch, layer)
    vocab = output.weight.shape[0] if output is not None else 0
    text_stacks = [stack for stack in shape.stacks if stack.text]
    positions = _stack_tokens(text_stacks[-1], row) if text_stacks else 0
    return StepMemory(
        frozen_weight_bytes=frozen,
        trained_weight_bytes=trained_bytes,
        gradient_bytes=gradient,
        optimizer_bytes=optimizer,
        autocast_copy_bytes=autocast_copies,
        head_gradient_bytes=head_gradient,
        trained_elements=trained_elements,
        row_activation_bytes=activation,
        row_checkpoint_bytes=checkpoint,
        row_recompute_bytes=recompute,
        row_frozen_scratch_bytes=scratch,
        row_label_logit_bytes=row.text_tokens * vocab * LOGIT_BYTES[regime],
        row_full_logit_bytes=positions * vocab * LOGIT_BYTES[regime],
    )


def _sharded(
    frozen: float, trained: float, gradient: float, optimizer: float, zero: ZeroSharding
) -> tuple[float, float, float, float]:
    """What stays on each GPU under ZeRO: stage 1 shards the optimizer state, 2 the gradients too, 3 the weights."""
    world = max(1, zero.world_size)
    if zero.stage >= 1:
        optimizer = 0.0 if zero.offload_optimizer else optimizer / world
    if zero.stage >= 2:
        gradient /= world
    if zero.stage >= 3:
        divisor = math.inf if zero.offload_params else world
        frozen, trained = frozen / divisor, trained / divisor
    return frozen, trained, gradient, optimizer


def _stacks_with_gradients(stacks: Iterable[LayerStack], scopes: frozenset[str]) -> set[LayerStack]:
    """The stacks gradients flow through: from the first one in forward order whose part trains, on."""
    kept: set[LayerStack] = set()
    flowing = False
    for stack in stacks:
        flowing = flowing or stack.scope in scopes
        if flowing:
            kept.add(stack)
    return kept


def estimate_step(
    memory: StepMemory, *, micro_batch: int, grad_accum: int, gradient_checkpointing: bool, label_logits: bool
) -> MemoryEstimate:
    """The peak of one training step at this micro-batch (:class:`MemoryEstimate`).

    Two moments are compared: the end of the forward pass as the backward starts (activations, logits, the
    half-precision weight copies, the output layer's gradient, and every gradient when micro-batches accumulate),
    and the end of the backward pass (every gradient, activations freed).
    """
    rows = micro_batch
    if gradient_checkpointing:
        activations = rows * (memory.row_checkpoint_bytes + memory.row_recompute_bytes)
    else:
        activations = rows * memory.row_activation_bytes
    logits = rows * (memory.row_label_logit_bytes if label_logits else memory.row_full_logit_bytes)
    activations += logits + rows * memory.row_frozen_scratch_bytes
    kept = memory.trained_weight_bytes + memory.optimizer_bytes
    accumulated = memory.gradient_bytes if grad_accum > 1 else 0.0
    forward_end = (kept + accumulated + memory.head_gradient_bytes, activations + memory.autocast_copy_bytes)
    backward_end = (kept + memory.gradient_bytes, 0.0)
    trained, kept_activations = max(forward_end, backward_end, key=sum)
    return MemoryEstimate(
        micro_batch=micro_batch,
        grad_accum=grad_accum,
        gradient_checkpointing=gradient_checkpointing,
        weights=memory.frozen_weight_bytes,
        trained=trained,
        activations=kept_activations,
        scratch=WORKSPACE_BYTES,
    )


# -- inputs read from the run -------------------------------------------------------------------------------


def row_size(
    durations: Iterable[float | None], texts: Iterable[str], *, max_duration_s: float, chunk_s: float
) -> RowSize:
    """The longest row of the data: its audio chunks (the longest clip, or ``max_duration_s`` where a duration is
    unknown) and its text tokens, estimated from the longest transcript (or from the audio where no row is known)."""
    longest_s = 0.0
    for duration in durations:
        longest_s = max(longest_s, max_duration_s if duration is None else duration)
    longest_s = longest_s or max_duration_s
    chars = max((len(text) for text in texts), default=None)
    text_tokens = (
        math.ceil(longest_s * TOKENS_PER_AUDIO_S) if chars is None else math.ceil(chars * TOKENS_PER_CHAR)
    ) + PROMPT_TOKENS
    return RowSize(chunks=max(1, math.ceil(longest_s / chunk_s)), text_tokens=text_tokens)


def zero_sharding(config_path: str | None, *, world_size: int) -> ZeroSharding:
    """ZeRO's stage and offloads from a DeepSpeed config JSON (or from ``accelerate launch``'s environment)."""
    data: dict[str, Any] = {}
    if config_path:
        try:
            data = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
    zero = data.get("zero_optimization") or {}
    stage = zero.get("stage", os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", 0))
    try:
        stage = int(stage)
    except (TypeError, ValueError):
        stage = 0

    def offloaded(key: str, env: str) -> bool:
        device = (zero.get(key) or {}).get("device") or os.environ.get(env, "none")
        return str(device).lower() in ("cpu", "nvme")

    return ZeroSharding(
        stage=stage,
        world_size=world_size,
        offload_optimizer=offloaded("offload_optimizer", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"),
        offload_params=offloaded("offload_param", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"),
    )


def build_on_meta(model_class: Any, config: Any) -> Any:
    """``model_class(config)`` on PyTorch's meta device (shapes, no weights), for counting.

    While a DeepSpeed ZeRO-3 configuration is active, transformers builds every sub-model it makes from a config
    inside DeepSpeed's ``zero.Init``, which partitions the new weights by copying them, and a meta weight has no
    data to copy; transformers' own switch for "zero.Init is already handled" keeps that out of a count."""
    import contextlib

    import torch
    from transformers import modeling_utils

    handled = getattr(modeling_utils, "set_zero3_state", contextlib.nullcontext)
    with torch.device("meta"), handled():
        return model_class(config)


def lora_added_parameters(model: Any, target_modules: str | list[str], rank: int) -> int:
    """Adapter elements LoRA of rank ``rank`` adds to the linear layers PEFT's ``target_modules`` matches (a regex
    matched against the whole module name, or names matched against its end, as PEFT matches them)."""
    import torch

    added = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        if isinstance(target_modules, str):
            hit = re.fullmatch(target_modules, name) is not None
        else:
            hit = any(name == target or name.endswith("." + target) for target in target_modules)
        if hit:
            added += rank * (module.in_features + module.out_features)
    return added


def free_device_memory() -> int | None:
    """Bytes this process may still allocate on its GPU: the free memory, capped by the process's memory fraction
    (``torch.cuda.set_per_process_memory_fraction``); None without CUDA. Blocks this process's allocator holds
    unused (from an earlier run in the same process) are released first, so they count as free."""
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.empty_cache()
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    fraction = torch.cuda.get_per_process_memory_fraction(device)
    capped = int(total * fraction) - torch.cuda.memory_reserved(device)
    return max(0, min(free, capped))


def shared_minimum(value: int) -> int:
    """``value`` on every rank: the smallest of the ranks' values where a process group runs, else ``value``."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
    return int(tensor.item())


# -- the decision --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchChoice:
    """The micro-batch, accumulation and checkpointing a run trains with, and how they were reached: the estimate
    at that choice and the memory it was measured against (None where nothing was measured)."""

    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    chosen_by: str  # "config" or "auto"
    estimate: MemoryEstimate | None = None
    available_bytes: int | None = None

    def record(self) -> dict[str, Any]:
        """The choice as plain data for ``training_config.json``."""
        record: dict[str, Any] = {
            "batch_size": self.micro_batch,
            "grad_accum": self.grad_accum,
            "gradient_checkpointing": self.gradient_checkpointing,
            "chosen_by": self.chosen_by,
            "estimated_peak_gib": round(self.estimate.peak / GIB, 2) if self.estimate else None,
            "available_gib": round(self.available_bytes / GIB, 2) if self.available_bytes is not None else None,
        }
        if self.estimate:
            record["estimate_gib"] = {
                key: round(value / GIB, 3)
                for key, value in asdict(self.estimate).items()
                if key in ("weights", "trained", "activations", "scratch")
            }
        return record

    def line(self) -> str:
        """``micro-batch 8 x accumulation 1, no gradient checkpointing (auto: needs about 20.1 of 78.6 GiB free)``."""
        checkpointing = "gradient checkpointing" if self.gradient_checkpointing else "no gradient checkpointing"
        text = f"micro-batch {self.micro_batch} x accumulation {self.grad_accum}, {checkpointing} ({self.chosen_by}"
        if self.estimate is not None and self.available_bytes is not None:
            text += f": needs about {gib(self.estimate.peak)} of {gib(self.available_bytes)}"
        return text + ")"


@dataclass(frozen=True)
class FitRequest:
    """What :func:`choose_fit` reads from the config: ``batch_size`` and ``gradient_checkpointing`` (an int or a
    bool, or ``"auto"``), the accumulation, the effective batch auto keeps, whether to check the fit, logits only
    at label positions."""

    batch_size: int | str
    grad_accum: int
    gradient_checkpointing: bool | str
    effective_batch: int
    fit_check: bool
    label_logits: bool
    #: whether the memory measured against is ``training.device_memory_gb`` (else the GPU's free memory)
    memory_limit_set: bool = False

    @classmethod
    def of(cls, config: RunConfig) -> FitRequest:
        """The request of a run config."""
        training = config.training
        return cls(
            batch_size=training.batch_size,
            grad_accum=training.grad_accum,
            gradient_checkpointing=training.gradient_checkpointing,
            effective_batch=training.samples_per_step,
            fit_check=training.fit_check,
            label_logits=training.speed.label_logits,
            memory_limit_set=training.device_memory_gb is not None,
        )


def micro_batch_ladder(effective_batch: int) -> list[int]:
    """The micro-batches auto tries, largest first: the divisors of ``effective_batch``, so that micro-batch x
    accumulation is exactly the effective batch."""
    return [size for size in range(effective_batch, 0, -1) if effective_batch % size == 0]


def choose_fit(
    request: FitRequest, memory: StepMemory | None, available: int | None, *, masters: StepMemory | None = None
) -> BatchChoice:
    """The micro-batch, accumulation and checkpointing of the run, with the fit checked.

    ``memory`` is the run's :func:`step_memory` (None where the model's shape is unknown) and ``available`` the
    bytes the run may use on each GPU (None: nothing measured, as on a CPU without a memory budget). ``"auto"``
    takes the largest micro-batch of :func:`micro_batch_ladder` that fits with headroom, without gradient
    checkpointing if any does (when checkpointing is auto too), accumulating the rest of the effective batch; with
    nothing measured it takes :data:`CPU_AUTO_BATCH` (at most the effective batch) and no checkpointing. A run whose
    estimate exceeds ``available`` raises :class:`TrainingError` (unless ``fit_check`` is off); ``masters`` is the
    same run's memory with ``training.master_weights: optimizer``, which the message proposes where it fits.
    """
    auto_batch = request.batch_size == "auto"
    auto_checkpointing = request.gradient_checkpointing == "auto"
    measured = memory is not None and available is not None
    if not measured:
        micro = min(CPU_AUTO_BATCH, request.effective_batch) if auto_batch else int(request.batch_size)
        checkpointing = False if auto_checkpointing else bool(request.gradient_checkpointing)
        accum = request.effective_batch // micro if auto_batch else request.grad_accum
        chosen = "auto, nothing measured" if auto_batch or auto_checkpointing else "config"
        if auto_batch and request.effective_batch % micro:
            micro, accum = 1, request.effective_batch
        return BatchChoice(micro, accum, checkpointing, chosen)
    assert memory is not None and available is not None
    sizes = micro_batch_ladder(request.effective_batch) if auto_batch else [int(request.batch_size)]
    modes = [False, True] if auto_checkpointing else [bool(request.gradient_checkpointing)]
    budget = available * (1 - AUTO_HEADROOM) - OUTSIDE_ALLOCATOR_BYTES
    if auto_batch or auto_checkpointing:
        for checkpointing in modes:
            for micro in sizes:
                accum = request.effective_batch // micro if auto_batch else request.grad_accum
                estimate = estimate_step(
                    memory,
                    micro_batch=micro,
                    grad_accum=accum,
                    gradient_checkpointing=checkpointing,
                    label_logits=request.label_logits,
                )
                if estimate.peak <= budget:
                    return BatchChoice(micro, accum, checkpointing, "auto", estimate, available)
    micro = sizes[-1]
    accum = request.effective_batch // micro if auto_batch else request.grad_accum
    estimate = estimate_step(
        memory, micro_batch=micro, grad_accum=accum, gradient_checkpointing=modes[-1], label_logits=request.label_logits
    )
    choice = BatchChoice(micro, accum, modes[-1], "auto" if auto_batch else "config", estimate, available)
    if request.fit_check and estimate.peak + OUTSIDE_ALLOCATOR_BYTES > available:
        raise TrainingError(fit_error(choice, memory, request, masters=masters))
    return choice


def fit_error(
    choice: BatchChoice, memory: StepMemory, request: FitRequest, *, masters: StepMemory | None = None
) -> str:
    """The message of a run that does not fit: what it needs, what is free, and what to change: first the settings
    that the same estimate says would fit (the batch's, then fp32 masters in the optimizer where ``masters`` is that
    run's memory), then the larger changes it cannot weigh."""
    assert choice.estimate is not None and choice.available_bytes is not None
    estimate = choice.estimate
    fits = [
        f"{change} (about {gib(needed)})"
        for change, needed in _batch_changes(estimate, memory, request, choice.available_bytes)
    ]
    if masters is not None:
        needed = estimate_step(
            masters,
            micro_batch=estimate.micro_batch,
            grad_accum=estimate.grad_accum,
            gradient_checkpointing=estimate.gradient_checkpointing,
            label_logits=request.label_logits,
        ).peak
        if needed + OUTSIDE_ALLOCATOR_BYTES <= choice.available_bytes:
            fits.append(f"training.master_weights=optimizer (about {gib(needed)})")
    larger = []
    if memory.optimizer_bytes + memory.gradient_bytes > GIB:
        larger.append("training.method=lora instead of full fine-tuning")
    larger.append("a 4-bit base model (model.quantization=nf4, LoRA)")
    larger.append("DeepSpeed ZeRO over several GPUs (training.deepspeed=deepspeed/zero3.json with accelerate launch)")
    available = (
        f"the {gib(choice.available_bytes)} training.device_memory_gb allows"
        if request.memory_limit_set
        else f"the {gib(choice.available_bytes)} free on it"
    )
    advice = ("Set " + "; or ".join(fits) + ". Or try " if fits else "Try ") + "; or ".join(larger)
    return (
        f"this run needs about {estimate.line()} on each device, plus about {gib(OUTSIDE_ALLOCATOR_BYTES)} for CUDA "
        f"libraries: more than {available}. {advice}. The figure is an estimate from the model's shape and the "
        "longest row; if you know the run fits, set training.fit_check=false to start it anyway"
    )


def _batch_changes(
    estimate: MemoryEstimate, memory: StepMemory, request: FitRequest, available: int
) -> list[tuple[str, float]]:
    """The batch settings that keep the effective batch and fit ``available`` by the estimate, with their peaks: the
    largest smaller micro-batch (halving, the accumulation raised) without, then with, gradient checkpointing."""
    micro, accum = estimate.micro_batch, estimate.grad_accum
    sizes = [micro]
    while sizes[-1] % 2 == 0:
        sizes.append(sizes[-1] // 2)
    found: list[tuple[str, float]] = []
    for checkpointing in dict.fromkeys([estimate.gradient_checkpointing, True]):
        for size in sizes:
            if (size, checkpointing) == (micro, estimate.gradient_checkpointing):
                continue
            steps = accum * micro // size
            needed = estimate_step(
                memory,
                micro_batch=size,
                grad_accum=steps,
                gradient_checkpointing=checkpointing,
                label_logits=request.label_logits,
            ).peak
            if needed + OUTSIDE_ALLOCATOR_BYTES <= available:
                change = [f"training.batch_size={size} training.grad_accum={steps}"] if size != micro else []
                change += ["training.gradient_checkpointing=true"] if checkpointing else []
                found.append((" ".join(change), needed))
                break
    return found
