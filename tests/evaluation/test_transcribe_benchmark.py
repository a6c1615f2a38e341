"""``benchmarks/transcribe_throughput.py --device cpu --tiny`` runs the GPU suite's code path end to end, through
its command line, and writes what the lead reads on the GPU: rates, step times, the decoder's shapes and the token
comparison with the plain loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_writes_every_variant_and_the_same_tokens(tmp_path: Path) -> None:
    out = tmp_path / "results" / "smoke.json"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "transcribe_throughput.py"),
        "--device",
        "cpu",
        "--tiny",
        "--clips",
        "12",
        "--baseline-clips",
        "8",
        "--own-batch",
        "8",
        "--variants",
        "voxplug,plain-b8,voxplug-b8,library-b8",
        "--out",
        str(out),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(out.read_text())
    variants = results["variants"]
    assert set(variants) == {"voxplug", "plain-b8", "voxplug-b8", "library-b8"}
    for name, entry in variants.items():
        assert entry["clips_per_s"] > 0 and entry["decoded_tokens"] > 0, (name, entry)
    assert variants["voxplug"]["clips"] == 12 and variants["plain-b8"]["clips"] == 8
    assert variants["voxplug"]["steps"] > 0 and variants["voxplug"]["decode_ms_per_step"] > 0
    for name in ("voxplug", "voxplug-b8", "library-b8"):  # fp32 on the CPU: the same tokens as the plain loop
        same = variants[name]["tokens_vs_plain_b8"]
        assert same["identical_clips"] == same["clips_compared"] == 8, (name, same)
    assert results["ratios"]["voxplug/plain-b8"] > 0
    table = finished.stdout.split("\nvoxtral on cpu", 1)[1].splitlines()  # printed last, then the JSON's path
    assert table[1].split()[:3] == ["variant", "batch", "clips/s"] and table[-1] == f"results: {out}"
