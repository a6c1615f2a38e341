"""The memory estimate against measured peaks and real tensors; ``auto`` and the fit check in ``decide()``.

The measured peaks are read from ``benchmarks/results/`` (H100/H200 runs of Voxtral-Mini-3B's and Whisper-large-v3's
shapes, 30 s clips); the shapes come from the families' own ``model_shape`` over folders that hold only the
real checkpoints' ``config.json`` beside tiny weights, which the estimate never reads.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from voxplug.config import validate_config
from voxplug.errors import TrainingError
from voxplug.training import memory
from voxplug.training.context import MemoryInputs, decide
from voxplug.training.memory import GIB, RowSize, estimate_step, step_memory

from .conftest import bundled_rows, run_cli, run_config, write_config, write_manifest

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: How far the estimate may be from a measured peak.
TOLERANCE = 0.15
#: Voxtral's audio tokens for one 30 s chunk: the probes' rows are 375 of them and the transcript's tokens.
AUDIO_TOKENS = 375
#: The longest decoder row of the Whisper benchmark's clips (up to 29 s of English speech): an assumption, since the
#: benchmark did not record its rows' token counts (benchmarks/NOTES.md, "Memory estimate").
WHISPER_ROW_TOKENS = 104


def with_config(tiny: Path, folder: Path, config: dict[str, Any]) -> Path:
    """A copy of the tiny checkpoint whose ``config.json`` describes another shape."""
    shutil.copytree(tiny, folder)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def mini_folder(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    from transformers import VoxtralConfig

    config = VoxtralConfig()
    config.audio_token_id = 24
    return with_config(tiny_model, tmp_path_factory.mktemp("mini") / "model", config.to_dict())


@pytest.fixture(scope="module")
def mini_shape(mini_folder: Path) -> memory.ModelShape:
    from voxplug_voxtral.family import VoxtralFamily

    return VoxtralFamily().model_shape(str(mini_folder))


def voxtral_method(name: str, **options: Any) -> Any:
    from voxplug_trainers.full import FullMethod, FullOptions
    from voxplug_trainers.lora import LoraMethod, LoraOptions

    if name == "lora":
        return LoraMethod(LoraOptions(**options))
    return FullMethod(FullOptions(**options))


def gpu_step(
    shape: memory.ModelShape, family: Any, method: str, row: RowSize, *, quantized: bool = False
) -> memory.StepMemory:
    """The step of the benchmarks' runs: bf16 on a GPU, fused AdamW, adapters on a bf16 (or NF4) base, full on fp32
    masters."""
    trained = voxtral_method(method).trained_weights(shape.model, family)
    base = "bf16" if method == "lora" else "fp32"
    return step_memory(
        shape, trained, row, base_dtype=base, precision="bf16", optim="adamw_torch_fused", quantized=quantized
    )


def assert_near(estimate: memory.MemoryEstimate, measured_bytes: float) -> None:
    """The estimated peak is within :data:`TOLERANCE` of the measured one."""
    assert abs(estimate.peak / measured_bytes - 1) <= TOLERANCE, (estimate.peak / GIB, measured_bytes / GIB)


def assert_near_measured(step: memory.StepMemory, run: dict[str, Any], checkpointing: bool) -> None:
    """The estimate for ``run``'s micro-batch and accumulation is within :data:`TOLERANCE` of its measured peak."""
    estimate = estimate_step(
        step,
        micro_batch=run["micro_batch"],
        grad_accum=run["grad_accum"],
        gradient_checkpointing=checkpointing,
        label_logits=True,
    )
    assert_near(estimate, run["peak_memory_gib"] * GIB)


def recorded(file: str) -> dict[str, Any]:
    return json.loads((RESULTS / file).read_text(encoding="utf-8"))


def variant(file: str, name: str) -> dict[str, Any]:
    return recorded(file)["variants"][name]


def benchmark(name: str) -> Any:
    """A script of ``benchmarks/`` as a module (they import each other by bare name, so their folder is on the path
    while it imports)."""
    import importlib

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(RESULTS.parent))
        return importlib.import_module(name)


