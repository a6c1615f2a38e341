"""The Whisper FLOP count of ``benchmarks/model_flops.py`` against an independent one: the matmuls and convolutions
PyTorch's ``FlopCounterMode`` sees in a real forward and backward of a tiny random Whisper on CPU, for each way the
Whisper benchmark trains it (the counter takes the decoder's masked attention as the full matrix: the test counts
it so too)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def flops() -> Any:
    """``benchmarks/model_flops.py`` as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_flops", BENCHMARKS / "model_flops.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
        yield module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxplug_whisper.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"), multilingual=True)


def prepared(folder: Path, method: str) -> Any:
    """The tiny Whisper (fp32, eager attention: every attention matmul visible to the counter) as ``method`` trains
    it: everything (the seq2seq example), PEFT LoRA on every q/v (the PEFT Whisper notebooks), voxplug's ``lora``
    (PEFT's forward: its one-node layers write into their outputs, which the counter does not see) and ``full``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration
    from voxplug_trainers.full import FullMethod, FullOptions
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_whisper.family import WhisperFamily

    from voxplug.config import validate_config
    from voxplug.training.context import decide

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    config = validate_config({"model": {"name_or_path": str(folder)}}, base_dir=Path.cwd())
    context = decide(config, {}, train_rows=1, world_size=1)
    if method == "voxplug-lora":
        model = LoraMethod(LoraOptions(one_node=False, r=4)).prepare_model(model, WhisperFamily(), context)
    elif method == "voxplug-full":
        model = FullMethod(FullOptions()).prepare_model(model, WhisperFamily(), context)
    elif method == "seq2seq-lora":
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    return model.train()


def one_row(folder: Path) -> dict[str, Any]:
    import numpy as np
    from voxplug_whisper.collator import WhisperTranscriptionCollator
    from voxplug_whisper.loading import load_whisper_processor

    audio = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    collator = WhisperTranscriptionCollator(processor=load_whisper_processor(str(folder)))
    return collator([{"audio": audio, "text": "the quick brown fox jumps over the lazy dog", "language": "en"}])


def executed_flops(model: Any, batch: dict[str, Any]) -> int:
    """FLOPs PyTorch counts in a training step on ``batch``, the logits only at the label positions."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = batch["labels"]
    with FlopCounterMode(display=False) as counter:
        hidden = base.model(
            input_features=batch["input_features"], decoder_input_ids=batch["decoder_input_ids"]
        ).last_hidden_state
        logits = base.proj_out(hidden[labels != -100])
        torch.nn.functional.cross_entropy(logits, labels[labels != -100]).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("method", ["seq2seq-full", "seq2seq-lora", "voxplug-lora", "voxplug-full"])
def test_the_whisper_count_equals_the_executed_flops_of_an_unpadded_row(
    flops: Any, tiny: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = prepared(tiny, method)
    batch = one_row(tiny)
    tokens = batch["decoder_input_ids"].shape[1]
    label_tokens = int((batch["labels"] != -100).sum())
    assert 0 < label_tokens < tokens  # the prompt is masked
    shape = flops.WhisperShape.of(model.config)
    regime = flops.WhisperRegime.of(model)
    expected = {
        "seq2seq-full": flops.WhisperRegime(encoder_trains=True, decoder_trains=True),
        "seq2seq-lora": flops.WhisperRegime(
            lora_r=4,
            encoder_targets=frozenset({"q", "v"}),
            decoder_targets=frozenset({"self.q", "self.v", "cross.q", "cross.v"}),
        ),
        "voxplug-lora": flops.WhisperRegime(lora_r=4, decoder_targets=frozenset(flops.WHISPER_DECODER_TARGETS)),
        "voxplug-full": flops.WhisperRegime(decoder_trains=True),
    }[method]
    assert regime == expected
    causal = sum(flops.whisper_row_flops(shape, regime, tokens, label_tokens).values())
    monkeypatch.setattr(flops, "causal_pairs", lambda length, window=None: length * length)
    as_executed = sum(flops.whisper_row_flops(shape, regime, tokens, label_tokens).values())
    assert executed_flops(model, batch) == as_executed
    assert causal < as_executed  # the masked half of the decoder's self-attention is not useful work


@pytest.mark.parametrize(("shape", "published"), [("large-v3", 1550e6), ("large-v3-turbo", 809e6)])
def test_the_benchmark_shapes_have_the_published_sizes(
    flops: Any, shape: str, published: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's model card gives large-v3 1550 M parameters and large-v3-turbo 809 M."""
    import importlib.util

    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("whisper_throughput", BENCHMARKS / "whisper_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    config = WhisperConfig(**bench.SHAPES[shape])
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    parameters = sum(p.numel() for p in model.parameters())
    assert abs(parameters - published) / published < 0.01
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    counted = flops.WhisperShape.of(config)
    d = counted.d_model
    per_encoder_layer = 4 * d * d + 2 * d * counted.enc_ffn
    per_decoder_layer = 8 * d * d + 2 * d * counted.dec_ffn
    head = counted.vocab * d
    assert linear == counted.enc_layers * per_encoder_layer + counted.dec_layers * per_decoder_layer + head
