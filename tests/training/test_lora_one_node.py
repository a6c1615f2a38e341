"""The one-node LoRA forward (plugins/voxplug_trainers/lora_linear.py) computes what PEFT's forward computes, for
single layers and for groups of layers that share their input (q/k/v, gate/up).

Tiny Voxtral on CPU, one test also on CUDA. At full shape on a GPU, benchmarks/train_throughput.py compares the
loss after training with and without it (``lora-default`` against ``lora-peft``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from .conftest import lora_voxtral, uneven_audio_rows

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def batch(tiny_model: Path) -> dict:
    """Four bundled clips with transcripts of different lengths, collated for training."""
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.loading import load_voxtral_processor

    processor = load_voxtral_processor(tiny_model)
    return VoxtralBatchBuilder(processor, attention_mask=False)(uneven_audio_rows())


@pytest.fixture(scope="module")
def fp32_lora(tmp_path_factory: pytest.TempPathFactory) -> object:
    return lora_voxtral(tmp_path_factory.mktemp("tiny-fp32"), "fp32")


class OpCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten operations run (each is a kernel launch on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops += 1
        return func(*args, **(kwargs or {}))


def loss_and_grads(model: object, batch: dict, *, autocast: bool = False) -> tuple[torch.Tensor, dict, int]:
    """One forward and backward: the loss, the adapters' gradients and the number of aten ops."""
    model.zero_grad(set_to_none=True)
    counter = OpCounter()
    device = batch["input_ids"].device.type
    with counter, torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
        loss = model(**batch).loss
        loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, counter.ops


SHARED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # the Voxtral family's lora_shared_inputs


def close(fast: dict, exact: dict, tolerance: float) -> None:
    """Every gradient of ``fast`` matches ``exact`` to ``tolerance`` of the gradient's largest entry."""
    assert fast.keys() == exact.keys()
    for name, grad in exact.items():
        assert grad.abs().sum() > 0, name
        assert (fast[name] - grad).abs().max() <= tolerance * grad.abs().max(), name


def test_the_lora_trainer_runs_every_adapted_layer_as_one_node(fp32_lora: object) -> None:
    from peft.tuners.lora.layer import Linear as LoraLinear
    from voxplug_trainers.lora_linear import shared_input_groups
    from voxplug_voxtral.family import VoxtralFamily

    assert VoxtralFamily.lora_shared_inputs == SHARED
    layers = [m for m in fp32_lora.modules() if isinstance(m, LoraLinear)]
    blocks = fp32_lora.config.text_config.num_hidden_layers
    assert len(layers) == 7 * blocks
    assert all("_peft_forward" in vars(layer) for layer in layers)
    assert shared_input_groups(fp32_lora) == 2 * blocks  # q/k/v and gate/up of every block
    attention = fp32_lora.base_model.model.model.language_model.layers[0].self_attn
    group = vars(attention.q_proj)["_lora_group"]
    assert group.layers == [attention.q_proj, attention.k_proj, attention.v_proj]
    assert group.names == "q_proj/k_proj/v_proj"
    assert "_lora_group" not in vars(attention.o_proj)


def test_one_node_lora_gives_peft_loss_and_gradients_with_fewer_ops(fp32_lora: object, batch: dict) -> None:
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    grouped_loss, grouped_grads, grouped_ops = loss_and_grads(fp32_lora, batch)
    restored = restore_peft_forward(fp32_lora)
    try:
        peft_loss, peft_grads, peft_ops = loss_and_grads(fp32_lora, batch)
        assert use_one_node_lora(fp32_lora) == restored  # every layer its own node
        single_loss, single_grads, single_ops = loss_and_grads(fp32_lora, batch)
    finally:
        restore_peft_forward(fp32_lora)
        assert use_one_node_lora(fp32_lora, SHARED) == restored
    blocks = fp32_lora.config.text_config.num_hidden_layers
    assert restored == 7 * blocks and len(peft_grads) == 2 * restored
    for loss, grads in ((single_loss, single_grads), (grouped_loss, grouped_grads)):
        assert torch.allclose(loss, peft_loss, rtol=1e-5, atol=1e-6)
        close(grads, peft_grads, 1e-4)  # fp32 rounding in another order (float64: the next test)
    # per adapted layer, PEFT runs linear calls, a multiply and an add forward and their nodes backward
    assert single_ops <= peft_ops - 4 * restored
    # a group casts and multiplies its adapters once, and runs one down-projection for all of them
    assert grouped_ops <= single_ops - 4 * (2 * blocks)


