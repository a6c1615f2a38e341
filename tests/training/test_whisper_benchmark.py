"""``benchmarks/whisper_throughput.py --tiny`` end to end on CPU: every variant trains (the seq2seq example's recipe
and voxplug's TrainingRun) and the results file holds each one's throughput, loss and FLOP count."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("seq2seq", "seq2seq-lora", "voxplug-lora", "voxplug-full", "voxplug-full-encoder")


@pytest.mark.slow  # five tiny training runs in subprocess: about 30 s on 2 cores
def test_the_tiny_whisper_benchmark_runs_every_variant(tmp_path: Path) -> None:
    script = [sys.executable, "benchmarks/whisper_throughput.py"]
    # as on the GPU machine, which lacks the package the tokenizer is built from: saved here, passed there
    saved = subprocess.run([*script, "--save-tokenizer", str(tmp_path / "tok")], cwd=REPO, capture_output=True)
    assert saved.returncode == 0 and (tmp_path / "tok" / "tokenizer.json").is_file(), saved.stderr[-4000:]
    command = [*script, "--tiny", "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path), "--name", "tiny"]
    command += ["--variants", ",".join(VARIANTS)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "tiny.json").read_text(encoding="utf-8"))
    assert results["shape"] == "tiny" and results["device"] == "cpu"
    assert results["shape_config"]["num_mel_bins"] == 128 and results["shape_config"]["vocab_size"] == 51866
    assert set(results["variants"]) == set(VARIANTS)
    for name, entry in results["variants"].items():
        assert entry["samples_per_s"] > 0 and entry["audio_s_per_s"] > 0, name
        assert math.isfinite(entry["final_loss"]), name
        assert entry["useful_tflops_per_sample"] > 0 and entry["timed_steps"] == 2, name
        assert entry["mfu"] is None  # a CPU has no datasheet peak
    regimes = {name: entry["regime"] for name, entry in results["variants"].items()}
    assert regimes["seq2seq"]["encoder_trains"] and regimes["seq2seq"]["decoder_trains"]
    assert regimes["seq2seq-lora"]["encoder_targets"] == ["q", "v"] and regimes["seq2seq-lora"]["lora_r"] == 32
    assert not regimes["voxplug-lora"]["encoder_targets"] and not regimes["voxplug-full"]["encoder_trains"]
    assert regimes["voxplug-full-encoder"]["encoder_trains"]
    # training the encoder costs more per sample than freezing it; LoRA on a frozen encoder least
    flops = {name: entry["useful_tflops_per_sample"] for name, entry in results["variants"].items()}
    assert flops["voxplug-lora"] < flops["voxplug-full"] < flops["voxplug-full-encoder"]
    assert set(results["ratios"]) == {
        "voxplug-lora/seq2seq-lora",
        "voxplug-full/seq2seq",
        "voxplug-full-encoder/seq2seq",
    }