def test_voxtral_mini_shape_is_read_from_its_config_alone(mini_shape: memory.ModelShape) -> None:
    """The published parameter count of Voxtral-Mini-3B (4,676,271,104), from a config beside tiny weights."""
    from voxplug_voxtral.family import VoxtralFamily

    assert sum(p.numel() for p in mini_shape.model.parameters()) == 4_676_271_104
    assert all(p.is_meta for p in mini_shape.model.parameters())
    assert [(s.scope, s.layers, s.hidden, s.audio_tokens) for s in mini_shape.stacks] == [
        ("audio_tower", 32, 1280, 1500),
        ("language_model", 30, 3072, AUDIO_TOKENS),
    ]
    family = VoxtralFamily()
    lora = voxtral_method("lora").trained_weights(mini_shape.model, family)
    full = voxtral_method("full").trained_weights(mini_shape.model, family)
    parameters = dict(mini_shape.model.named_parameters())
    # the counts the benchmark's runs recorded as trainable_params
    assert (
        lora.added == variant("train_throughput-nvidia-h200-run29.json", "lora-default-noprofile")["trainable_params"]
    )
    assert (
        sum(parameters[n].numel() for n in full.base)
        == variant("train_throughput-nvidia-h200-run29.json", "full-default")["trainable_params"]
    )


#: (results file, variant, method, gradient checkpointing): training runs through voxplug's TrainingRun.
MINI_RUNS = [
    ("train_throughput-nvidia-h200-run29.json", "lora-default-noprofile", "lora", False),
    ("train_throughput-nvidia-h200-run6.json", "lora-mb2-default", "lora", False),
    ("train_throughput-nvidia-h200-run29.json", "full-default", "full", False),
    ("train_throughput-nvidia-h200-run5.json", "full-ckpt-mb8", "full", True),
    ("train_throughput-nvidia-h200-run5.json", "full-ckpt-mb2", "full", True),
]
#: (results file, probe, micro-batch): one optimizer step on the longest rows.
MINI_PROBES = [
    ("train_throughput-nvidia-h200-run5.json", "full", 4),
    ("train_throughput-nvidia-h200-run5.json", "full", 6),
    ("train_throughput-nvidia-h200-run6.json", "full", 8),
    ("train_throughput-nvidia-h200-run5.json", "full+ckpt", 16),
    ("train_throughput-nvidia-h200-run6.json", "full+ckpt", 24),
]
#: The probes' longest row: 480 tokens (``seq`` in their entries).
MINI_ROW = RowSize(chunks=1, text_tokens=480 - AUDIO_TOKENS)


@pytest.mark.parametrize(("file", "name", "method", "checkpointing"), MINI_RUNS)
def test_estimate_is_within_tolerance_of_measured_voxtral_runs(
    mini_shape: memory.ModelShape, file: str, name: str, method: str, checkpointing: bool
) -> None:
    from voxplug_voxtral.family import VoxtralFamily

    run = variant(file, name)
    assert_near_measured(gpu_step(mini_shape, VoxtralFamily(), method, MINI_ROW), run, checkpointing)


@pytest.mark.parametrize(("file", "probe", "micro_batch"), MINI_PROBES)
def test_estimate_is_within_tolerance_of_measured_voxtral_probes(
    mini_shape: memory.ModelShape, file: str, probe: str, micro_batch: int
) -> None:
    from voxplug_voxtral.family import VoxtralFamily

    entry = next(e for e in recorded(file)["memory_probe"][probe] if e["micro_batch"] == micro_batch)
    row = RowSize(chunks=1, text_tokens=entry["seq"] - AUDIO_TOKENS)
    estimate = estimate_step(
        gpu_step(mini_shape, VoxtralFamily(), "full", row),
        micro_batch=micro_batch,
        grad_accum=1,
        gradient_checkpointing=probe.endswith("+ckpt"),
        label_logits=True,
    )
    assert_near(estimate, entry["peak_gib"] * GIB)


#: (results file, variant, gradient checkpointing, 4-bit base): Voxtral-Small-24B LoRA runs on an H100.
SMALL_RUNS = [
    ("train_throughput-nvidia-h100-80gb-hbm3-small-variants.json", "small-lora-ckpt-mb8", True, False),
    ("train_throughput-nvidia-h100-80gb-hbm3-small-variants.json", "small-lora-mb2", False, False),
    ("train_throughput-nvidia-h100-80gb-hbm3-small-mb4.json", "small-lora-mb4", False, False),
    ("train_throughput-nvidia-h100-80gb-hbm3-small-qlora-24gb.json", "preset-small-qlora-24gb", True, True),
    ("train_throughput-nvidia-h100-80gb-hbm3-small-qlora-24gb.json", "preset-small-qlora-24gb-bf16", True, False),
]


