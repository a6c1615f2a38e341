"""Where the GPU idles in a profiled training or decoding step: the gaps between its kernels in a Chrome trace.

``train_throughput.py --trace-dir DIR`` writes the profiled steps' timeline there. This reads such a trace and
writes, as JSON, the span from the first kernel to the last, the GPU's idle time in it, and the longest gaps with
the kernels on either side and the host operations that ran meanwhile: the host work the GPU waited for.

    python benchmarks/trace_gaps.py DIR/trace-full-masters-nockpt.json --out gaps.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Trace categories of work on the GPU, and of work on the host.
GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")
HOST_WORK = ("cpu_op", "user_annotation", "python_function", "cuda_runtime")


def idle_gaps(trace: dict[str, Any], longest: int = 12, min_us: float = 50.0) -> dict[str, Any]:
    """The GPU's idle stretches in ``trace`` (a Chrome trace's JSON): span, idle total, idle in gaps of at least
    ``min_us``, and the ``longest`` gaps, each with what ran on the host meanwhile."""
    events = trace.get("traceEvents", [])
    gpu = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), str(e.get("name", "")))
        for e in events
        if e.get("cat") in GPU_WORK and "ts" in e
    )
    if not gpu:
        return {"gpu_events": 0}
    host = [e for e in events if e.get("cat") in HOST_WORK and "ts" in e]
    gaps = []
    busy_until, last = gpu[0][1], gpu[0][2]
    for start, stop, name in gpu[1:]:
        if start > busy_until:
            gaps.append({"us": start - busy_until, "from": busy_until, "to": start, "after": last, "before": name})
        if stop > busy_until:
            busy_until, last = stop, name
    gaps.sort(key=lambda gap: -gap["us"])
    for gap in gaps[:longest]:
        inside = [
            e for e in host if float(e["ts"]) < gap["to"] and float(e["ts"]) + float(e.get("dur", 0)) > gap["from"]
        ]
        # the innermost host operations of the gap: those no longer than the gap by much
        short = [e for e in inside if float(e.get("dur", 0)) <= 4 * gap["us"] + 2000]
        gap["host"] = sorted({str(e.get("name", ""))[:80] for e in short})[:8]
    span = gpu[-1][1] - gpu[0][0]
    return {
        "gpu_events": len(gpu),  # kernels, copies and memsets
        "span_ms": round(span / 1e3, 3),
        "idle_ms": round(sum(gap["us"] for gap in gaps) / 1e3, 3),
        f"idle_in_gaps_over_{int(min_us)}us_ms": round(sum(g["us"] for g in gaps if g["us"] >= min_us) / 1e3, 3),
        "gaps": [
            {
                "ms": round(gap["us"] / 1e3, 3),
                "after": gap["after"][:80],
                "before": gap["before"][:80],
                "host": gap.get("host", []),
            }
            for gap in gaps[:longest]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="+", type=Path, help="Chrome traces (train_throughput.py --trace-dir)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file (default: standard output)")
    parser.add_argument("--longest", type=int, default=12, help="how many of the longest gaps to list")
    args = parser.parse_args(argv)
    results = {str(path): idle_gaps(json.loads(path.read_text()), args.longest) for path in args.traces}
    text = json.dumps(results, indent=1)
    if args.out is None:
        sys.stdout.write(text + "\n")
    else:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