def test_the_one_node_math_is_peft_math_in_float64(fp32_lora: object, batch: dict) -> None:
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    model = copy.deepcopy(fp32_lora).double()
    batch64 = {key: value.double() if value.is_floating_point() else value for key, value in batch.items()}
    grouped_loss, grouped, _ = loss_and_grads(model, batch64)
    restore_peft_forward(model)
    peft_loss, peft, _ = loss_and_grads(model, batch64)
    use_one_node_lora(model)
    single_loss, single, _ = loss_and_grads(model, batch64)
    assert abs(grouped_loss - peft_loss) < 1e-12 and abs(single_loss - peft_loss) < 1e-12
    close(grouped, peft, 1e-10)
    close(single, peft, 1e-10)


def accuracy_against_fp32(bf16_model: object, fp32_model: object, batch: dict) -> dict[str, tuple[float, float]]:
    """Loss error and mean gradient cosine against the fp32 computation, for the one-node and PEFT bf16 forwards."""
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    fast_loss, fast_grads, _ = loss_and_grads(bf16_model, batch, autocast=True)
    restore_peft_forward(bf16_model)
    peft_loss, peft_grads, _ = loss_and_grads(bf16_model, batch, autocast=True)
    restore_peft_forward(fp32_model)
    try:
        exact_loss, exact_grads, _ = loss_and_grads(fp32_model, batch)
    finally:
        use_one_node_lora(fp32_model, SHARED)
    assert all(grad.dtype == torch.float32 for grad in fast_grads.values())

    def cosines(grads: dict) -> list[float]:
        return [
            torch.nn.functional.cosine_similarity(grads[name].flatten(), exact.flatten(), dim=0).item()
            for name, exact in exact_grads.items()
        ]

    fast_cosines, peft_cosines = cosines(fast_grads), cosines(peft_grads)
    assert min(fast_cosines) > 0.5  # every gradient points the right way
    return {
        "one_node": (abs(fast_loss - exact_loss).item(), sum(fast_cosines) / len(fast_cosines)),
        "peft": (abs(peft_loss - exact_loss).item(), sum(peft_cosines) / len(peft_cosines)),
    }


def test_one_node_lora_under_autocast_is_as_accurate_as_peft(tmp_path: Path, fp32_lora: object, batch: dict) -> None:
    """A bf16 base with fp32 adapters under bf16 autocast, as on a GPU: loss and fp32 gradients as close to the
    fp32 computation as PEFT's own bf16 forward gets (this tiny random model amplifies bf16 rounding)."""
    model = lora_voxtral(tmp_path, "bf16")  # the same seed as fp32_lora: the same weights, rounded
    accuracy = accuracy_against_fp32(model, fp32_lora, batch)
    (fast_loss_error, fast_cosine), (peft_loss_error, peft_cosine) = accuracy["one_node"], accuracy["peft"]
    assert fast_loss_error <= 2 * peft_loss_error + 2e-3
    assert fast_cosine >= peft_cosine - 0.02


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_one_node_lora_is_as_accurate_as_peft(tmp_path: Path, batch: dict) -> None:
    """The same on CUDA, where the bf16 matmuls are cuBLAS's."""
    cuda_batch = {key: value.cuda() for key, value in batch.items()}
    fp32_model = lora_voxtral(tmp_path / "fp32", "fp32").cuda()
    bf16_model = lora_voxtral(tmp_path / "bf16", "bf16").cuda()
    accuracy = accuracy_against_fp32(bf16_model, fp32_model, cuda_batch)
    (fast_loss_error, fast_cosine), (peft_loss_error, peft_cosine) = accuracy["one_node"], accuracy["peft"]
    assert fast_loss_error <= 2 * peft_loss_error + 2e-3
    assert fast_cosine >= peft_cosine - 0.02