@pytest.fixture(scope="module")
def small_shape(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> memory.ModelShape:
    """Voxtral-Small-24B-2507's shape as its benchmark built it (``benchmarks/train_throughput.py``)."""
    from voxplug_voxtral.family import VoxtralFamily

    config = benchmark("train_throughput").voxtral_config("small")
    folder = with_config(tiny_model, tmp_path_factory.mktemp("small") / "model", config.to_dict())
    return VoxtralFamily().model_shape(str(folder))


@pytest.mark.parametrize(("file", "name", "checkpointing", "quantized"), SMALL_RUNS)
def test_estimate_is_within_tolerance_of_measured_voxtral_small_runs(
    small_shape: memory.ModelShape, file: str, name: str, checkpointing: bool, quantized: bool
) -> None:
    from voxplug_voxtral.family import VoxtralFamily

    run = variant(file, name)
    assert run["gradient_checkpointing"] is checkpointing and run["quantization"] is quantized
    trained = voxtral_method("lora").trained_weights(small_shape.model, VoxtralFamily())
    base = sum(p.numel() for p in small_shape.model.parameters())
    assert (trained.added, base + trained.added) == (run["trainable_params"], run["model_params"])
    step = gpu_step(small_shape, VoxtralFamily(), "lora", MINI_ROW, quantized=quantized)
    assert_near_measured(step, run, checkpointing)


@pytest.mark.parametrize(
    ("name", "ran"), [("full-default", True), ("full-mb4", False), ("full-liger-cache-ga4", False)]
)
def test_the_fit_check_passes_what_ran_and_refuses_what_ran_out_of_memory(
    mini_shape: memory.ModelShape, name: str, ran: bool
) -> None:
    """Full fine-tuning on a card capped at 79.6 GiB: 8 x 1 fit; 4 x 2 and 8 x 4 ran out of memory, because
    accumulated gradients stay alive through the next micro-batch's forward."""
    from voxplug_voxtral.family import VoxtralFamily

    file = "train_throughput-nvidia-h200-run5.json" if not ran else "train_throughput-nvidia-h200-run29.json"
    run = variant(file, name)
    assert ("error" in run) is not ran
    estimate = estimate_step(
        gpu_step(mini_shape, VoxtralFamily(), "full", MINI_ROW),
        micro_batch=run["micro_batch"],
        grad_accum=run["grad_accum"],
        gradient_checkpointing=False,
        label_logits=True,
    )
    cap = recorded(file)["memory_cap_gib"] * GIB
    assert (estimate.peak + memory.OUTSIDE_ALLOCATOR_BYTES <= cap) is ran


@pytest.mark.parametrize(("name", "method"), [("voxplug-lora", "lora"), ("voxplug-full", "full")])
def test_estimate_is_within_tolerance_of_measured_whisper_runs(
    tmp_path: Path, tiny_model: Path, name: str, method: str
) -> None:
    from transformers import WhisperConfig
    from voxplug_whisper.family import WhisperFamily

    large_v3 = benchmark("whisper_throughput").LARGE_V3  # Whisper-large-v3's shape as its benchmark built it
    folder = tmp_path / "large-v3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(WhisperConfig(**large_v3).to_dict()), encoding="utf-8")
    family = WhisperFamily()
    shape = family.model_shape(str(folder))
    results = recorded("whisper_throughput-large-v3-nvidia-h100-80gb-hbm3.json")
    run = results["variants"][name]
    trained = voxtral_method(method).trained_weights(shape.model, family)
    parameters = dict(shape.model.named_parameters())
    assert trained.added + sum(parameters[n].numel() for n in trained.base) == run["trainable_parameters"]
    step = step_memory(
        shape,
        trained,
        RowSize(1, WHISPER_ROW_TOKENS),
        base_dtype="bf16" if method == "lora" else "fp32",
        precision="bf16",
        optim="adamw_torch_fused",
    )
    estimate = estimate_step(step, micro_batch=16, grad_accum=2, gradient_checkpointing=False, label_logits=False)
    assert_near(estimate, run["peak_memory_gb"] * 1e9)


# -- exact on real tensors ----------------------------------------------------------------------------------


def tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_weight_gradient_and_optimizer_bytes_equal_a_real_models(tmp_path: Path, tiny_model: Path, method: str) -> None:
    """On the tiny Voxtral, prepared by the real training method and stepped by a real AdamW: the estimate's frozen
    weights, trained weights, gradients and optimizer moments are the real tensors' bytes, to the byte."""
    import torch
    from voxplug_voxtral.family import VoxtralFamily

    family = VoxtralFamily()
    config = validate_config({"training": {"method": method}}, base_dir=tmp_path)
    context = decide(config, {}, train_rows=4, world_size=1)
    model, _ = family.load(str(tiny_model), dtype="fp32", device="cpu")
    trainer = voxtral_method(method)
    model = trainer.prepare_model(model, family, context)
    shape = family.model_shape(str(tiny_model))
    step = step_memory(
        shape,
        trainer.trained_weights(shape.model, family),
        MINI_ROW,
        base_dtype="fp32",
        precision="fp32",
        optim="adamw_torch",
    )
    trained = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for parameter in trained:
        parameter.grad = torch.ones_like(parameter)
    optimizer = torch.optim.AdamW(trained, lr=1e-3)
    optimizer.step()
    moments = [state[key] for state in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]
    assert step.frozen_weight_bytes == tensor_bytes(frozen)
    assert step.trained_weight_bytes == tensor_bytes(trained)
    assert step.gradient_bytes == tensor_bytes(p.grad for p in trained)
    assert step.optimizer_bytes == tensor_bytes(moments)
    assert step.trained_elements == sum(p.numel() for p in trained)


def test_zero_shards_the_optimizer_then_gradients_then_weights(mini_shape: memory.ModelShape) -> None:
    from voxplug_voxtral.family import VoxtralFamily

    trained = voxtral_method("full").trained_weights(mini_shape.model, VoxtralFamily())

    def step(stage: int) -> memory.StepMemory:
        zero = memory.ZeroSharding(stage=stage, world_size=4)
        return step_memory(
            mini_shape, trained, MINI_ROW, base_dtype="fp32", precision="bf16", optim="adamw_torch", zero=zero
        )

    alone, one, two, three = step(0), step(1), step(2), step(3)
    assert one.optimizer_bytes == alone.optimizer_bytes / 4 and one.gradient_bytes == alone.gradient_bytes
    assert two.gradient_bytes == alone.gradient_bytes / 4 and two.trained_weight_bytes == alone.trained_weight_bytes
    assert three.trained_weight_bytes == alone.trained_weight_bytes / 4
    assert three.frozen_weight_bytes == alone.frozen_weight_bytes / 4


def test_zero_stage_and_offload_are_read_from_the_deepspeed_presets() -> None:
    from voxplug.config import PRESETS_DIR

    assert memory.zero_sharding(str(PRESETS_DIR / "deepspeed" / "zero2.json"), world_size=2).stage == 2
    assert memory.zero_sharding(str(PRESETS_DIR / "deepspeed" / "zero3.json"), world_size=2).stage == 3


def test_nf4_frozen_linear_weights_take_about_half_a_byte(mini_shape: memory.ModelShape) -> None:
    from voxplug_voxtral.family import VoxtralFamily

    trained = voxtral_method("lora").trained_weights(mini_shape.model, VoxtralFamily())
    bf16 = step_memory(mini_shape, trained, MINI_ROW, base_dtype="bf16", precision="bf16", optim="adamw_torch")
    nf4 = step_memory(
        mini_shape, trained, MINI_ROW, base_dtype="bf16", precision="bf16", optim="adamw_torch", quantized=True
    )
    import torch

    model = mini_shape.model
    head = model.get_output_embeddings()
    quantized = sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    )
    # linear weights other than the output layer in NF4; embeddings, norms, biases, convolutions and the head in bf16
    assert 0.5 * quantized < quantized * memory.NF4_BYTES < 0.6 * quantized
    assert nf4.frozen_weight_bytes == pytest.approx(bf16.frozen_weight_bytes - quantized * (2 - memory.NF4_BYTES))
    assert nf4.frozen_weight_bytes < 0.45 * bf16.frozen_weight_bytes


