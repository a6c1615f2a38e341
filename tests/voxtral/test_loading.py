"""load_voxtral loads local Voxtral folders and explains every failure with a ModelError."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from voxplug_voxtral import loading
from voxplug_voxtral.loading import describe_hub_failure, load_voxtral

from voxplug.errors import ModelError


def copy_without(source: Path, target: Path, *names: str) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*names))
    return target


def test_loads_the_tiny_folder_in_fp32_on_cpu(voxtral_tiny_dir: Path) -> None:
    import torch

    model, processor = load_voxtral(voxtral_tiny_dir, device="cpu", attn_implementation="sdpa")
    assert type(model).__name__ == "VoxtralForConditionalGeneration"
    assert type(processor.tokenizer).__name__ == "MistralCommonBackend"
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.config._attn_implementation == "sdpa"


def test_auto_device_is_cuda_when_available_else_cpu() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loading.resolve_device("auto").type == loading.resolve_device(None).type == expected


def test_bf16_keeps_the_positional_table_in_fp32(voxtral_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: True)
    model, _ = load_voxtral(voxtral_tiny_dir, dtype="bf16", device="cpu")
    assert model.dtype == torch.bfloat16
    assert model.model.audio_tower.embed_positions.weight.dtype == torch.float32


def test_bf16_on_a_cpu_without_bf16_is_refused(voxtral_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ModelError, match="no native bfloat16"):
        load_voxtral(voxtral_tiny_dir, dtype="bf16", device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "fp16", "device": "cpu"}, "fp16.*not supported on CPU"),
        ({"dtype": "half"}, "unknown dtype 'half'"),
        ({"attn_implementation": "flash"}, "unknown attn_implementation"),
        ({"device": "tpu:0"}, "unknown device"),
    ],
)
def test_bad_options_are_refused(voxtral_tiny_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_voxtral(voxtral_tiny_dir, **kwargs)


def test_cuda_without_cuda_is_refused(voxtral_tiny_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="CUDA is not available"):
        load_voxtral(voxtral_tiny_dir, device="cuda")


def test_flash_attention_needs_the_package_and_cuda(voxtral_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="needs the flash-attn package"):
        load_voxtral(voxtral_tiny_dir, attn_implementation="flash_attention_2", device="cpu")
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(ModelError, match="needs a CUDA device"):
        load_voxtral(voxtral_tiny_dir, attn_implementation="flash_attention_2", device="cpu")


def test_unknown_hub_id_says_what_was_tried() -> None:
    with pytest.raises(
        ModelError, match=r"'nobody/no-such-voxtral'.*not in the local cache.*tried the Hugging Face Hub"
    ):
        load_voxtral("nobody/no-such-voxtral", local_files_only=True)


def test_unreachable_hub_is_reported_as_no_internet() -> None:
    error = OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them")
    message = describe_hub_failure("mistralai/Voxtral-Mini-3B-2507", error, local_files_only=False)
    assert "no internet" in message and "local cache" in message


def test_missing_folder_and_missing_files_are_named(voxtral_tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such folder"):
        load_voxtral(tmp_path / "nowhere")
    broken = copy_without(voxtral_tiny_dir, tmp_path / "broken", "model.safetensors", "processor_config.json")
    with pytest.raises(ModelError, match=r"missing: model\.safetensors or .*; processor_config\.json or"):
        load_voxtral(broken)
    (broken / "params.json").write_text("{}")
    with pytest.raises(ModelError, match="mistral-format folder"):
        load_voxtral(broken)


def test_a_non_voxtral_config_names_its_model_type(voxtral_tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import WhisperConfig

    other = copy_without(voxtral_tiny_dir, tmp_path / "whisper", "config.json")
    WhisperConfig().save_pretrained(other)
    with pytest.raises(ModelError, match="is a 'whisper' model, not a Voxtral one"):
        load_voxtral(other)


def contiguity_seen(encoder: Any) -> list[bool]:
    """Record whether each encoder layer and the final norm get a contiguous input (hooks until the next call)."""
    seen: list[bool] = []
    for module in [*encoder.layers, encoder.layer_norm]:
        module.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    return seen


def test_the_audio_encoders_residual_stream_is_contiguous_with_the_same_output(voxtral_tiny_dir: Path) -> None:
    """transformers' encoder adds positions to a permuted view, and every residual add keeps its strides; the loaded
    model's first layer gets a contiguous copy, so every later add and norm does, and the output is the same."""
    import torch
    from transformers import VoxtralForConditionalGeneration

    ours, _ = load_voxtral(voxtral_tiny_dir, device="cpu")
    stock = VoxtralForConditionalGeneration.from_pretrained(voxtral_tiny_dir)
    features = torch.randn(2, 128, 3000, generator=torch.Generator().manual_seed(0))
    ours_seen, stock_seen = contiguity_seen(ours.model.audio_tower), contiguity_seen(stock.model.audio_tower)
    with torch.no_grad():
        expected = stock.model.audio_tower(features).last_hidden_state
        got = ours.model.audio_tower(features).last_hidden_state
    assert stock_seen == [False, False]  # the layout the hook mends
    assert ours_seen == [True, True]
    assert torch.equal(got, expected)
    hooks = len(ours.model.audio_tower.layers[0]._forward_pre_hooks)
    loading.contiguous_residual_stream(ours.model.audio_tower)
    assert len(ours.model.audio_tower.layers[0]._forward_pre_hooks) == hooks  # added once only
