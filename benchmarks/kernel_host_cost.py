"""Host cost of the per-layer pieces of an eager LoRA step on a GPU: what each call costs the CPU to queue.

Eager LoRA training of Voxtral-Mini on one GPU is bound by the host (benchmarks/NOTES.md): the GPU idles while the
CPU queues ~2,000 small kernels a step. This measures, for each way of computing one piece of a Llama layer, the
host time of a forward and backward call (microseconds, median of ``--repeats`` rounds of ``--calls`` calls), on
inputs small enough (64 tokens, Voxtral-Mini's widths) that the GPU always keeps up: the time is the host's, not
the arithmetic's. Ratios are against the first entry of each piece, measured in the same run.

Pieces: a matmul (the BLAS library PyTorch picks, cuBLAS, cuBLASLt; forward only, the setting's own cost
included), RMSNorm (transformers' eager, Liger's Triton kernel, ``torch.nn.functional.rms_norm``), SwiGLU (eager
``silu(gate) * up``, Liger, voxplug's ``SiluMul``), RoPE (eager, Liger, voxplug's ``RotaryEmbedding``), a LoRA
linear layer (PEFT's forward over a bf16 base with fp32 adapters under autocast, and the one-node forward of
``plugins/voxplug_trainers/lora_linear.py``) and LoRA q/k/v projections on one input (PEFT's, one node a layer,
one node for the three).

    python benchmarks/kernel_host_cost.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, HEAD_DIM = 3072, 8192, 32, 8, 128  # Voxtral-Mini-3B's language model


def host_us(step: Callable[[], Any], calls: int, repeats: int) -> float:
    """Median host microseconds per ``step()`` call, the GPU idle at the start of each round."""
    import torch

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    rounds = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            step()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    torch.cuda.synchronize()
    return statistics.median(rounds)


def op_profile(step: Callable[[], Any], calls: int) -> dict[str, Any]:
    """Self host time (us per call) and count per call of the ops of ``calls`` calls, under the profiler."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    events = sorted(profiler.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return {
        e.key: {"self_us": round(e.self_cpu_time_total / calls, 1), "count": round(e.count / calls, 2)}
        for e in events[:20]
    }


def blas_matmul(library: str, flat: Any, weight: Any) -> Callable[[], Any]:
    """One bf16 ``x W^T`` a call, with ``torch.backends.cuda.preferred_blas_library(library)`` set around it."""
    import torch

    def step() -> Any:
        previous = torch.backends.cuda.preferred_blas_library()
        torch.backends.cuda.preferred_blas_library(previous if library == "default" else library)  # same cost
        try:
            return torch.mm(flat, weight.t())
        finally:
            torch.backends.cuda.preferred_blas_library(previous)

    return step


def pieces(tokens: int) -> dict[str, dict[str, Callable[[], Any]]]:
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama import modeling_llama

    device, bf16 = "cuda", torch.bfloat16
    x = torch.randn(1, tokens, HIDDEN, device=device, dtype=bf16, requires_grad=True)

    def fwd_bwd(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            out = forward()
            out.backward(torch.ones_like(out))

        return step

    result: dict[str, dict[str, Callable[[], Any]]] = {
        "matmul": {},
        "rms_norm": {},
        "swiglu": {},
        "rope": {},
        "lora_linear": {},
        "lora_qkv": {},
    }
    weight = torch.randn(HEADS * HEAD_DIM, HIDDEN, device=device, dtype=bf16)
    flat = x.detach().reshape(-1, HIDDEN)
    for library in ("default", "cublas", "cublaslt"):  # forward only: one GEMM a call
        result["matmul"][library] = blas_matmul(library, flat, weight)
    norm = modeling_llama.LlamaRMSNorm(HIDDEN).to(device, bf16)
    result["rms_norm"]["transformers"] = fwd_bwd(lambda: norm(x))
    result["rms_norm"]["torch_rms_norm"] = fwd_bwd(
        lambda: torch.nn.functional.rms_norm(x, (HIDDEN,), norm.weight, norm.variance_epsilon)
    )
    gate = torch.randn(1, tokens, INTERMEDIATE, device=device, dtype=bf16, requires_grad=True)
    up = torch.randn_like(gate, requires_grad=True)
    result["swiglu"]["eager"] = fwd_bwd(lambda: torch.nn.functional.silu(gate) * up)
    q = torch.randn(1, HEADS, tokens, HEAD_DIM, device=device, dtype=bf16, requires_grad=True)
    k = torch.randn(1, KV_HEADS, tokens, HEAD_DIM, device=device, dtype=bf16, requires_grad=True)
    config = LlamaConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=128)
    rotary = modeling_llama.LlamaRotaryEmbedding(config).to(device)
    cos, sin = rotary(x, torch.arange(tokens, device=device)[None])
    eager_rope = modeling_llama.apply_rotary_pos_emb
    result["rope"]["transformers"] = fwd_bwd(lambda: sum(t.sum() for t in eager_rope(q, k, cos, sin)))
    try:
        from liger_kernel.ops.rms_norm import LigerRMSNormFunction
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
        from liger_kernel.transformers.rope import liger_rotary_pos_emb

        result["rms_norm"]["liger"] = fwd_bwd(
            lambda: LigerRMSNormFunction.apply(x, norm.weight, norm.variance_epsilon, 0.0, "llama", False)
        )
        result["swiglu"]["liger"] = fwd_bwd(lambda: LigerSiLUMulFunction.apply(gate, up))
        result["rope"]["liger"] = fwd_bwd(lambda: sum(t.sum() for t in liger_rotary_pos_emb(q, k, cos, sin)))
    except ImportError as exc:
        result["rms_norm"]["liger"] = exc  # type: ignore[assignment]
    from voxplug_voxtral.kernels import RotaryEmbedding, SiluMul

    result["swiglu"]["torch_silu_mul"] = fwd_bwd(lambda: SiluMul.apply(gate, up))
    result["rope"]["torch_rotary"] = fwd_bwd(lambda: sum(t.sum() for t in RotaryEmbedding.apply(q, k, cos, sin)))
    result["lora_linear"].update(lora_steps(x, fwd_bwd, ("q_proj",)))
    result["lora_qkv"].update(lora_steps(x, fwd_bwd, ("q_proj", "k_proj", "v_proj")))
    return result


