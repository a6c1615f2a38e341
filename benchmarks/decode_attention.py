"""The decoding step's attention alone: voxplug's Triton kernel (several tiles) against FlashAttention-2's
variable-length kernel, in one process, at Voxtral Mini's heads and a few batch sizes and cache lengths.

Each kernel attends one query per head to every row's first ``length`` positions of a position-major bf16 cache
(what ``voxplug_voxtral.generation.LengthAttention`` reads), replayed from a CUDA graph of 20 calls so that launches
do not count; the calls take turns over copies of the cache that together exceed the card's L2 cache, so each
reads memory. Reported per case: microseconds per call, the rate at which the cache was read (its bytes over the
time), that rate over the card's measured copy rate, each Triton tile's ratio to FlashAttention, and the largest
difference from an fp32 SDPA reference. GPU only.

    python benchmarks/decode_attention.py --out benchmarks/results/decode_attention-<card>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: The cache copies a case takes turns over hold at least this much (an H100's or H200's L2 holds 50 MB).
L2_CLEARING_BYTES = 256 * 2**20


def timed_us(call: Any, copies: int, repeats: int = 20, replays: int = 5) -> float:
    """Microseconds per ``call(copy)``, the fastest of ``replays`` replays of a graph of ``repeats`` calls that
    take the ``copies`` in turn."""
    import torch

    for copy in range(copies):
        call(copy)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for index in range(repeats):
            call(index % copies)
    best = float("inf")
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / repeats)
    return best


def case(rows: int, length: int, tiles: list[tuple[int, int, int]], copy_gbps: float | None) -> dict[str, Any]:
    import torch
    from voxplug_voxtral.decode_kernels import attention_splits, decode_attention
    from voxplug_voxtral.generation import LengthAttention

    from voxplug.testing.attention import masked_sdpa

    heads, kv_heads, dim, positions = 32, 8, 128, length + 64
    generator = torch.Generator(device="cuda").manual_seed(0)
    keys, values = (
        torch.randn(rows, positions, kv_heads, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(2)
    )
    query = torch.randn(rows, heads, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
    position = torch.tensor(length - 1, device="cuda")
    scale = dim**-0.5
    reference = masked_sdpa(query.unsqueeze(2), keys, values, length - 1, scale)
    cache_bytes = 2 * rows * length * kv_heads * dim * keys.element_size()
    copies = max(1, -(-L2_CLEARING_BYTES // (2 * keys.numel() * keys.element_size())))
    caches = [(keys, values)] + [(keys.clone(), values.clone()) for _ in range(copies - 1)]
    flash = LengthAttention(keys, rows, positions)
    kernels: dict[str, Any] = {
        "flash-varlen": lambda copy: flash.attend(query.unsqueeze(2), *caches[copy], position, scale)
    }
    for block, warps, stages in tiles:
        splits = attention_splits(rows, kv_heads, positions, keys.device, block)
        for split in sorted({1, splits}):
            name = f"triton-{block}x{warps}x{stages}-s{split}"
            kernels[name] = lambda copy, b=block, w=warps, s=stages, p=split: decode_attention(
                query, *caches[copy], position, scale, p, b, w, s
            )
    out: dict[str, Any] = {
        "rows": rows,
        "length": length,
        "cache_mb": round(cache_bytes / 1e6, 1),
        "cache_copies": copies,
        "kernels": {},
    }
    for name, call in kernels.items():
        try:
            difference = (call(0).float() - reference).abs().max().item()
            us = timed_us(call, copies)
        except Exception as exc:  # a tile that does not compile on this card is reported, not fatal
            out["kernels"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            continue
        gbps = cache_bytes / us / 1e3
        entry = {"us": round(us, 1), "read_gbps": round(gbps), "max_abs_difference": round(difference, 5)}
        if copy_gbps:
            entry["of_copy_rate"] = round(gbps / copy_gbps, 3)
        out["kernels"][name] = entry
    base = (out["kernels"].get("flash-varlen") or {}).get("us")
    if base:
        for entry in out["kernels"].values():
            if "us" in entry:
                entry["flash_over_this"] = round(base / entry["us"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="256,64,8", help="batch sizes")
    parser.add_argument("--lengths", default="447,1200", help="filled positions per row")
    parser.add_argument("--tiles", default="64x4x2,64x4x3,128x4x2,128x8x2,32x4x3", help="BLOCKxWARPSxSTAGES,...")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch
    from transcribe_throughput import copy_bandwidth

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    tiles = [tuple(int(n) for n in tile.split("x")) for tile in args.tiles.split(",") if tile]
    copy_gbps = copy_bandwidth("cuda")
    results: dict[str, Any] = {
        "card": torch.cuda.get_device_name(),
        "versions": {"torch": torch.__version__},
        "measured_copy_gbps": copy_gbps and round(copy_gbps),
        "cases": [],
    }
    try:
        import triton

        results["versions"]["triton"] = triton.__version__
    except ImportError:
        pass
    for rows in (int(n) for n in args.rows.split(",")):
        for length in (int(n) for n in args.lengths.split(",")):
            results["cases"].append(case(rows, length, tiles, copy_gbps))
            print(json.dumps(results["cases"][-1]), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