def test_one_node_lora_leaves_inference_disabled_and_merged_adapters_to_peft(fp32_lora: object, batch: dict) -> None:
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        fast = fp32_lora(**inputs).logits
        with fp32_lora.disable_adapter():
            base = fp32_lora(**inputs).logits
        restore_peft_forward(fp32_lora)
        try:
            peft = fp32_lora(**inputs).logits
        finally:
            use_one_node_lora(fp32_lora, SHARED)
    assert torch.allclose(fast, peft, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(base, peft, atol=1e-3)  # the adapters matter, and disabling them was honoured
    with fp32_lora.disable_adapter():  # with gradients on, too
        disabled = fp32_lora(**inputs).logits.detach()
    assert torch.allclose(disabled, base, rtol=1e-5, atol=1e-5)


def test_one_node_lora_saves_the_same_adapter_and_merges(tmp_path: Path, fp32_lora: object, batch: dict) -> None:
    from peft import PeftModel
    from voxplug_trainers.lora_linear import restore_peft_forward

    model = copy.deepcopy(fp32_lora)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        expected = model(**inputs).logits
        merged = model.merge_and_unload()(**inputs).logits  # merged layers compute the base only: PEFT's path
    assert torch.allclose(merged, expected, rtol=1e-4, atol=1e-4)
    base = copy.deepcopy(fp32_lora)
    restore_peft_forward(base)
    reloaded = PeftModel.from_pretrained(base.get_base_model(), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, expected, rtol=1e-5, atol=1e-5)


def test_layers_the_one_node_math_does_not_cover_keep_peft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peft.tuners.lora.layer import Linear as LoraLinear

    def one_node_layers(model: object) -> int:
        return sum("_peft_forward" in vars(m) for m in model.modules() if isinstance(m, LoraLinear))

    assert one_node_layers(lora_voxtral(tmp_path / "dropout", "fp32", dropout=0.1)) == 0
    assert one_node_layers(lora_voxtral(tmp_path / "off", "fp32", one_node=False)) == 0
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # ZeRO-3 gathers weights only for called modules
    assert one_node_layers(lora_voxtral(tmp_path / "deepspeed", "fp32")) == 0


def test_an_optimizer_step_moves_the_adapters_as_peft_does(fp32_lora: object, batch: dict) -> None:
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    def one_step(model: object) -> dict:
        # eps well above fp32 rounding: Adam's first step is g / (|g| + eps), which rounding flips where g ~ 0
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, eps=1e-3)
        model(**batch).loss.backward()
        optimizer.step()
        return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    fast_model, peft_model = copy.deepcopy(fp32_lora), copy.deepcopy(fp32_lora)
    restore_peft_forward(peft_model)
    use_one_node_lora(fast_model, SHARED)  # a no-op: the copy kept the one-node forward and its groups
    assert vars(fast_model.base_model.model.model.language_model.layers[0].mlp.up_proj)["_lora_group"]
    before = {name: p.detach().clone() for name, p in fp32_lora.named_parameters() if p.requires_grad}
    fast, peft = one_step(fast_model), one_step(peft_model)
    for name, value in peft.items():
        assert not torch.equal(value, before[name]), name
        # within 1% of the step: a gradient routed to the wrong adapter would be off by the whole step
        assert (fast[name] - value).abs().max() <= 0.01 * (value - before[name]).abs().max(), name


def test_a_base_layer_that_trains_gets_its_gradient_through_peft(fp32_lora: object, batch: dict) -> None:
    """The one-node math returns no gradient for the base weight, so a layer whose base trains falls back."""
    layer = fp32_lora.base_model.model.model.language_model.layers[0].self_attn.q_proj
    layer.base_layer.weight.requires_grad_(True)
    try:
        fp32_lora.zero_grad(set_to_none=True)
        fp32_lora(**batch).loss.backward()
        grad = layer.base_layer.weight.grad
    finally:
        layer.base_layer.weight.requires_grad_(False)
        fp32_lora.zero_grad(set_to_none=True)
        layer.base_layer.weight.grad = None
    assert grad is not None and grad.abs().sum() > 0