# -- decide(): auto and the fit check -----------------------------------------------------------------------


def mini_inputs(shape: memory.ModelShape, method: str, available_gib: float | None) -> MemoryInputs:
    from voxplug_voxtral.family import VoxtralFamily

    trained = voxtral_method(method).trained_weights(shape.model, VoxtralFamily())
    available = None if available_gib is None else int(available_gib * GIB)
    return MemoryInputs(shape, trained, MINI_ROW, adapter=method == "lora", available_bytes=available)


def decided(tmp_path: Path, inputs: MemoryInputs | None, **training: Any) -> Any:
    config = validate_config({"training": training}, base_dir=tmp_path)
    return decide(config, {}, train_rows=64, world_size=1, memory=inputs)


def budget(available_gib: float) -> float:
    return available_gib * GIB * (1 - memory.AUTO_HEADROOM) - memory.OUTSIDE_ALLOCATOR_BYTES


def test_auto_takes_the_largest_micro_batch_that_fits_and_keeps_the_effective_batch(
    tmp_path: Path, mini_shape: memory.ModelShape
) -> None:
    sizes = {}
    for available in (200.0, 40.0, 25.0):
        context = decided(tmp_path, mini_inputs(mini_shape, "lora", available), batch_size="auto", effective_batch=16)
        batch = context.batch
        assert batch.micro_batch * batch.grad_accum == 16 and not batch.gradient_checkpointing
        assert batch.estimate is not None and batch.estimate.peak <= budget(available)
        larger = [size for size in memory.micro_batch_ladder(16) if size > batch.micro_batch]
        if larger:  # the next size up would not have fitted
            bigger = estimate_step(
                memory.step_memory(
                    mini_shape,
                    mini_inputs(mini_shape, "lora", None).trained,
                    MINI_ROW,
                    base_dtype="fp32",
                    precision=context.precision,
                    optim="adamw_torch_fused",
                ),
                micro_batch=min(larger),
                grad_accum=16 // min(larger),
                gradient_checkpointing=False,
                label_logits=True,
            )
            assert bigger.peak > budget(available)
        assert context.plan.steps_per_epoch == 64 // 16
        assert context.record()["batch"]["chosen_by"] == "auto"
        sizes[available] = batch.micro_batch
    assert sizes[200.0] == 16 and sizes[200.0] > sizes[40.0] > sizes[25.0]


