"""AdamW over fp32 masters in one pass (``masters_adamw``), in Triton's interpreter on the CPU: the same masters,
moments and weights as ``torch.optim.AdamW`` stepping fp32 copies, and the unfused path wherever it cannot run.

The interpreter's bfloat16 is unreliable, so the model here holds float16 weights; the kernel reads and writes
either half precision the same way.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":  # tests/conftest.py interprets where no CUDA device is
    pytest.skip("runs the kernel in Triton's interpreter, on the CPU", allow_module_level=True)

from voxplug.training.master_weights import MasterWeights
from voxplug.training.speed.masters_adamw import adamw_applies, adamw_step

from .masters_toy import half_params, step_beside_fp32, two_groups


def test_one_pass_steps_as_torch_adamw_over_fp32_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks and two groups, a scheduled rate, betas of the user's: the first step creates the
    optimizer's state the usual way; every later one runs the kernel and keeps that state."""
    import voxplug.training.master_weights as master_weights

    runs: list[bool] = []
    monkeypatch.setattr(master_weights, "adamw_step", lambda *a: runs.append(adamw_step(*a)) or runs[-1])
    params = half_params((3000, 7, 2500, 5), torch.float16)  # more than one block of the kernel, and its masked tail
    start = [param.detach().clone() for param in params]
    reference = [torch.nn.Parameter(p.detach().float()) for p in params]
    options = {"lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-6}
    fused = MasterWeights(two_groups(params), inner=torch.optim.AdamW, inner_kwargs=options, chunk_elements=3100)
    fused.fused = True  # on the CPU, in Triton's interpreter
    plain = torch.optim.AdamW(two_groups(reference), **options)
    step_beside_fp32(fused, plain, params, reference)
    assert len(fused.chunks) == 2
    assert runs == [False, False] + [True, True] * 4  # each chunk: its state made at step 1, then the kernel
    masters = [master for chunk in fused.chunks for master in chunk.masters]
    for master, ref, param in zip(masters, reference, params, strict=True):
        torch.testing.assert_close(master, ref.detach(), rtol=2e-6, atol=2e-7)
        assert torch.equal(param, master.half())  # the weight is the master's rounding
        ours, theirs = fused.state[master], plain.state[ref]
        torch.testing.assert_close(ours["exp_avg"], theirs["exp_avg"], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours["exp_avg_sq"], theirs["exp_avg_sq"], rtol=1e-6, atol=1e-9)
        assert float(ours["step"]) == float(theirs["step"]) == 5
    assert all((param != before).float().mean() > 0.9 for param, before in zip(params, start, strict=True))


def test_the_unfused_path_runs_where_the_kernel_cannot() -> None:
    params = half_params((40, 8), torch.float16)
    wrapped = MasterWeights([{"params": params}], inner=torch.optim.AdamW, inner_kwargs={"lr": 1e-3})
    assert wrapped.fused is False  # asked for by default, served on CUDA devices only
    (chunk,) = wrapped.chunks
    pairs = list(zip(chunk.params, chunk.masters, strict=True))
    for param in params:
        param.grad = torch.ones_like(param)
    assert adamw_step(chunk.optimizer, pairs) is False  # no state before the optimizer's own first step
    wrapped.step()
    steps = [float(chunk.optimizer.state[m]["step"]) for m in chunk.masters]
    params[0].grad = torch.ones(80, dtype=torch.float16)[::2]  # a strided gradient
    assert adamw_step(chunk.optimizer, pairs) is False
    assert [float(chunk.optimizer.state[m]["step"]) for m in chunk.masters] == steps  # nothing changed
    cuda = torch.device("cuda")
    assert not adamw_applies(chunk.optimizer, torch.device("cpu"))
    assert not adamw_applies(chunk.optimizer, cuda)  # its step counters stay on the host
    for kwargs in ({"fused": True}, {"capturable": True}):
        on_device = MasterWeights([{"params": params}], inner=torch.optim.AdamW, inner_kwargs=kwargs)
        assert adamw_applies(on_device.chunks[0].optimizer, cuda), kwargs
    for inner, kwargs in (
        (torch.optim.AdamW, {"fused": True, "amsgrad": True}),
        (torch.optim.AdamW, {"fused": True, "maximize": True}),
        (torch.optim.AdamW, {"fused": True, "betas": (0.0, 0.99)}),
        (torch.optim.Adam, {}),
        (torch.optim.SGD, {"lr": 0.1}),
    ):
        other = MasterWeights([{"params": params}], inner=inner, inner_kwargs=kwargs)
        assert not adamw_applies(other.chunks[0].optimizer, cuda), (inner, kwargs)


def test_a_resumed_one_pass_optimizer_continues_as_the_uninterrupted_one() -> None:
    """The kernel steps the optimizer's own state: saved after two steps and loaded into a new optimizer over a
    copy of the weights, it continues to the same masters, weights and step count as the run that never stopped."""
    generator = torch.Generator().manual_seed(2)
    grads = [[torch.randn(size, generator=generator).half() for size in (3000, 7)] for _ in range(4)]

    def optimizer(params: list[Any]) -> MasterWeights:
        built = MasterWeights([{"params": params}], inner=torch.optim.AdamW, inner_kwargs={"lr": 1e-2})
        built.fused = True
        return built

    def steps(params: list[Any], opt: MasterWeights, which: range) -> None:
        for step in which:
            for param, grad in zip(params, grads[step], strict=True):
                param.grad = grad.clone()
            opt.step()
            opt.zero_grad()

    through = half_params((3000, 7), torch.float16, seed=3)
    whole = optimizer(through)
    steps(through, whole, range(4))
    first = half_params((3000, 7), torch.float16, seed=3)
    before = optimizer(first)
    steps(first, before, range(2))
    saved = before.state_dict()
    again = [torch.nn.Parameter(p.detach().clone()) for p in first]
    resumed = optimizer(again)
    resumed.load_state_dict(saved)
    steps(again, resumed, range(2, 4))
    for ours, theirs in zip(resumed.chunks[0].masters, whole.chunks[0].masters, strict=True):
        assert torch.equal(ours, theirs)
        assert float(resumed.state[ours]["step"]) == float(whole.state[theirs]["step"]) == 4
    assert all(torch.equal(p, q) for p, q in zip(again, through, strict=True))