def test_a_biased_layer_and_checkpointed_layers_get_peft_gradients() -> None:
    """Whisper's q/v/out projections carry a bias; gradient checkpointing reruns the forward in the backward."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.checkpoint import checkpoint
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = torch.nn.Linear(16, 12, bias=True)
            self.k_proj = torch.nn.Linear(12, 8, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.k_proj(torch.tanh(self.q_proj(x)))

    torch.manual_seed(0)
    model = get_peft_model(Block(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"]))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    x = torch.randn(3, 5, 16, requires_grad=True)

    def grads(checkpointed: bool) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        x.grad = None
        out = checkpoint(model, x, use_reentrant=False) if checkpointed else model(x)
        out.square().sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in model.parameters() if p.requires_grad]

    peft = grads(checkpointed=False)
    assert use_one_node_lora(model) == 2
    for checkpointed in (False, True):
        fast = grads(checkpointed)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(fast, peft, strict=True))
    restore_peft_forward(model)


class Attention(torch.nn.Module):
    """q/k/v projections: on one input, on two (``memory``, as cross-attention), or with v unused."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(16, 12, bias=True)
        self.k_proj = torch.nn.Linear(16, 12, bias=False)
        self.v_proj = torch.nn.Linear(16, 8, bias=False)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, use_v: bool = True) -> torch.Tensor:
        kv = x if memory is None else memory
        out = torch.tanh(self.q_proj(x)) * self.k_proj(kv)
        return out.sum(-1, keepdim=True) * self.v_proj(kv) if use_v else out


def lora_attention() -> object:
    """:class:`Attention` with adapters of different ranks and scalings, and non-zero B."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "k_proj", "v_proj"],
        rank_pattern={"v_proj": 2},
        alpha_pattern={"k_proj": 2},
    )
    model = get_peft_model(Attention(), config)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    return model


@pytest.mark.parametrize("call", ["shared", "v unused", "checkpointed", "cross"])
def test_a_group_gives_peft_gradients_however_its_layers_are_called(call: str) -> None:
    """Ranks 4/4/2 and scalings 2/0.5/4 in one group; the forward rerun by checkpointing; a sibling never called
    (v unused) or siblings called on different tensors (cross), which compute alone and end the grouping."""
    from torch.utils.checkpoint import checkpoint
    from voxplug_trainers.lora_linear import MISSES_BEFORE_UNGROUPING, restore_peft_forward, use_one_node_lora

    model = lora_attention()
    x = torch.randn(3, 5, 16, requires_grad=True)
    memory = torch.randn(3, 5, 16, requires_grad=True) if call == "cross" else None

    def grads() -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        x.grad = None
        if call == "checkpointed":
            out = checkpoint(model, x, use_reentrant=False)
        else:
            out = model(x, memory=memory, use_v=call != "v unused")
        out.square().sum().backward()
        inputs = [x.grad.clone()] + ([memory.grad.clone()] if memory is not None else [])
        if memory is not None:
            memory.grad = None
        return inputs + [p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None]

    peft = grads()
    assert use_one_node_lora(model, [("q_proj", "k_proj", "v_proj")]) == 3
    group = vars(model.base_model.model.q_proj)["_lora_group"]
    assert len(group.layers) == 3
    for _ in range(MISSES_BEFORE_UNGROUPING + 1):
        fast = grads()
        assert len(fast) == len(peft)
        assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(fast, peft, strict=True))
    # a sibling that is never called, or called on another tensor, ends the grouping
    assert group.grouping is (call in ("shared", "checkpointed"))
    assert not group.pending  # no sibling's output outlives the forward
    restore_peft_forward(model)
    assert "_lora_group" not in vars(model.base_model.model.q_proj)
