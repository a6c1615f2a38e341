"""The language model's decoder layers replayed as CUDA graphs in LoRA training (voxplug/training/speed/cuda_graphs.py,
plugins/voxplug_voxtral/graphs.py).

On CPU: when graphs may be set up, and that the replaced forward computes transformers' loss and gradients (the
graphs never engage without CUDA). On a GPU (marked ``gpu``): graphed training gives eager training's losses and
adapters over optimizer steps with gradient accumulation and two batch shapes; a capture that fails leaves eager
layers; evaluation drops the graphs. At full shape, benchmarks/train_throughput.py compares
``lora-default-noprofile`` with ``lora-eager``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from .conftest import lora_voxtral, uneven_audio_rows, validated

torch = pytest.importorskip("torch")


def collated(tiny_model: Path, rows: list[dict[str, Any]], device: str) -> dict[str, Any]:
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.loading import load_voxtral_processor

    batch = VoxtralBatchBuilder(load_voxtral_processor(tiny_model), attention_mask=False)(rows)
    return {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()}


def loss_and_grads(model: Any, batch: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("change", "possible"),
    [
        ({}, True),
        ({"training.compile": True}, False),
        ({"training.gradient_checkpointing": True}, False),
        ({"training.speed": {"cuda_graphs": False}}, False),
    ],
)
def test_graphs_need_one_cuda_process_without_compile_or_checkpointing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, change: dict[str, Any], possible: bool
) -> None:
    from voxplug.training import devices
    from voxplug.training.context import decide

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    training = {key.split(".", 1)[1]: value for key, value in change.items()}
    config = validated({"model": {"name_or_path": "tiny"}, "training": training}, tmp_path)
    assert decide(config, {}, train_rows=8, world_size=1).speed.cuda_graphs is possible
    assert decide(config, {}, train_rows=8, world_size=2).speed.cuda_graphs is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_without_cuda_the_trainer_sets_up_no_graphs(tmp_path: Path) -> None:
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_voxtral.family import VoxtralFamily
    from voxplug_voxtral.loading import load_voxtral
    from voxplug_voxtral.tiny import build_tiny_voxtral

    from voxplug.training.context import decide
    from voxplug.training.speed import apply_speed

    model, _ = load_voxtral(build_tiny_voxtral(tmp_path / "tiny"), dtype="fp32", device="cpu")
    method = LoraMethod(LoraOptions())
    context = decide(validated({"model": {"name_or_path": "tiny"}}, tmp_path), {}, train_rows=8, world_size=1)
    model = method.prepare_model(model, VoxtralFamily(), context)
    report = apply_speed(model, VoxtralFamily(), context, method=method)
    assert report.cuda_graphs is None
    assert "forward" not in vars(VoxtralFamily().scope_module(model, "language_model"))


@pytest.mark.slow
def test_the_replaced_forward_computes_transformers_loss_and_gradients(tmp_path: Path, tiny_model: Path) -> None:
    """On CPU the graphs never engage: every call goes through transformers' forward, with all its arguments."""
    from voxplug_voxtral.family import VoxtralFamily

    model = lora_voxtral(tmp_path / "m", "fp32")
    batch = collated(tiny_model, uneven_audio_rows(), "cpu")
    model.train()
    expected_loss, expected = loss_and_grads(model, batch)
    graphs = VoxtralFamily().speed().cuda_graphs(model)
    assert graphs is not None
    assert "forward" in vars(VoxtralFamily().scope_module(model, "language_model"))
    loss, grads = loss_and_grads(model, batch)
    assert loss == expected_loss
    assert all(torch.equal(grads[name], grad) for name, grad in expected.items())
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == model.config.text_config.num_hidden_layers + 1
    assert graphs.captures == graphs.replays == 0


