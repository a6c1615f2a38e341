"""The training benchmark's standard FLOP count (``benchmarks/model_flops.py``) against an independent count: the
matmuls PyTorch's ``FlopCounterMode`` sees in a real forward and backward of the tiny Voxtral on CPU, which include
the full attention matrix (the test swaps in the causal half explicitly); its recount of a results file; and the
benchmark itself, end to end on the tiny model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import uneven_audio_rows

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
H100_RESULTS = BENCHMARKS / "results" / "train_throughput-nvidia-h100-80gb-hbm3-before-redesign.json"


@pytest.fixture(scope="module")
def bench() -> Any:
    """``benchmarks/train_throughput.py`` as a module (it imports ``model_flops`` beside it)."""
    import importlib.util

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location("train_throughput", BENCHMARKS / "train_throughput.py")
        module = importlib.util.module_from_spec(spec)
        patch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
        yield module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from transformers import AutoProcessor
    from voxplug_voxtral.tiny import build_tiny_voxtral

    folder = build_tiny_voxtral(tmp_path_factory.mktemp("tiny"))
    return folder, AutoProcessor.from_pretrained(folder)


def prepared(folder: Path, method: str, device: str = "cpu", attention: str = "eager") -> Any:
    """The tiny Voxtral (fp32, eager attention: every attention matmul visible to the counter) as ``method`` trains
    it: voxplug's ``lora`` and ``full`` trainers, or VoxFactory's plain q/k/v/o LoRA, which also adapts the encoder.

    voxplug's LoRA runs PEFT's forward here: its one-node layers write into their outputs (``addmm_``, ``mm(out=)``),
    which ``FlopCounterMode`` does not count."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import VoxtralForConditionalGeneration
    from voxplug_trainers.full import FullMethod, FullOptions
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_voxtral.family import VoxtralFamily

    from voxplug.config import validate_config
    from voxplug.training.context import decide

    torch.manual_seed(0)
    model = VoxtralForConditionalGeneration.from_pretrained(folder, attn_implementation=attention, dtype=torch.float32)
    model.to(device)
    config = validate_config({"model": {"name_or_path": "tiny"}}, base_dir=Path.cwd())
    context = decide(config, {}, train_rows=1, world_size=1)
    if method == "lora":
        model = LoraMethod(LoraOptions(one_node=False)).prepare_model(model, VoxtralFamily(), context)
    elif method == "full":
        model = FullMethod(FullOptions()).prepare_model(model, VoxtralFamily(), context)
    else:
        model.model.audio_tower.requires_grad_(False)
        targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, target_modules=targets, task_type="SEQ_2_SEQ_LM"))
    return model.train()


def executed_flops(model: Any, batch: dict[str, Any]) -> int:
    """Matmul FLOPs PyTorch counts in voxplug's training step on ``batch``: forward with logits at the label
    positions, the loss, backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from voxplug.training.speed.label_logits import label_logits_loss, label_positions

    positions, targets = label_positions(batch["labels"])
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "attention_mask")}
    with FlopCounterMode(display=False) as counter:
        label_logits_loss(model(**inputs, logits_to_keep=positions), targets).backward()
    return counter.get_total_flops()


def causal_instead_of_full(shape: Any, tokens: int) -> int:
    """What the counter's full decoder attention matrix (forward and twice that backward) exceeds the causal one by."""
    full = 3 * 4 * shape.lm_q_dim * shape.lm_layers * tokens * tokens
    causal = 3 * 4 * shape.lm_q_dim * shape.lm_layers * tokens * (tokens + 1) // 2
    return full - causal