def test_auto_checkpointing_only_where_nothing_fits_without_it(tmp_path: Path, mini_shape: memory.ModelShape) -> None:
    from voxplug_voxtral.family import VoxtralFamily

    from voxplug.training.devices import resolve_precision

    trained = voxtral_method("full").trained_weights(mini_shape.model, VoxtralFamily())
    precision = resolve_precision("auto")
    step = step_memory(mini_shape, trained, MINI_ROW, base_dtype="fp32", precision=precision, optim="adamw_torch_fused")
    smallest_without = estimate_step(step, micro_batch=1, grad_accum=8, gradient_checkpointing=False, label_logits=True)
    largest_with = estimate_step(step, micro_batch=8, grad_accum=1, gradient_checkpointing=True, label_logits=True)
    assert largest_with.peak < smallest_without.peak
    # between the two: no micro-batch fits without checkpointing, 8 x 1 fits with it
    between = (largest_with.peak + smallest_without.peak) / 2
    available = (between + memory.OUTSIDE_ALLOCATOR_BYTES) / (1 - memory.AUTO_HEADROOM) / GIB

    def auto(available_gib: float) -> Any:
        inputs = mini_inputs(mini_shape, "full", available_gib)
        return decided(tmp_path, inputs, batch_size="auto", gradient_checkpointing="auto", method="full")

    tight = auto(available)
    assert (tight.batch.micro_batch, tight.batch.grad_accum, tight.batch.gradient_checkpointing) == (8, 1, True)
    roomy = auto(400.0)
    assert (roomy.batch.micro_batch, roomy.batch.gradient_checkpointing) == (8, False)


def cpu_step(shape: memory.ModelShape, method: str) -> memory.StepMemory:
    """The step ``decide()`` estimates on this machine (no GPU: fp32 weights and compute)."""
    from voxplug_voxtral.family import VoxtralFamily

    from voxplug.training.devices import resolve_precision

    trained = voxtral_method(method).trained_weights(shape.model, VoxtralFamily())
    precision = resolve_precision("auto")
    return step_memory(shape, trained, MINI_ROW, base_dtype="fp32", precision=precision, optim="adamw_torch_fused")