def test_a_padded_batch_gets_its_own_output_and_gradients(tmp_path: Path) -> None:
    """The promise behind ``pad_dims``: Voxtral's decoder layers, given a batch zero-padded along the dimensions the
    graphs declare (more rows, more positions), compute the batch's own output and the same adapter gradients."""
    from voxplug_voxtral.family import VoxtralFamily

    from voxplug.training.speed.cuda_graphs import _padded

    model = lora_voxtral(tmp_path / "m", "fp32")
    graphs = VoxtralFamily().speed().cuda_graphs(model)
    language_model = VoxtralFamily().scope_module(model, "language_model")
    torch.manual_seed(1)
    hidden = torch.randn(3, 21, language_model.config.hidden_size)
    cos, sin = language_model.rotary_emb(hidden, position_ids=torch.arange(21).unsqueeze(0))
    inputs = (hidden, cos, sin)
    weights = torch.randn(hidden.shape)

    def output_and_grads(given: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
        model.zero_grad(set_to_none=True)
        output = graphs.run(*given)[tuple(slice(0, size) for size in hidden.shape)]
        (output * weights).sum().backward()
        return output.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    grown = [
        [size + 11 * (dim in dims) for dim, size in enumerate(t.shape)]
        for t, dims in zip(inputs, graphs.pad_dims, strict=True)
    ]
    assert grown[0][:2] == [14, 32]  # rows and positions
    padded = tuple(_padded(t, shape) for t, shape in zip(inputs, grown, strict=True))
    assert all(list(t.shape) == shape for t, shape in zip(padded, grown, strict=True))
    expected_output, expected_grads = output_and_grads(inputs)
    output, grads = output_and_grads(padded)
    # fp32 rounding only (other matmul shapes sum in another order)
    assert (output - expected_output).abs().max() <= 1e-5 * expected_output.abs().max()
    for name, grad in expected_grads.items():
        assert (grads[name] - grad).abs().max() <= 1e-4 * grad.abs().max(), name


def planner(**options: Any) -> Any:
    """A LayerGraphs over one (rows, positions, width) input, whose captures are recorded but never made (the plan
    is pure bookkeeping, so it runs on CPU)."""
    from voxplug.training.speed.cuda_graphs import LayerGraphs

    return LayerGraphs([], lambda hidden: hidden, **options)


def plan(graphs: Any, rows: int, positions: int, width: int = 4) -> str:
    """Plan a batch of that shape; a planned capture is then recorded as made."""
    from voxplug.training.speed.cuda_graphs import _Captured, _signature

    hidden = torch.zeros(rows, positions, width)
    key = _signature((hidden,))
    action, _ = graphs._plan(key, hidden.numel())
    if action == "capture":
        graphs._graphs[key] = _Captured(None, None, (hidden,), hidden, hidden, ())
    return action


def test_a_shape_pads_into_a_captured_one_until_its_waste_would_cost_a_capture() -> None:
    graphs = planner(pad_dims=[(0, 1)], capture_cost=1.0)
    assert plan(graphs, 8, 480) == "capture"
    assert plan(graphs, 8, 480) == "replay"
    # 8 x 360 in 8 x 480 wastes a quarter of a replay: padded while the wasted sum stays under one capture
    assert [plan(graphs, 8, 360) for _ in range(5)] == ["pad", "pad", "pad", "capture", "replay"]
    assert plan(graphs, 8, 496) == "capture"  # longer than every captured shape: nothing holds it
    assert plan(graphs, 6, 488) == "pad"  # the smallest captured shape that holds it: 8 x 496
    assert graphs._waste[next(k for k in graphs._waste if k[0][0] == (6, 488, 4))] == pytest.approx(1 - 6 * 488 / 3968)
    assert plan(graphs, 8, 480, width=2) == "capture"  # a dimension that may not be padded


def test_without_pad_dims_or_with_no_capture_cost_every_shape_is_captured() -> None:
    for options in ({}, {"pad_dims": [(0, 1)], "capture_cost": 0}):
        graphs = planner(**options)
        assert [plan(graphs, 8, n) for n in (480, 360, 360)] == ["capture", "capture", "replay"]


def test_once_the_graphs_are_full_a_shape_pads_where_it_can_and_otherwise_runs_eagerly() -> None:
    graphs = planner(pad_dims=[(0, 1)], capture_cost=1.0, max_graphs=1, eager_sightings=1)
    assert [plan(graphs, 8, 480) for _ in range(2)] == ["eager", "capture"]
    assert [plan(graphs, 8, 240) for _ in range(3)] == ["pad", "pad", "pad"]  # waste 1.5 > 1, but no room
    assert plan(graphs, 8, 496) == "eager"


# -- on a GPU ------------------------------------------------------------------------------------------------


def cuda_lora(folder: Path) -> Any:
    """The tiny bf16 Voxtral with fp32 adapters on CUDA, eager (the tests below add graphs where they want them)."""
    return lora_voxtral(folder, "bf16").to("cuda")


def train(model: Any, steps: list[list[dict[str, Any]]]) -> list[float]:
    """AdamW steps over the given micro-batches (gradient accumulation), under bf16 autocast as the Trainer runs."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for micro_batches in steps:
        for batch in micro_batches:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**batch).loss
            (loss / len(micro_batches)).backward()
            losses.append(loss.item())
            del loss  # as the Trainer keeps no graph alive across steps (a capture needs that: cuda_graphs.py)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return losses


def adapters(model: Any) -> dict[str, Any]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("failing_captures", "capture_cost", "expected"),
    [
        # each shape captured at its first batch: 2 captures, 10 replays
        (0, 0, {"enabled": True, "captures": 2, "replays": 10, "padded_replays": 0, "failed_captures": 0}),
        # captures too dear to make twice: the 2-row batches pad into the 4-row batches' graphs
        (0, 100, {"enabled": True, "captures": 1, "replays": 10, "padded_replays": 5, "failed_captures": 0}),
        # the first capture fails: graphs are off for the run
        (1, 0, {"enabled": False, "captures": 0, "replays": 0, "padded_replays": 0, "failed_captures": 1}),
    ],
    ids=["graphed", "padded", "capture-fails"],
)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_training_gives_eager_losses_and_adapters(
    tmp_path: Path,
    tiny_model: Path,
    caplog: pytest.LogCaptureFixture,
    failing_captures: int,
    capture_cost: float,
    expected: dict[str, Any],
) -> None:
    """Two batch shapes, two micro-batches a step, five AdamW steps. The smaller shape is captured, or padded into
    the larger one's graphs. A capture fails when the layers synchronise with the host (here, on purpose, in the
    first capture); training then goes on eagerly with the same numbers."""
    from voxplug_voxtral.family import VoxtralFamily

    four = collated(tiny_model, uneven_audio_rows(4), "cuda")
    two = collated(tiny_model, uneven_audio_rows(2), "cuda")
    assert four["input_ids"].shape != two["input_ids"].shape
    assert two["input_ids"].shape[1] <= four["input_ids"].shape[1]  # so the 4-row graphs can hold 2 rows
    steps = [[four, two]] * 5
    graphed, eager = cuda_lora(tmp_path / "g"), cuda_lora(tmp_path / "e")
    graphs = VoxtralFamily().speed().cuda_graphs(graphed)
    assert graphs.eager_sightings == 0
    graphs.capture_cost = capture_cost
    run, captures = graphs.run, []

    def run_failing_first(hidden: Any, *rest: Any) -> Any:
        captures.append(hidden.shape)
        if len(captures) <= failing_captures:
            hidden = hidden + hidden.sum().item() * 0  # a host synchronisation: not allowed while capturing
        return run(hidden, *rest)

    graphs.run = run_failing_first
    with caplog.at_level(logging.WARNING, logger="voxplug.training"):
        graphed_losses = train(graphed, steps)
    eager_losses = train(eager, steps)
    stats = graphs.stats()
    assert (stats.pop("padding") > 0) == bool(expected["padded_replays"])
    assert stats == expected
    assert ("capture failed" in caplog.text) == bool(failing_captures)
    assert graphed_losses == pytest.approx(eager_losses, rel=2e-3)
    expected = adapters(eager)
    for name, value in adapters(graphed).items():
        assert (value - expected[name]).abs().max() <= 1e-2 * expected[name].abs().max(), name
    # a failed capture must leave the GPU's random generator usable, on the same stream of numbers
    seed = torch.cuda.initial_seed()
    assert torch.nn.functional.dropout(torch.ones(64, device="cuda"), 0.5).sum() > 0
    assert torch.cuda.initial_seed() == seed
    graphed.eval()
    with torch.no_grad():
        graphed(**four)
    assert not graphs._graphs  # evaluation dropped the graphs and their memory