def sdpa_as_counted_over_eager(model: Any, tokens: int) -> int:
    """What the counter's count of CUDA SDPA in the language model exceeds the eager matmuls by: it counts the
    backward as five matmuls (the flash and memory-efficient kernels recompute the scores) and the head dimension
    padded to a multiple of 8, as those kernels take it; eager attention is two matmuls forward and four backward."""
    text = model.config.text_config
    heads, layers = text.num_attention_heads, text.num_hidden_layers
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    padded = -(-head_dim // 8) * 8
    return layers * heads * tokens * tokens * (2 * (2 + 5) * padded - 2 * (2 + 4) * head_dim)


@pytest.mark.parametrize("method", ["lora", "full", "voxfactory"])
def test_the_count_equals_the_executed_matmuls_of_an_unpadded_row(bench: Any, tiny: Any, method: str) -> None:
    from voxplug_voxtral.collator import VoxtralBatchBuilder

    folder, processor = tiny
    model = prepared(folder, method)
    count = bench.StandardCount.of(model)
    assert count.regime == {"lora": bench.LORA, "full": bench.FULL, "voxfactory": bench.ENCODER_LORA}[method]
    batch = VoxtralBatchBuilder(processor, pad_to_multiple_of=1)(uneven_audio_rows(1))
    tokens = batch["input_ids"].shape[1]
    positions = int((batch["labels"][:, 1:] != -100).sum())
    assert bench.row_tokens(batch).tolist() == [[tokens, positions]]
    useful = count.micro_batch([(tokens, positions)], chunks=1, cached=0)
    assert executed_flops(model, batch) - causal_instead_of_full(count.shape, tokens) == useful


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_count_equals_the_executed_matmuls_on_the_gpu(
    bench: Any, tiny: Any, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA with SDPA (flash/cuDNN kernels, whose FLOPs the counter takes as the full attention matrix).

    ``FlopCounterMode`` cannot count SDPA's grouped-query form (fewer key/value heads than query heads), so the
    keys and values are repeated to every query head first, as transformers does with a mask: the same matmuls."""
    import torch
    from transformers.integrations import sdpa_attention

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", lambda *args, **kwargs: False)
    from voxplug_voxtral.collator import VoxtralBatchBuilder

    folder, processor = tiny
    model = prepared(folder, method, device="cuda", attention="sdpa")
    count = bench.StandardCount.of(model)
    batch = VoxtralBatchBuilder(processor, pad_to_multiple_of=1)(uneven_audio_rows(1))
    batch = {k: v.to("cuda") for k, v in batch.items()}
    tokens = batch["input_ids"].shape[1]
    positions = int((batch["labels"][:, 1:] != -100).sum())
    assert bench.row_tokens(batch).tolist() == [[tokens, positions]]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        executed = executed_flops(model, batch) - sdpa_as_counted_over_eager(model, tokens)
    useful = count.micro_batch([(tokens, positions)], chunks=1, cached=0)
    assert executed - causal_instead_of_full(count.shape, tokens) == useful


def test_a_padded_batch_counts_each_row_at_its_own_length(bench: Any, tiny: Any) -> None:
    from voxplug_voxtral.collator import VoxtralBatchBuilder

    folder, processor = tiny
    model = prepared(folder, "lora")
    count = bench.StandardCount.of(model)
    rows = uneven_audio_rows(2)
    alone = [VoxtralBatchBuilder(processor, pad_to_multiple_of=1)([row]) for row in rows]
    per_row = [(b["input_ids"].shape[1], int((b["labels"][:, 1:] != -100).sum())) for b in alone]
    assert per_row[0][0] != per_row[1][0]
    for mask in (False, True):  # voxplug's training batches have no mask, VoxFactory's have one
        padded = VoxtralBatchBuilder(processor, attention_mask=mask)(rows)
        assert padded["input_ids"].shape[1] > max(n for n, _ in per_row)
        assert [tuple(r) for r in bench.row_tokens(padded).tolist()] == per_row
    useful = count.micro_batch(per_row, chunks=2, cached=0)
    executed_alone = sum(
        executed_flops(model, b) - causal_instead_of_full(count.shape, b["input_ids"].shape[1]) for b in alone
    )
    assert useful == executed_alone
    assert useful < executed_flops(model, padded)  # the padding's matmuls ran but are not counted
    encoder = sum(count.shape.encoder_chunk_flops(count.regime, count.adapters).values())
    assert count.micro_batch(per_row, chunks=2, cached=1) == useful - encoder  # a cached chunk ran no encoder


def test_the_real_shape_is_voxtral_mini_3b(bench: Any) -> None:
    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    config = VoxtralConfig()
    with torch.device("meta"):
        model = VoxtralForConditionalGeneration(config)
    shape = bench.VoxtralShape.of(config)

    def linear_weights(module: Any) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))

    assert shape.lm_linear == linear_weights(model.model.language_model) == 3_208_642_560
    assert shape.enc_linear == linear_weights(model.model.audio_tower)
    assert shape.head == model.lm_head.weight.numel() == 131072 * 3072
    assert (shape.enc_frames, shape.audio_tokens_per_chunk, shape.lm_q_dim, shape.lm_kv_dim) == (1500, 375, 4096, 1024)
    # VoxFactory's plain q/k/v/o targets at r 8: the trainable count the Hugging Face course's Voxtral LoRA prints
    adapters = bench.Adapters.voxtral(shape, 8, ("q", "k", "v", "o"), ("q", "k", "v"))
    assert adapters.decoder + adapters.encoder == 7_372_800


def test_the_small_shape_counts_from_its_own_dimensions(bench: Any) -> None:
    """``--shape small``: the count reads Voxtral-Small-24B's dimensions from its config (none of Mini's), checked
    against the parameter shapes of the model transformers builds from that config on the meta device."""
    import torch

    def linear_weights(module: Any) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))

    models = {name: bench.random_voxtral(torch.bfloat16, "meta", None, name) for name in ("mini", "small")}
    small = models["small"]
    # the benchmark's random model is the real checkpoint's size (the Voxtral report: 24.3 B; 640 M encoder, 52 M
    # adapter, 670 M embeddings, 22.9 B decoder), built in bf16 from the start (only Whisper's sinusoids stay fp32)
    assert sum(p.numel() for p in small.parameters()) == 24_261_800_960
    assert round(linear_weights(small.model.multi_modal_projector) / 1e6) == 52
    assert round(small.model.language_model.embed_tokens.weight.numel() / 1e6) == 671
    assert {n for n, p in small.named_parameters() if p.dtype != torch.bfloat16} == {
        "model.audio_tower.embed_positions.weight"
    }
    per_token: dict[str, float] = {}
    for name, model in models.items():
        shape = bench.VoxtralShape.of(model.config)
        decoder = linear_weights(model.model.language_model)
        first_qkv = sum(
            getattr(model.model.language_model.layers[0].self_attn, f"{p}_proj").weight.numel() for p in "qkv"
        )
        assert shape.lm_linear == decoder  # forward: 2 FLOPs a weight a token
        full = shape.row_flops(bench.FULL, bench.Adapters(), tokens=1, loss_positions=1)
        lora = shape.row_flops(bench.LORA, bench.Adapters(), tokens=1, loss_positions=1)
        assert full["decoder_linear"] == 6 * decoder  # forward, input gradients, weight gradients
        assert lora["decoder_linear"] == 2 * decoder + 2 * (decoder - first_qkv)  # frozen: no weight gradients
        assert lora["head"] == 4 * model.lm_head.weight.numel()
        encoder = shape.encoder_chunk_flops(bench.LORA, bench.Adapters())["encoder_linear"]
        assert encoder == 2 * linear_weights(model.model.audio_tower) * model.config.audio_config.max_source_positions
        assert shape.projector_chunk_flops(bench.LORA) == 2 * linear_weights(model.model.multi_modal_projector) * 375
        per_token[name] = full["decoder_linear"]
    text = small.config.text_config
    assert (text.hidden_size, text.intermediate_size, text.num_hidden_layers) == (5120, 32768, 40)
    # the same Whisper encoder as Mini, field for field
    assert small.config.audio_config.to_dict() == models["mini"].config.audio_config.to_dict()
    assert per_token["small"] / per_token["mini"] == linear_weights(small.model.language_model) / linear_weights(
        models["mini"].model.language_model
    )


def test_a_shape_refuses_variants_and_probes_it_cannot_run(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Checked before anything loads: full fine-tuning of the 24 B shape on one card, another shape's variants."""
    cases = {
        ("--shape", "small", "--variants", "full-default"): "full fine-tuning, which fits no one card",
        ("--shape", "small", "--variants", "small-lora-mb8", "--probe", "full:2"): "full fine-tuning does not fit",
        ("--variants", "small-lora-mb8"): "variant small-lora-mb8 is for --shape small, not --shape mini",
        ("--shape", "small", "--variants", "lora-default"): "variant lora-default is for --shape mini",
        ("--shape", "small", "--tiny"): "--tiny runs the tiny test model",
        ("--variants", "lora-nonesuch"): "unknown variants lora-nonesuch",
        ("--probe", "lora+offload:2"): "expected lora or full, with +ckpt",
    }
    import torch

    if not torch.cuda.is_available():  # never 24 B parameters on the host
        cases[("--shape", "small", "--variants", "", "--probe", "")] = "--shape small needs a CUDA GPU"
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            bench.main(list(argv))
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, argv
    small = bench.argparse.Namespace(
        shape="small", tiny=False, variants=bench.SMALL_DEFAULT_ORDER, probe=bench.DEFAULT_PROBES["small"]
    )
    assert bench.shape_problem(small) is None


def test_a_standard_mfu_needs_the_cards_datasheet_peak(bench: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.datasheet_peak_tflops("NVIDIA H100 80GB HBM3") == bench.datasheet_peak_tflops("NVIDIA H200") == 989.4
    assert bench.datasheet_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.datasheet_peak_tflops("NVIDIA GeForce RTX 4090") is None  # unknown: no guess from a similar name
    entry = {
        "micro_batch": 8,
        "grad_accum": 1,
        "samples_per_s": 50.0,
        "audio_s_per_s": 800.0,
        "useful_tflops": 300.0,
        "mfu_standard": None,
        "mfu_processed_over_measured_matmul": 0.5,
        "final_train_loss": 1.0,
        "eval_loss_fixed_batch": 1.0,
    }
    results = {"card": "NVIDIA GeForce RTX 4090", "datasheet_tflops": None, "matmul_tflops": 160.0}
    bench.print_table({**results, "variants": {"lora-default": entry}})
    out = capsys.readouterr().out
    assert "no datasheet peak: standard MFU not given" in out and "DATASHEET_BF16_DENSE_TFLOPS" in out
    assert out.splitlines()[-1].split()[7:9] == ["n/a", "n/a"]


def test_a_recount_refuses_data_that_is_not_the_runs(bench: Any, tmp_path: Path) -> None:
    results = json.loads(H100_RESULTS.read_text(encoding="utf-8"))
    results["clips"] = {"count": 4, "mean_s": 15.0, "min_s": 4.0, "max_s": 29.0}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    with pytest.raises(ValueError, match=r"results\.json: the clips' mean_s is 15\.0 in the file but .* rebuilt"):
        bench.recount([path])
    assert not list(tmp_path.glob("*.standard-mfu.json"))


@pytest.mark.slow
def test_the_recount_of_an_h100_results_file(bench: Any, tmp_path: Path) -> None:
    path = Path(shutil.copy(H100_RESULTS, tmp_path))
    (written,) = bench.recount([path])
    recounted = json.loads(written.read_text(encoding="utf-8"))
    measured = json.loads(path.read_text(encoding="utf-8"))["variants"]
    assert recounted["datasheet_tflops"] == 989.4 and set(recounted["variants"]) == set(measured)
    for name, entry in recounted["variants"].items():
        low, high = entry["mfu_standard_bounds"]
        assert low <= entry["mfu_standard"] <= high and high - low < 0.01, (name, entry)
        # useful FLOPs are the processed ones less padding and the masked half of attention
        assert entry["useful_flops_per_sample"] < measured[name]["flops_per_sample"]
        assert 0.85 < entry["useful_share_of_processed_lm_tokens"] < 1.0
    lora, full = recounted["variants"]["lora-default-noprofile"], recounted["variants"]["full-default"]
    assert 0.30 < lora["mfu_standard"] < 0.40 and 0.22 < full["mfu_standard"] < 0.30


#: What every trained variant's entry holds (the results file's schema; ``peak_memory_gib`` only on a GPU).
VARIANT_KEYS = {
    "variant", "spec", "setup_s", "trainable_params", "micro_batch", "grad_accum", "dataloader_workers", "optim",
    "gradient_checkpointing", "model_params", "quantization", "profile", "timed_steps", "timed_samples", "elapsed_s",
    "samples_per_s", "audio_s_per_s", "processed_lm_tokens_per_s", "useful_lm_tokens_per_s", "mfu_standard",
    "useful_tflops", "useful_flops_per_sample", "mfu_processed_over_measured_matmul", "processed_tflops",
    "processed_flops_per_sample", "step_s_median", "step_s_first_half", "step_s_second_half", "train_loss_log",
    "final_train_loss", "samples_trained", "run_samples_per_s", "encoder_cache", "cuda_graphs",
    "cached_chunks_timed", "mfu_standard_median_step", "mfu_processed_over_measured_matmul_median_step",
    "cache_warm_steps", "per_step", "host_marks", "eval_loss_fixed_batch", "loss_checks",
}  # fmt: skip


@pytest.mark.slow
def test_the_benchmark_trains_through_voxplugs_run_on_the_tiny_model(bench: Any, tmp_path: Path) -> None:
    """``--tiny`` end to end on the CPU: voxplug's own run trains each variant on every clip of the JSONL dataset,
    with the variant's switches, and the results file has its schema; the process's Llama stays transformers'."""
    from transformers.models.llama import modeling_llama

    rotary = modeling_llama.apply_rotary_pos_emb
    argv = ["--tiny", "--clips", "16", "--steps", "4", "--warmup", "1", "--probe", "lora:2", "--out", str(tmp_path)]
    assert bench.main([*argv, "--variants", "voxfactory,lora-v0,lora-ungrouped,full-default"]) == 0
    results = json.loads((tmp_path / "train_throughput-cpu-x86-64.json").read_text(encoding="utf-8"))
    assert results["clips"]["count"] == 16 and results["steps_per_variant"] == 4
    variants = results["variants"]
    for name, entry in variants.items():
        assert set(entry) == VARIANT_KEYS, name  # and on a GPU: peak memory, and what earlier variants left
        timed = 3 - (2 if entry["spec"].get("profile") else 0)  # steps 2-4, less the two profiled ones at the end
        assert entry["samples_trained"] == 32 and entry["timed_steps"] == timed and len(entry["per_step"]) == timed
        assert entry["timed_samples"] == 8 * timed and entry["audio_s_per_s"] > entry["samples_per_s"] > 0
        after = entry["loss_checks"]["after_training"]
        assert after["label_logits"] == pytest.approx(after["plain"], rel=1e-4)
    v0, ungrouped, full = variants["lora-v0"], variants["lora-ungrouped"], variants["full-default"]
    # VoxFactory's recipe (its own Trainer, not voxplug's run): 2 x 4, none of voxplug's checks or speed paths
    voxfactory = variants["voxfactory"]
    assert (voxfactory["micro_batch"], voxfactory["grad_accum"]) == (2, 4)
    assert set(voxfactory["loss_checks"]) == {"after_training"} and voxfactory["encoder_cache"] is None
    # lora-v0: micro-batch 2 x 4, no workers, the model's own loss; its clips pass the encoder every epoch
    assert (v0["micro_batch"], v0["grad_accum"], v0["dataloader_workers"]) == (2, 4, 0)
    assert v0["loss_checks"]["label_logits_active"] is False and v0["encoder_cache"] is None
    assert v0["loss_checks"]["lora_shared_input_groups"] > 0
    # lora-ungrouped: one node per adapted layer; the defaults' encoder cache serves the second epoch
    assert ungrouped["loss_checks"]["lora_shared_input_groups"] == 0
    assert ungrouped["loss_checks"]["label_logits_active"] is True
    assert ungrouped["encoder_cache"]["misses"] == 16 and ungrouped["cache_warm_steps"]["steps"] == 2
    assert full["trainable_params"] > ungrouped["trainable_params"]
    assert full["profile"]["steps"] == 2
    (probe,) = results["memory_probe"]["lora"]
    assert probe["micro_batch"] == 2 and probe["seq"] > 375 and probe["step_s"] > 0
    assert modeling_llama.apply_rotary_pos_emb is rotary


@pytest.mark.slow
def test_the_benchmark_family_checks_the_loss_around_the_kernels_a_variant_fuses(
    bench: Any, tiny: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The GPU's fusing step, on the CPU: the family the benchmark's runs load from builds the tiny model, fuses the
    variant's kernels (voxplug's, or Liger's where asked: unfused without liger-kernel, and said so) and records
    the fixed batch's loss before and after."""
    import importlib.util

    import soundfile

    folder, processor = tiny
    clips = bench.make_clips(tmp_path / "clips", 2, seed=1, max_s=6.0)
    rows = [{"audio": soundfile.read(c.path, dtype="float32")[0], "text": c.text, "language": "en"} for c in clips]
    args = bench.argparse.Namespace(shape="mini", deadline_s=60.0)
    setup = bench.Bench(args, "cpu", tmp_path, folder, processor, clips, rows, folder, 1.0, {}, 0.0)
    spec = {"method": "lora", "kernels": {"fused": ["rms_norm", "swiglu", "rope"], "rms_norm": "torch"}}
    state = bench.VariantRun(setup, spec, bench.Record(), started=0.0)
    family = bench.bench_family(state)(None)
    model, loaded_processor = family.load(str(folder), dtype="fp32", device="cpu")
    assert loaded_processor is processor and model.dtype.is_floating_point
    liger = importlib.util.find_spec("liger_kernel") is not None
    assert family.speed().fuse_kernels(model) == (["rms_norm", "swiglu", "rope"] if liger else ["rms_norm"])
    assert liger or "liger-kernel is not installed: rope, swiglu run unfused" in capsys.readouterr().out
    checks = state.checks
    assert set(checks) == {"before_fused_kernels", "fused_kernels", "after_fused_kernels"}
    assert checks["after_fused_kernels"]["plain"] == pytest.approx(checks["before_fused_kernels"]["plain"], rel=1e-5)
    state.spec = {"method": "lora"}  # the family's own kernels
    assert family.speed().fuse_kernels(family.load(str(folder), dtype="fp32", device="cpu")[0]) == [
        "rms_norm",
        "swiglu",
        "rope",
    ]


@pytest.mark.slow
def test_the_card_size_preset_variants_train_the_presets_settings_and_log_every_loss(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``preset-*`` variants on the tiny model: the 24 GB preset's settings over a 4-bit base (quantized as the
    benchmark does it for the 24 B shape) against the same over a bf16 base, each step's loss recorded; the FLOP
    count reads the 4-bit layers' shapes, not their packed storage."""
    pytest.importorskip("bitsandbytes")
    qlora = {"method": "lora", "preset": "voxtral-small-qlora-24gb"}
    monkeypatch.setitem(bench.VARIANTS, "preset-tiny-qlora", qlora)
    monkeypatch.setitem(bench.VARIANTS, "preset-tiny-bf16", {**qlora, "config": {"model.quantization": None}})
    argv = ["--tiny", "--clips", "16", "--steps", "4", "--warmup", "1", "--probe", "", "--out", str(tmp_path)]
    assert bench.main([*argv, "--variants", "preset-tiny-qlora,preset-tiny-bf16"]) == 0
    variants = json.loads((tmp_path / "train_throughput-cpu-x86-64.json").read_text(encoding="utf-8"))["variants"]
    four_bit, bf16 = variants["preset-tiny-qlora"], variants["preset-tiny-bf16"]
    for entry in (four_bit, bf16):
        assert (entry["micro_batch"], entry["grad_accum"], entry["gradient_checkpointing"]) == (2, 4, True)
        assert len(entry["losses"]) == 4 and entry["memory_cap_gib"] is None
    assert four_bit["quantization"] is True and bf16["quantization"] is False
    assert four_bit["processed_flops_per_sample"] == bf16["processed_flops_per_sample"]
    assert four_bit["model_params"] == bf16["model_params"]
    # the same steps, seed and clips: the 4-bit base's losses lie beside the bf16 base's
    assert four_bit["losses"] == pytest.approx(bf16["losses"], abs=0.05)
