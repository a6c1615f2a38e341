"""AdamW over fp32 master weights in one pass: the model's half-precision gradient in, its weight out.

:class:`~voxplug.training.master_weights.MasterWeights` otherwise steps a chunk of masters in three passes over
memory: the model's bf16 gradients copied into an fp32 buffer, the optimizer's own fused AdamW over the masters, and
the masters copied back into the model's bf16 weights, about 40 bytes a weight. :func:`adamw_step` does the same
arithmetic in one Triton kernel per weight: it reads the 2-byte gradient and the fp32 master and moments, and writes
those and the 2-byte weight, 28 bytes a weight. Full fine-tuning's optimizer step is bound by memory bandwidth, so
fewer bytes are less time.

The arithmetic is ``torch.optim.AdamW``'s fused kernel's, in its order, in float32 with Triton's own square root
and division; the bias corrections ``1 - beta ** step`` come from the optimizer's own step counters on the device
through ``exp2``. So results may differ from torch's in the last bits of float32; the host never waits to read the
counters.
The optimizer's state stays its own: the moments and the step counters are the tensors it created at its first
step, so a checkpoint saves and resumes as before.
"""

from __future__ import annotations

import functools
import math
from contextlib import nullcontext
from typing import Any

import torch

#: Elements one program of the kernel updates.
BLOCK = 2048


def adamw_applies(optimizer: torch.optim.Optimizer, device: torch.device) -> bool:
    """Whether :func:`adamw_step` can step ``optimizer``'s masters on ``device``: ``torch.optim.AdamW`` built
    ``fused`` or ``capturable`` (which keep their step counters on the device; the Trainer's ``adamw_torch_fused``
    is), without amsgrad or maximize and with both betas strictly between 0 and 1, on a CUDA device where Triton is
    installed."""
    if type(optimizer) is not torch.optim.AdamW or device.type != "cuda" or torch.version.hip is not None:
        return False
    on_device = all(group.get("fused") or group.get("capturable") for group in optimizer.param_groups)
    return on_device and all(_plain(group) for group in optimizer.param_groups) and _kernel() is not None


def adamw_step(optimizer: torch.optim.Optimizer, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """One AdamW step of ``optimizer`` (a ``torch.optim.AdamW`` over fp32 masters) for each ``(weight, master)``
    pair whose half-precision ``weight`` has a gradient: the master and its moments updated from that gradient, and
    the weight set to the master's rounding. Returns False, changing nothing, where the optimizer has no state yet
    for some master (its own first step creates it), a tensor is laid out otherwise than the kernel reads, or a
    group asks for what the kernel does not do (a state loaded from a checkpoint may)."""
    state = optimizer.state
    groups = {master: group for group in optimizer.param_groups for master in group["params"]}
    for weight, master in pairs:
        saved, group = state.get(master), groups.get(master)
        if not saved or "exp_avg" not in saved or group is None or not _plain(group):
            return False
        step = saved["step"]
        tensors = (weight, weight.grad, master, saved["exp_avg"], saved["exp_avg_sq"])
        if not all(t.is_contiguous() and t.device == master.device for t in tensors) or step.device != master.device:
            return False
        if master.dtype != torch.float32 or weight.grad.dtype != weight.dtype:
            return False
    steps = [state[master]["step"] for _, master in pairs]
    torch._foreach_add_(steps, 1)
    kernel = _kernel()
    scalars: dict[int, tuple[float, ...]] = {}  # by group, read once per step (a tensor rate is read back once)
    for weight, master in pairs:
        group, saved = groups[master], state[master]
        if id(group) not in scalars:
            beta1, beta2 = (float(beta) for beta in group["betas"])
            lr, eps, decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            scalars[id(group)] = (lr, beta1, beta2, math.log2(beta1), math.log2(beta2), eps, decay)
        count = master.numel()
        if count == 0:
            continue
        with torch.cuda.device(master.device) if master.is_cuda else nullcontext():
            kernel[(-(-count // BLOCK),)](
                weight.grad, master, saved["exp_avg"], saved["exp_avg_sq"], weight, saved["step"], count,
                *scalars[id(group)], BLOCK=BLOCK,
            )  # fmt: skip
    return True


def _plain(group: dict[str, Any]) -> bool:
    """A group the kernel computes as torch does: no amsgrad, maximize or differentiable step, betas in (0, 1)."""
    if group.get("amsgrad") or group.get("maximize") or group.get("differentiable"):
        return False
    return all(0 < float(beta) < 1 for beta in group["betas"])


@functools.cache
def _kernel() -> Any:
    """The Triton kernel, compiled at its first call; None where Triton is not installed."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit(do_not_specialize=["count"])
    def adamw_kernel(
        grad_ptr, master_ptr, avg_ptr, avg_sq_ptr, weight_ptr, step_ptr, count,
        lr, beta1, beta2, log2_beta1, log2_beta2, eps, weight_decay, BLOCK: tl.constexpr,
    ):  # fmt: skip
        at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        on = at < count
        step = tl.load(step_ptr).to(tl.float32)
        grad = tl.load(grad_ptr + at, mask=on).to(tl.float32)
        master = tl.load(master_ptr + at, mask=on)
        avg = tl.load(avg_ptr + at, mask=on)
        avg_sq = tl.load(avg_sq_ptr + at, mask=on)
        master = master - lr * weight_decay * master
        avg = beta1 * avg + (1 - beta1) * grad
        avg_sq = beta2 * avg_sq + (1 - beta2) * grad * grad
        step_size = lr / (1 - tl.math.exp2(step * log2_beta1))
        denom = tl.sqrt(avg_sq) / tl.sqrt(1 - tl.math.exp2(step * log2_beta2)) + eps
        master = master - step_size * avg / denom
        tl.store(master_ptr + at, master, mask=on)
        tl.store(avg_ptr + at, avg, mask=on)
        tl.store(avg_sq_ptr + at, avg_sq, mask=on)
        tl.store(weight_ptr + at, master.to(weight_ptr.dtype.element_ty), mask=on)

    return adamw_kernel
