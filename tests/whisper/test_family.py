"""The Whisper family: registration, detection from config.json, loading errors, LoRA scopes, frozen encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from voxplug_whisper.collator import WhisperTranscriptionCollator
from voxplug_whisper.family import WhisperFamily

from voxplug.errors import ConfigError, ModelError
from voxplug.plugins import PluginHost


def test_registered_through_the_entry_point(plugin_host: PluginHost) -> None:
    assert plugin_host.extension("model family", "whisper") is WhisperFamily
    assert plugin_host.extension("collator", "whisper-transcription") is WhisperTranscriptionCollator
    assert plugin_host.extension_plugin("model family", "whisper") == "whisper"
    assert WhisperFamily.default_collator == "whisper-transcription"


def test_family_detected_from_model_type(plugin_host: PluginHost, whisper_tiny_dir: Path, tmp_path: Path) -> None:
    from voxplug.models.detect import detect_family

    assert detect_family(str(whisper_tiny_dir), plugin_host) is WhisperFamily
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}), encoding="utf-8")
    assert detect_family(str(tmp_path), plugin_host) is WhisperFamily


@pytest.mark.slow
def test_load_gives_model_and_processor(whisper_tiny_dir: Path) -> None:
    import torch

    model, processor = WhisperFamily().load(
        str(whisper_tiny_dir), dtype="fp32", attn_implementation="sdpa", device="cpu"
    )
    assert type(model).__name__ == "WhisperForConditionalGeneration"
    assert next(model.parameters()).dtype == torch.float32
    assert type(processor).__name__ == "WhisperProcessor"
    assert type(WhisperFamily().load_processor(str(whisper_tiny_dir))).__name__ == "WhisperProcessor"


def test_load_errors_say_what_to_do(whisper_tiny_dir: Path, tmp_path: Path) -> None:
    family = WhisperFamily()
    with pytest.raises(ModelError, match="fp16.*does not run on CPU"):
        family.load(str(whisper_tiny_dir), dtype="fp16", device="cpu")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    with pytest.raises(ModelError, match="'llama' model, not a Whisper one"):
        family.load(str(tmp_path), device="cpu")
    with pytest.raises(ModelError, match="cannot read the config"):
        family.load(str(tmp_path / "missing"), device="cpu")


def test_cuda_on_a_cpu_machine_is_an_error(whisper_tiny_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ModelError, match="no CUDA device"):
        WhisperFamily().load(str(whisper_tiny_dir), device="cuda")


def lora_modules(model: Any, scopes: list[str]) -> list[str]:
    """The modules that got LoRA adapters for ``scopes``."""
    from peft import LoraConfig, get_peft_model

    regex = WhisperFamily().lora_target_modules(scopes)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=regex))
    return [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]


@pytest.fixture
def tiny_model(whisper_tiny_dir: Path) -> Any:
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir)


def test_lora_defaults_to_the_decoder(tiny_model: Any) -> None:
    default_scope = WhisperFamily.lora_scopes[0]
    assert default_scope == "decoder"
    adapted = lora_modules(tiny_model, [default_scope])
    suffixes = sorted(name.split("layers.0.")[1] for name in adapted)
    assert all(".model.decoder.layers." in name for name in adapted)
    assert suffixes == sorted(
        [f"{attn}.{proj}_proj" for attn in ("self_attn", "encoder_attn") for proj in ("q", "k", "v", "out")]
        + ["fc1", "fc2"]
    )


def test_lora_encoder_scope(tiny_model: Any) -> None:
    adapted = lora_modules(tiny_model, ["encoder"])
    assert adapted and all(".model.encoder.layers." in name for name in adapted)
    assert len(adapted) == 6  # q, k, v, out, fc1, fc2 of the one encoder layer


def test_lora_scope_errors() -> None:
    with pytest.raises(ConfigError, match="non-empty subset of \\['decoder', 'encoder'\\], got \\['audio_tower'\\]"):
        WhisperFamily().lora_target_modules(["audio_tower"])
    with pytest.raises(ConfigError, match="got none"):
        WhisperFamily().lora_target_modules([])


def test_frozen_encoder_through_peft(tiny_model: Any) -> None:
    from peft import LoraConfig, get_peft_model

    family = WhisperFamily()
    encoder = tiny_model.model.encoder
    assert family.frozen_encoder(tiny_model) is encoder
    wrapped = get_peft_model(tiny_model, LoraConfig(r=2, target_modules=family.lora_target_modules(["decoder"])))
    assert family.frozen_encoder(wrapped) is encoder
    with pytest.raises(ModelError, match="no model.encoder"):
        family.frozen_encoder(object())
