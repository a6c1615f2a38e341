"""AdamW over fp32 master weights in one pass: the model's half-precision gradient in, its weight out.

:class:`~voxplug.training.master_weights.MasterWeights` steps a chunk of masters in three passes over memory: the
model's bf16 gradients copied into an fp32 buffer, the optimizer's own fused AdamW over the masters, and the masters
copied back into the model's bf16 weights. That moves about 40 bytes a weight. :func:`adamw_step` does the same
arithmetic in one Triton kernel per weight: it reads the 2-byte gradient and the fp32 master and moments, and writes
those and the 2-byte weight, 28 bytes a weight. Full fine-tuning's optimizer is bound by memory bandwidth, so the step
takes about 30% less time.

The arithmetic is ``torch.optim.AdamW``'s (its fused kernel's order of operations). The bias corrections come from
the optimizer's own step counters on the device, so the host never waits to read them. The optimizer's state stays
its own: the moments and the step counter are the tensors it created at its first step, so a checkpoint saves and
resumes as before.
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
    """Whether :func:`adamw_step` can step ``optimizer``'s masters on ``device``: ``torch.optim.AdamW`` without
    amsgrad, maximize or differentiable steps and with both betas strictly between 0 and 1, on a CUDA device where
    Triton is installed."""
    if type(optimizer) is not torch.optim.AdamW or device.type != "cuda" or torch.version.hip is not None:
        return False
    plain = all(
        not group.get("amsgrad")
        and not group.get("maximize")
        and not group.get("differentiable")
        and all(0 < float(beta) < 1 for beta in group["betas"])
        for group in optimizer.param_groups
    )
    return plain and _kernel() is not None


def adamw_step(optimizer: torch.optim.Optimizer, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """One AdamW step of ``optimizer`` (a ``torch.optim.AdamW`` over fp32 masters) for each ``(weight, master)``
    pair whose half-precision ``weight`` has a gradient: the master and its moments updated from that gradient, and
    the weight set to the master's rounding. Returns False, changing nothing, where the optimizer has no state yet
    for every master (its own first step creates it) or a tensor is laid out otherwise than the kernel reads."""
    state = optimizer.state
    groups = {master: group for group in optimizer.param_groups for master in group["params"]}
    for weight, master in pairs:
        saved = state.get(master)
        if not saved or "exp_avg" not in saved or master not in groups:
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
    for weight, master in pairs:
        group, saved = groups[master], state[master]
        beta1, beta2 = group["betas"]
        count = master.numel()
        if count == 0:
            continue
        with torch.cuda.device(master.device) if master.is_cuda else nullcontext():
            kernel[(-(-count // BLOCK),)](
                weight.grad, master, saved["exp_avg"], saved["exp_avg_sq"], weight, saved["step"], count,
                float(group["lr"]), float(beta1), float(beta2), math.log2(beta1), math.log2(beta2),
                float(group["eps"]), float(group["weight_decay"]), BLOCK=BLOCK,
            )  # fmt: skip
    return True


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