def test_a_run_that_cannot_fit_fails_with_what_it_needs_and_what_to_change(
    tmp_path: Path, mini_shape: memory.ModelShape
) -> None:
    """Where gradient checkpointing would fit, the message says so with its estimate; the larger changes follow."""
    step = cpu_step(mini_shape, "lora")
    as_configured = estimate_step(step, micro_batch=8, grad_accum=1, gradient_checkpointing=False, label_logits=True)
    checkpointed = estimate_step(step, micro_batch=8, grad_accum=1, gradient_checkpointing=True, label_logits=True)
    available = (as_configured.peak + checkpointed.peak) / 2 + memory.OUTSIDE_ALLOCATOR_BYTES
    with pytest.raises(TrainingError) as error:
        decided(tmp_path, mini_inputs(mini_shape, "lora", available / GIB), batch_size=8, gradient_checkpointing=False)
    message = str(error.value)
    assert f"needs about {memory.gib(as_configured.peak)} (frozen weights" in message
    assert f"more than the {memory.gib(available)} free on it" in message
    assert "activations of 8 rows" in message and "optimizer state" in message
    assert f"training.gradient_checkpointing=true (about {memory.gib(checkpointed.peak)})" in message
    for change in ("model.quantization=nf4", "DeepSpeed ZeRO", "training.fit_check=false"):
        assert change in message
    assert "training.method=lora" not in message  # it is LoRA already


