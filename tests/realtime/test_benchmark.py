"""The Voxtral Realtime LoRA benchmark: its CPU smoke mode runs the real training path and reports consistent
numbers, and its FLOP count reads the real 4B shape (built on the meta device: no memory, no weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARK = REPO / "benchmarks" / "realtime_throughput.py"


def load_benchmark():
    import importlib.util

    if str(BENCHMARK.parent) not in sys.path:  # it imports model_flops from beside it, as when run as a script
        sys.path.insert(0, str(BENCHMARK.parent))
    spec = importlib.util.spec_from_file_location("realtime_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_flop_count_reads_the_real_4b_shape() -> None:
    import torch
    from transformers import VoxtralRealtimeConfig, VoxtralRealtimeForConditionalGeneration

    bench = load_benchmark()
    with torch.device("meta"):
        model = VoxtralRealtimeForConditionalGeneration(VoxtralRealtimeConfig())
    shape = bench.model_shape(model, lora_r=8)
    assert 4.4e9 < sum(p.numel() for p in model.parameters()) < 4.45e9
    assert 0.95e9 < shape.encoder_linear < 0.98e9  # the report's ~0.97 B causal encoder
    assert 3.0e9 < shape.decoder_linear < 3.05e9 and shape.head == 131072 * 3072
    assert (shape.encoder_window, shape.decoder_window, shape.decoder_attention_width) == (750, 8192, 4096)
    assert bench.causal_pairs(4, 750) == 10 and bench.causal_pairs(1000, 750) == 750 * 751 // 2 + 250 * 750
    parts = bench.useful_flops(shape, positions=100, label_positions=61)
    assert parts["decoder_linear"] == 4 * shape.decoder_linear * 100 and parts["head"] == 4 * shape.head * 61
    assert parts["encoder_linear"] == 2 * shape.encoder_linear * 400  # 4 encoder frames per decoder position


@pytest.mark.slow
def test_the_tiny_smoke_mode_trains_and_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--tiny", "--out", str(tmp_path), "--peak-tflops", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "realtime_lora_tiny.json").read_text())
    assert report["timed_steps"] == 3 and report["samples_per_s"] > 0 and report["audio_s_per_s"] > 0
    total = sum(report["useful_tflops_per_sample_by_part"].values())
    assert total == pytest.approx(report["useful_tflops_per_sample"], abs=1e-4)
    assert report["mfu"] == pytest.approx(report["achieved_tflops"] / 1.0, abs=1e-3)
    assert report["parameters"] > 0 and report["peak_memory_gb"] is None
