"""``benchmarks/trace_gaps.py`` finds the GPU's idle stretches in a real profiler trace and names the host work
that ran in them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_gaps_of_a_trace_and_the_host_work_inside_them(tmp_path: Path) -> None:
    """A hand-written timeline (the categories PyTorch's profiler writes): two kernels overlapping, a gap of
    600 us in which the host read a value back, a shorter one, and events that are no GPU work."""
    trace = {
        "traceEvents": [
            {"cat": "kernel", "name": "gemm", "ts": 0, "dur": 100},
            {"cat": "kernel", "name": "add", "ts": 300, "dur": 100},
            {"cat": "gpu_memcpy", "name": "Memcpy DtoH", "ts": 350, "dur": 10},
            {"cat": "kernel", "name": "norm", "ts": 1000, "dur": 5},
            {"cat": "cpu_op", "name": "aten::item", "ts": 420, "dur": 500},
            {"cat": "cpu_op", "name": "aten::whole_step", "ts": 0, "dur": 100000},
            {"cat": "gpu_user_annotation", "name": "Optimizer.step", "ts": 0, "dur": 2000},
        ]
    }
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    out = tmp_path / "gaps.json"
    script = REPO / "benchmarks" / "trace_gaps.py"
    finished = subprocess.run([sys.executable, str(script), str(path), "--out", str(out)], capture_output=True)
    assert finished.returncode == 0, finished.stderr
    result = json.loads(out.read_text())[str(path)]
    assert result["gpu_events"] == 4 and result["span_ms"] == 1.005
    assert result["idle_ms"] == 0.8  # 100-300 and 400-1000; the copy inside the second kernel idles nothing
    assert [gap["ms"] for gap in result["gaps"]] == [0.6, 0.2]
    assert result["gaps"][0]["after"] == "add" and result["gaps"][0]["before"] == "norm"
    assert result["gaps"][0]["host"] == ["aten::item"]  # not the step-long operation around everything
    assert result["gaps"][1]["host"] == []
