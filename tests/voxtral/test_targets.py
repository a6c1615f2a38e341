"""LoRA target regexes hit exactly the chosen Voxtral parts, on the tiny model and on the full Voxtral-Mini layout."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from voxplug_voxtral.targets import lora_target_regex

from voxplug.errors import ConfigError

ALL = {"language_model", "audio_tower", "projector"}


def lora_modules_per_part(model) -> Counter:
    """Count LoRA-wrapped linear layers under each of Voxtral's three parts."""
    counts: Counter = Counter()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and not name.endswith(("lora_A", "lora_B")):
            part = next((p for p in ("language_model", "audio_tower", "multi_modal_projector") if p in name), "other")
            counts[part] += 1
    return counts


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"language_model"}, {"language_model": 14}),
        ({"language_model", "audio_tower"}, {"language_model": 14, "audio_tower": 6}),
        ({"projector"}, {"multi_modal_projector": 2}),
        (ALL, {"language_model": 14, "audio_tower": 6, "multi_modal_projector": 2}),
    ],
)
def test_peft_wraps_only_the_chosen_parts_of_the_tiny_model(voxtral_tiny_dir: Path, scope, expected) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import VoxtralForConditionalGeneration

    model = VoxtralForConditionalGeneration.from_pretrained(voxtral_tiny_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=lora_target_regex(scope)))
    assert dict(lora_modules_per_part(peft_model)) == expected


def test_default_scope_gives_no_adapter_in_the_audio_tower(voxtral_tiny_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import VoxtralForConditionalGeneration

    model = VoxtralForConditionalGeneration.from_pretrained(voxtral_tiny_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=lora_target_regex()))
    assert lora_modules_per_part(peft_model)["audio_tower"] == 0
    trainable = [name for name, param in peft_model.named_parameters() if param.requires_grad]
    assert trainable and not any("audio_tower" in name for name in trainable)


def test_regexes_on_the_full_voxtral_mini_module_names() -> None:
    """Built on the meta device: 30 LM layers x 7, 32 encoder layers x 6, 2 projector linears."""
    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    with torch.device("meta"):
        model = VoxtralForConditionalGeneration(VoxtralConfig(audio_token_id=24))
    assert sum(param.numel() for param in model.parameters()) == 4_676_271_104
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}

    def matched(scope: set[str]) -> list[str]:
        return [name for name in linears if re.fullmatch(lora_target_regex(scope), name)]

    assert len(matched({"language_model"})) == 210
    assert len(matched({"audio_tower"})) == 192
    assert matched({"projector"}) == ["model.multi_modal_projector.linear_1", "model.multi_modal_projector.linear_2"]
    assert not any("audio_tower" in name or name == "lm_head" for name in matched({"language_model"}))
    attention = [name for name in matched({"language_model"}) if re.search(r"\.(q|k|v|o)_proj$", name)]
    lora_r8_params = sum(8 * (linears[n].in_features + linears[n].out_features) for n in attention)
    assert lora_r8_params == 5_406_720  # the HF course's r=8 q/k/v/o LoRA, minus its accidental encoder adapters


@pytest.mark.parametrize("scope", [set(), {"decoder"}, {"language_model", "encoder"}])
def test_unknown_or_empty_scope_is_a_config_error(scope) -> None:
    with pytest.raises(ConfigError, match="LoRA scope"):
        lora_target_regex(scope)
