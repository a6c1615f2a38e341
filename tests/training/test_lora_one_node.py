"""The one-node LoRA forward (plugins/voxplug_trainers/lora_linear.py) computes what PEFT's forward computes.

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
    from voxplug_voxtral.collator import VoxtralTranscriptionCollator
    from voxplug_voxtral.loading import load_voxtral_processor

    processor = load_voxtral_processor(tiny_model)
    return VoxtralTranscriptionCollator(processor, attention_mask=False)(uneven_audio_rows())


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


def test_the_lora_trainer_runs_every_adapted_layer_as_one_node(fp32_lora: object) -> None:
    from peft.tuners.lora.layer import Linear as LoraLinear

    layers = [m for m in fp32_lora.modules() if isinstance(m, LoraLinear)]
    assert len(layers) == 7 * fp32_lora.config.text_config.num_hidden_layers
    assert all("_peft_forward" in vars(layer) for layer in layers)


def test_one_node_lora_gives_peft_loss_and_gradients_with_fewer_ops(fp32_lora: object, batch: dict) -> None:
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    fast_loss, fast_grads, fast_ops = loss_and_grads(fp32_lora, batch)
    restored = restore_peft_forward(fp32_lora)
    try:
        peft_loss, peft_grads, peft_ops = loss_and_grads(fp32_lora, batch)
    finally:
        assert use_one_node_lora(fp32_lora) == restored
    assert restored == 7 * fp32_lora.config.text_config.num_hidden_layers
    assert torch.allclose(fast_loss, peft_loss, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == peft_grads.keys() and len(fast_grads) == 2 * restored
    for name, grad in peft_grads.items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(fast_grads[name], grad, rtol=1e-4, atol=1e-6), name
    # per adapted layer, PEFT runs linear calls, a multiply and an add forward and their nodes backward
    assert fast_ops <= peft_ops - 4 * restored


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
        use_one_node_lora(fp32_model)
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
            use_one_node_lora(fp32_lora)
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
    assert one_node_layers(lora_voxtral(tmp_path / "off", "fp32", fused=False)) == 0
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # ZeRO-3 gathers weights only for called modules
    assert one_node_layers(lora_voxtral(tmp_path / "deepspeed", "fp32")) == 0


def test_an_optimizer_step_moves_the_adapters_as_peft_does(fp32_lora: object, batch: dict) -> None:
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

    def one_step(model: object) -> dict:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model(**batch).loss.backward()
        optimizer.step()
        return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    fast_model, peft_model = copy.deepcopy(fp32_lora), copy.deepcopy(fp32_lora)
    restore_peft_forward(peft_model)
    use_one_node_lora(fast_model)  # a no-op: the copy kept the one-node forward
    before = {name: p.detach().clone() for name, p in fp32_lora.named_parameters() if p.requires_grad}
    fast, peft = one_step(fast_model), one_step(peft_model)
    for name, value in peft.items():
        assert not torch.equal(value, before[name]), name
        assert torch.allclose(fast[name], value, rtol=1e-4, atol=1e-5), name


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