def lora_steps(
    x: Any, fwd_bwd: Callable[[Callable[[], Any]], Callable[[], None]], names: tuple[str, ...]
) -> dict[str, Callable[[], None]]:
    """The ``names`` projections (q/k/v) of an attention block on one input, with LoRA r 8 as the ``lora`` trainer
    builds it: PEFT's forward, the one-node forward, and (for more than one) one node for them all."""
    import torch
    from peft import LoraConfig, get_peft_model
    from voxplug_trainers.lora import skip_input_casts_under_autocast
    from voxplug_trainers.lora_linear import use_one_node_lora

    widths = {"q_proj": HEADS * HEAD_DIM, "k_proj": KV_HEADS * HEAD_DIM, "v_proj": KV_HEADS * HEAD_DIM}

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name in names:
                setattr(self, name, torch.nn.Linear(HIDDEN, widths[name], bias=False))

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            outs = [getattr(self, name)(hidden) for name in names]
            return outs[0] if len(outs) == 1 else sum(out.sum() for out in outs)

    def build(way: str) -> Callable[[], torch.Tensor]:
        config = LoraConfig(r=8, lora_alpha=32, target_modules=list(names))
        model = get_peft_model(Block().to("cuda", torch.bfloat16), config)
        if way != "peft":
            use_one_node_lora(model, [names] if way == "grouped" else ())
        skip_input_casts_under_autocast(model)  # as the lora trainer does (it leaves one-node layers alone)

        def forward() -> torch.Tensor:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x)

        return forward

    ways = ["peft", "one_node"] + (["grouped"] if len(names) > 1 else [])
    return {way: fwd_bwd(build(way)) for way in ways}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("needs a CUDA GPU (host costs of GPU kernel launches)")
        return 1
    results: dict[str, Any] = {
        "benchmark": "kernel_host_cost",
        "card": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "tokens": args.tokens,
        "calls": args.calls,
        "repeats": args.repeats,
        "host_us_per_forward_backward": {},
        "ratio_to_first": {},
    }
    for piece, ways in pieces(args.tokens).items():
        timings = {}
        for name, step in ways.items():
            if isinstance(step, Exception):
                timings[name] = f"unavailable: {step}"
                continue
            try:
                timings[name] = round(host_us(step, args.calls, args.repeats), 1)
            except Exception as exc:  # one way failing must not lose the others
                timings[name] = f"{type(exc).__name__}: {exc}"[:300]
        results["host_us_per_forward_backward"][piece] = timings
        if piece.startswith("lora_"):  # where each way's host time goes, op by op
            results[f"{piece}_host_ops"] = {name: op_profile(step, args.calls) for name, step in ways.items()}
        numbers = {k: v for k, v in timings.items() if isinstance(v, float)}
        if numbers:
            first = next(iter(numbers.values()))
            results["ratio_to_first"][piece] = {k: round(v / first, 3) for k, v in numbers.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    slug = results["card"].lower().replace(" ", "-")
    path = args.out / f"kernel_host_cost-{slug}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
