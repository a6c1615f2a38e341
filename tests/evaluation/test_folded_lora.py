"""Folded LoRA layers compute what PEFT's own forward computes, and step aside wherever they would not."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")


class Block(torch.nn.Module):
    """Three projections of one input, as a Llama attention block has."""

    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(16, 32, bias=False)
        self.k_proj = torch.nn.Linear(16, 8, bias=False)
        self.v_proj = torch.nn.Linear(16, 8, bias=True)

    def layers(self) -> list[Any]:
        return [self.q_proj, self.k_proj, self.v_proj]


def adapted(dropout: float = 0.0, **config: Any) -> Any:
    torch.manual_seed(0)
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "k_proj", "v_proj"], **config
    )
    lora.init_lora_weights = False  # random B: the adapters change the output
    return peft.get_peft_model(Block(), lora).base_model.model


def test_folded_layers_give_peft_outputs_in_fp32() -> None:
    from voxplug.api import fold_lora

    block = adapted().eval()
    x = torch.randn(5, 1, 16)
    folded = fold_lora(block.layers(), torch.float32)
    assert folded is not None and folded.ranks == (4, 4, 4)
    with torch.inference_mode():
        for ours, theirs in zip(folded(x), (layer(x) for layer in block.layers()), strict=True):
            assert ours.shape == theirs.shape
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        assert not torch.equal(block.q_proj(x), block.q_proj.base_layer(x))  # the adapter takes part


def test_under_autocast_a_bf16_base_with_fp32_adapters_folds_to_bf16() -> None:
    """The Trainer's model on a GPU: bf16 base, fp32 adapters, bf16 autocast (here on the CPU)."""
    from voxplug.api import compute_dtype, fold_lora

    block = adapted().eval()
    for layer in block.layers():
        layer.base_layer.to(torch.bfloat16)
    x = torch.randn(6, 1, 16).to(torch.bfloat16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        dtype = compute_dtype(x.device, x.dtype)
        assert dtype == torch.bfloat16
        folded = fold_lora(block.layers(), dtype)
        assert folded is not None and folded.down.dtype == torch.bfloat16
        for ours, theirs in zip(folded(x), (layer(x) for layer in block.layers()), strict=True):
            assert ours.dtype == theirs.dtype == torch.bfloat16
            torch.testing.assert_close(ours.float(), theirs.float(), rtol=2e-2, atol=2e-2)


def test_without_autocast_fp32_adapters_over_a_bf16_base_fold_in_fp32() -> None:
    """A model loaded for inference (``PeftModel.from_pretrained`` over a bf16 base): PEFT computes the fp32
    adapters in fp32 and adds them in fp32 before rounding to bf16, and so does the fold."""
    from voxplug.api import fold_lora

    block = adapted().eval()
    for layer in block.layers():
        layer.base_layer.to(torch.bfloat16)
    x = torch.randn(64, 1, 16).to(torch.bfloat16)
    folded = fold_lora(block.layers(), torch.bfloat16)
    assert folded is not None and folded.adapter_dtype == folded.down.dtype == torch.float32
    with torch.inference_mode():
        for ours, theirs in zip(folded(x), (layer(x) for layer in block.layers()), strict=True):
            assert ours.dtype == theirs.dtype == torch.bfloat16
            # one bf16 rounding of fp32 sums that differ by an fp32 rounding at most
            torch.testing.assert_close(ours, theirs, rtol=2**-8, atol=0.0)
            assert (ours == theirs).float().mean() > 0.99
        assert not torch.equal(folded(x)[0], block.q_proj.base_layer(x))  # the adapter takes part
    block.k_proj.lora_A["default"].to(torch.bfloat16)  # adapters in two dtypes: PEFT computes each in its own
    assert fold_lora(block.layers(), torch.bfloat16) is None
    block.k_proj.lora_B["default"].to(torch.bfloat16)
    assert fold_lora([block.q_proj, block.k_proj], torch.bfloat16) is None
    assert fold_lora([block.k_proj], torch.bfloat16) is not None  # bf16 adapters over a bf16 base: in bf16
    wide = adapted().eval()
    for layer in wide.layers():
        layer.base_layer.to(torch.float16)
        layer.lora_A["default"].to(torch.bfloat16)
        layer.lora_B["default"].to(torch.bfloat16)
    assert fold_lora(wide.layers(), torch.float16) is None  # neither the base's dtype nor float32


def test_what_peft_computes_otherwise_is_not_folded() -> None:
    from voxplug.api import fold_lora

    block = adapted().eval()
    assert fold_lora([torch.nn.Linear(16, 8)], torch.float32) is None  # not a LoRA layer
    assert fold_lora(block.layers(), torch.bfloat16) is None  # a base weight in another dtype
    assert fold_lora([], torch.float32) is None
    block.q_proj.merge()
    assert fold_lora(block.layers(), torch.float32) is None  # merged into the base
    block.q_proj.unmerge()
    assert fold_lora(block.layers(), torch.float32) is not None
    for layer in block.layers():
        layer.enable_adapters(False)
    assert fold_lora(block.layers(), torch.float32) is None  # adapters switched off
    training = adapted(dropout=0.5).train()
    assert fold_lora(training.layers(), torch.float32) is None  # dropout in effect
    assert fold_lora(training.eval().layers(), torch.float32) is not None  # in eval mode dropout does nothing
    dora = adapted(use_dora=True).eval()
    assert fold_lora(dora.layers(), torch.float32) is None  # a LoRA variant


def test_a_fold_is_a_snapshot_of_the_adapters() -> None:
    """A fold copies the adapters, cast or not: a change after it (a training step) shows only in a new fold."""
    from voxplug.api import fold_lora

    block = adapted().eval()
    x = torch.randn(3, 16)
    before = fold_lora(block.layers(), torch.float32)
    with torch.no_grad():
        block.q_proj.lora_B["default"].weight.mul_(-2)
    after = fold_lora(block.layers(), torch.float32)
    with torch.inference_mode():
        now = block.q_proj(x)
        torch.testing.assert_close(after(x)[0], now, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(before(x)[0], now, rtol=1e-3, atol=1e-3)


def test_layers_of_different_ranks_and_scalings_keep_their_own() -> None:
    """Each layer's part of the shared down-projection, and its own scaling (ranks and alphas set per layer)."""
    from voxplug.api import fold_lora

    block = adapted(rank_pattern={"k_proj": 2, "v_proj": 6}, alpha_pattern={"v_proj": 3}).eval()
    folded = fold_lora(block.layers(), torch.float32)
    assert folded is not None and folded.ranks == (4, 2, 6)
    assert len(set(folded.scalings)) == 3
    x = torch.randn(4, 16)
    with torch.inference_mode():
        for ours, theirs in zip(folded(x), (layer(x) for layer in block.layers()), strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_more_cases_peft_computes_otherwise() -> None:
    from voxplug.api import fold_lora

    block = adapted().eval()
    block.q_proj.base_layer.to(torch.bfloat16)  # under autocast the adapters may differ, the base may not
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fold_lora([block.k_proj, block.v_proj], torch.float32) is not None
        assert fold_lora(block.layers(), torch.float32) is None
    assert fold_lora(adapted(lora_bias=True).eval().layers(), torch.float32) is None  # a bias on the adapter
    torch.manual_seed(0)
    second = peft.LoraConfig(r=2, target_modules=["q_proj", "k_proj", "v_proj"], init_lora_weights=False)
    model = peft.get_peft_model(Block(), second, adapter_name="second")
    model.add_adapter("third", second)
    two = model.base_model.model.eval()
    assert fold_lora(two.layers(), torch.float32) is not None  # "second" alone: any adapter name
    for layer in two.layers():
        layer.set_adapter(["second", "third"])
    assert fold_lora(two.layers(), torch.float32) is None  # two adapters at once