def test_a_run_nothing_in_its_batch_can_fit_is_told_the_larger_changes(
    tmp_path: Path, mini_shape: memory.ModelShape
) -> None:
    step = cpu_step(mini_shape, "full")
    least = min(
        estimate_step(step, micro_batch=size, grad_accum=8 // size, gradient_checkpointing=ckpt, label_logits=True).peak
        for size in (8, 4, 2, 1)
        for ckpt in (False, True)
    )
    available_gib = (least + memory.OUTSIDE_ALLOCATOR_BYTES) / GIB - 1
    with pytest.raises(TrainingError) as error:
        decided(
            tmp_path,
            mini_inputs(mini_shape, "full", available_gib),
            method="full",
            batch_size=8,
            gradient_checkpointing=False,
        )
    message = str(error.value)
    assert "Set " not in message and "Try training.method=lora instead of full fine-tuning" in message
    started = decided(
        tmp_path,
        mini_inputs(mini_shape, "full", available_gib),
        method="full",
        batch_size=8,
        gradient_checkpointing=False,
        fit_check=False,
    )
    assert started.batch.micro_batch == 8 and started.batch.estimate.peak > available_gib * GIB


def test_without_a_memory_reading_auto_takes_a_small_fixed_batch(tmp_path: Path) -> None:
    context = decided(tmp_path, None, batch_size="auto", gradient_checkpointing="auto")
    assert (context.batch.micro_batch, context.batch.grad_accum) == (memory.CPU_AUTO_BATCH, 8 // memory.CPU_AUTO_BATCH)
    assert not context.batch.gradient_checkpointing
    fixed = decided(tmp_path, None, batch_size=4, grad_accum=3, gradient_checkpointing=False)
    assert (fixed.batch.micro_batch, fixed.batch.grad_accum, fixed.batch.chosen_by) == (4, 3, "config")
    # the default checkpointing is auto: nothing measured, it stays off
    by_default = decided(tmp_path, None, batch_size=4, grad_accum=3)
    assert (by_default.batch.micro_batch, by_default.batch.grad_accum) == (4, 3)
    assert not by_default.batch.gradient_checkpointing and by_default.batch.chosen_by == "auto, nothing measured"


def test_every_rank_reads_the_smallest_free_memory(tmp_path: Path) -> None:
    """With a process group (gloo, two CPU processes), each rank's reading becomes the smallest of them."""
    import subprocess

    script = tmp_path / "read.py"
    script.write_text(
        "import torch.distributed as d\n"
        "d.init_process_group('gloo')\n"
        "from voxplug.training.memory import shared_minimum\n"
        "import pathlib, sys\n"
        "reading = shared_minimum(1000 + 7 * d.get_rank())\n"
        "pathlib.Path(sys.argv[1], f'rank{d.get_rank()}').write_text(str(reading))\n"
        "d.barrier()\n"
        "d.destroy_process_group()\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)] == ["1000", "1000"]


# -- the CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("fit-cli")
    manifest = write_manifest(folder / "data", bundled_rows()[:6], "train.jsonl")
    broken = folder / "broken-weights"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    return folder, manifest, broken


def test_the_cli_stops_a_run_too_large_for_its_memory_before_loading_weights(
    cli_folder: tuple[Path, Path, Path],
) -> None:
    """The model's weights file is garbage: the fit error comes first, so nothing read it. Nothing a resume would
    pick up is written."""
    folder, manifest, broken = cli_folder
    config = run_config(folder, broken, manifest, name="fit", training__device_memory_gb=0.001)
    path = write_config(folder / "fit.yaml", config)
    result = run_cli(["train", "-c", str(path)], cwd=folder, check=False)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "needs about" in error[0] and "training.fit_check=false" in error[0], result.stderr
    run_dir = folder / "run"
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "training_config.json").exists()
    assert not (run_dir / "model").exists()


def test_the_cli_trains_with_an_automatic_batch_and_records_it(
    cli_folder: tuple[Path, Path, Path], tiny_model: Path
) -> None:
    folder, manifest, _ = cli_folder
    config = run_config(
        folder / "auto",
        tiny_model,
        manifest,
        name="auto",
        training__batch_size="auto",
        training__grad_accum=1,
        training__effective_batch=4,
        training__gradient_checkpointing="auto",
        training__device_memory_gb=4.0,
        training__max_steps=2,
        evaluation__enabled=False,
    )
    path = write_config(folder / "auto.yaml", config)
    run_cli(["train", "-c", str(path)], cwd=folder)
    batch = json.loads((folder / "auto" / "run" / "training_config.json").read_text())["decided"]["batch"]
    assert batch["chosen_by"] == "auto" and batch["batch_size"] * batch["grad_accum"] == 4
    assert batch["estimated_peak_gib"] <= 4.0 and batch["available_gib"] == 4.0
    assert "micro-batch" in (folder / "auto" / "run" / "train.log").read_text()


def test_the_model_card_shows_the_batch_the_run_trained_with() -> None:
    from voxplug.publishing.card import _card_facts
    from voxplug.publishing.publishable import PublishableModel

    config = {
        "training": {"method": "lora", "batch_size": "auto", "grad_accum": 1, "gradient_checkpointing": "auto"},
        "decided": {"batch": {"batch_size": 4, "grad_accum": 2, "gradient_checkpointing": False}},
    }
    model = PublishableModel(Path("model"), {"kind": "adapter"}, training_config=config)
    shown = _card_facts(model, "someone/model")["hyperparameters"]
    assert shown["micro-batch per device"] == 4 and shown["gradient accumulation"] == 2
    assert shown["gradient checkpointing"] is False


def test_a_full_run_that_fits_with_its_masters_in_the_optimizer_is_told_so(
    tmp_path: Path, mini_shape: memory.ModelShape
) -> None:
    """Between the two estimates, the fit error proposes ``training.master_weights=optimizer`` with its figure,
    and the run that sets it is decided on that figure."""
    from dataclasses import replace

    from voxplug.training.context import batch_decision

    inputs = mini_inputs(mini_shape, "full", None)

    def peak(masters: bool) -> float:
        step = memory.step_memory(
            mini_shape,
            inputs.trained,
            MINI_ROW,
            base_dtype="bf16" if masters else "fp32",
            precision="bf16",
            optim="adamw_torch_fused",
            master_weights=masters,
        )
        return estimate_step(step, micro_batch=8, grad_accum=1, gradient_checkpointing=False, label_logits=True).peak

    in_model, in_optimizer = peak(False), peak(True)
    assert in_optimizer < in_model - 4 * GIB
    inputs = replace(inputs, available_bytes=int((in_model + in_optimizer) / 2 + memory.OUTSIDE_ALLOCATOR_BYTES))
    training = {"method": "full", "batch_size": 8, "gradient_checkpointing": False}
    facts = {"precision": "bf16", "world_size": 1, "deepspeed": False}
    with pytest.raises(TrainingError) as error:
        batch_decision(validate_config({"training": training}, base_dir=tmp_path), inputs, **facts)
    assert f"training.master_weights=optimizer (about {memory.gib(in_optimizer)})" in str(error.value)
    asked = validate_config({"training": {**training, "master_weights": "optimizer"}}, base_dir=tmp_path)
    choice = batch_decision(asked, inputs, **facts, master_weights=True)
    assert choice.estimate is not None and choice.estimate.peak == in_optimizer
