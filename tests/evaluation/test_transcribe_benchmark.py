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
    prepare = results["host_prepare_ms_per_clip"]  # on the CPU the fast inputs are the processor's, bit for bit
    assert prepare["clips"] == 12 and prepare["processor"] > 0 and prepare["fast_prompts_cached"] > 0, prepare
    assert prepare["same_prompts"] and prepare["features_max_abs_difference"] == 0.0, prepare
    table = finished.stdout.split("\nvoxtral on cpu", 1)[1].splitlines()  # printed last, then the JSON's path
    assert table[1].split()[:3] == ["variant", "batch", "clips/s"] and table[-1] == f"results: {out}"


@pytest.mark.slow
def test_attention_variants_and_step_profiles(tmp_path: Path) -> None:
    out = tmp_path / "attention.json"
    command = [sys.executable, str(REPO / "benchmarks" / "transcribe_throughput.py"), "--device", "cpu", "--tiny"]
    command += ["--clips", "8", "--own-batch", "4", "--variants", "voxplug"]
    command += ["--attention", "gqa,packed:math,triton:32x4x3"]
    command += ["--profile-steps", "2", "--first-use", "3", "--sync-report", "3", "--out", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(out.read_text())
    variants = results["variants"]
    assert set(variants) == {"voxplug", "attn-gqa", "attn-packed:math", "attn-triton:32x4x3"}
    # fp32 on the CPU (triton: SDPA over the length, as where Triton does not serve): the same tokens
    for name in ("attn-gqa", "attn-packed:math", "attn-triton:32x4x3"):
        same = variants[name]["tokens_vs_voxplug"]
        assert same["identical_clips"] == same["clips_compared"] == 8, (name, same)
    profiles = results["step_profiles"]
    assert set(profiles) == {"packed", "gqa", "packed:math", "triton:32x4x3"}
    for spec, profile in profiles.items():
        assert profile["rows"] == 4 and profile["steps"] == 2, (spec, profile)
        assert profile["kernel_ms_per_step"] > 0 and "attention" in profile["by_kind_ms"], (spec, profile)
        prompt_pass = profile["prompt_pass"]  # the encoder and the prompts' forward pass, which dwarf one step
        assert prompt_pass["kernel_ms"] > profile["kernel_ms_per_step"] and "matmul" in prompt_pass["by_kind_ms"]
        parts = prompt_pass["by_part_ms"]  # the encoder, the projector and the language model, timed apart
        assert set(parts) == {"audio_tower", "multi_modal_projector", "language_model"}, parts
        assert all(ms > 0 for ms in parts.values()), parts
    first = results["first_use"]  # the process's first transcription, then the same clips warm, then others
    assert first["clips"] == 3 and first["first"]["seconds_profiled"] > 0 and first["other_clips"]["seconds"] > 0
    assert "aten::mm" in {op["op"] for op in first["same_again"]["top_host_ops"]}
    assert results["sync_report"] == {"skipped": "no CUDA device"}  # it reads CUDA's synchronisations only


@pytest.mark.slow
def test_a_malformed_attention_variant_is_refused_before_anything_runs(tmp_path: Path) -> None:
    script = str(REPO / "benchmarks" / "transcribe_throughput.py")
    for spec, message in (
        ("repeat", "--attention repeat: attention layout 'repeat'"),
        ("triton:64x4", "triton tile '64x4': expected BLOCKxWARPSxSTAGES"),
    ):
        finished = subprocess.run(
            [sys.executable, script, "--device", "cpu", "--tiny", "--attention", spec],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert finished.returncode == 2 and message in finished.stderr, finished.stderr[-2000:]


@pytest.mark.slow
def test_lora_variants_compare_peft_forward_with_folded_layers(tmp_path: Path) -> None:
    out = tmp_path / "lora.json"
    command = [sys.executable, str(REPO / "benchmarks" / "transcribe_throughput.py"), "--device", "cpu", "--tiny"]
    command += ["--clips", "6", "--own-batch", "4", "--variants", "voxplug", "--lora-clips", "5"]
    command += ["--profile-steps", "2", "--out", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(out.read_text())
    variants = results["variants"]
    assert set(variants) == {"voxplug", "lora-peft", "lora-folded"}
    assert variants["lora-peft"]["clips"] == variants["lora-folded"]["clips"] == 5
    same = variants["lora-folded"]["tokens_vs_lora_peft"]  # fp32 on the CPU: the same tokens
    assert same["identical_clips"] == same["clips_compared"] == 5, same
    assert results["ratios"]["lora-folded/lora-peft"] > 0
    assert results["step_profiles"]["packed"]["steps"] == 2  # --profile-steps and --lora-clips in one run
    base = variants["lora-folded"]["tokens_vs_base"]  # the adapters take part: not the base model's transcripts
    assert base["clips_compared"] == 5 and base["identical_clips"] < 5, base


def test_a_decoding_spec_gives_transcribe_ids_its_attention_and_stacking(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LAYOUT[:OPTIONS][/stack]``: the step's attention, and the projections stacked only with ``/stack``."""
    from voxplug_voxtral.generation import StepAttention

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from transcribe_throughput import decode_options

    assert decode_options("triton:32x4x3/stack") == {
        "attention": StepAttention("triton", tile=(32, 4, 3)),
        "stack_projections": True,
    }
    assert decode_options("packed:math") == {
        "attention": StepAttention("packed", ("math",)),
        "stack_projections": False,
    }
    with pytest.raises(ValueError, match="triton tile '64x4'"):
        decode_options("triton:64x4/stack")
