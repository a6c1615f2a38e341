"""The audio encoder is frozen for real: no trainable weights, no autograd graph, no LoRA, unchanged weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxplug.config import validate_config

from .conftest import SPEECH, bundled_rows


@pytest.fixture(scope="module")
def batch(tiny_model: Path) -> dict[str, Any]:
    from voxplug_voxtral.family import VoxtralFamily, VoxtralTranscriptionCollator

    from voxplug.data.audio import load_audio_16k

    processor = VoxtralFamily().load_processor(str(tiny_model))
    rows = [
        {"audio": load_audio_16k(SPEECH / r["file"]).samples, "text": r["text"], "language": "en", "id": r["file"]}
        for r in bundled_rows()[:2]
    ]
    return VoxtralTranscriptionCollator(processor=processor)(rows)


def prepared(tiny_model: Path, method: str, options: dict[str, Any]) -> tuple[Any, Any]:
    """The tiny model prepared by a trainer plugin, and the family."""
    from voxplug_trainers.full import FullMethod
    from voxplug_trainers.lora import LoraMethod
    from voxplug_voxtral.family import VoxtralFamily

    from voxplug.training.context import decide

    family = VoxtralFamily()
    model, _ = family.load(str(tiny_model), dtype="fp32", device="cpu")
    trainer = {"lora": LoraMethod, "full": FullMethod}[method](options)
    config = validate_config({}, base_dir=Path.cwd())
    return trainer.prepare_model(model, family, decide(config, {}, train_rows=1, world_size=1)), family


def encoder_output_after_backward(model: Any, family: Any, batch: dict[str, Any]) -> Any:
    """Run forward and backward; return what the audio encoder produced."""
    seen: list[Any] = []
    family.frozen_encoder(model).register_forward_hook(lambda _m, _i, output: seen.append(output.last_hidden_state))
    model(**batch).loss.backward()
    return seen[0]


def params_named(model: Any, part: str, *, lora: bool) -> list[str]:
    return [name for name, _ in model.named_parameters() if part in name and ("lora_" in name) == lora]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "options"), [("lora", {}), ("full", {})])
def test_no_autograd_graph_leaves_the_encoder(tiny_model: Path, batch: dict, method: str, options: dict) -> None:
    model, family = prepared(tiny_model, method, options)
    encoded = encoder_output_after_backward(model, family, batch)
    assert encoded.grad_fn is None and not encoded.requires_grad
    encoder = family.frozen_encoder(model)
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())
    assert any(p.grad is not None for p in model.parameters())  # the rest did train


def test_lora_lands_on_the_language_model_only_by_default(tiny_model: Path) -> None:
    model, _ = prepared(tiny_model, "lora", {})
    assert params_named(model, "audio_tower", lora=True) == []
    assert params_named(model, "multi_modal_projector", lora=True) == []
    lm_lora = params_named(model, "language_model", lora=True)
    assert lm_lora and all(p.requires_grad for n, p in model.named_parameters() if n in lm_lora)
    assert [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n] == []
    assert model.peft_config["default"].task_type == "CAUSAL_LM"


def test_lora_on_the_encoder_when_asked_keeps_its_graph(tiny_model: Path, batch: dict) -> None:
    # The control: with adapters inside the encoder, gradients must flow through it (so the test above can fail).
    model, family = prepared(tiny_model, "lora", {"scopes": ["language_model", "audio_tower"]})
    assert params_named(model, "audio_tower", lora=True)
    assert encoder_output_after_backward(model, family, batch).grad_fn is not None


def test_full_training_can_freeze_the_projector(tiny_model: Path) -> None:
    model, family = prepared(tiny_model, "full", {"train_projector": False})
    projector = family.scope_module(model, "projector")
    assert all(not p.requires_grad for p in projector.parameters())
    assert all(p.requires_grad for p in family.scope_module(model, "language_model").parameters())


def test_unknown_lora_scope_is_one_clear_error(tiny_model: Path) -> None:
    from voxplug.errors import TrainingError

    with pytest.raises(TrainingError, match=r"training.lora.scopes: \['decoder'\] not parts of a voxtral model"):
        prepared(tiny_model, "lora", {"scopes": ["decoder"]})


def test_a_copy_of_a_frozen_encoder_runs_its_own_weights_without_grad() -> None:
    """``copy.deepcopy`` (and so a model converted after copying, to float64 say) keeps the copy's forward."""
    import copy

    import torch

    from voxplug.training.freezing import freeze_without_grad, is_frozen_without_grad

    encoder = torch.nn.Linear(4, 3)
    freeze_without_grad(encoder)
    twin = copy.deepcopy(encoder).double()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    out = twin(x)
    assert is_frozen_without_grad(twin) and out.dtype == torch.float64 and out.grad_fn is None
    assert torch.allclose(out, x @ twin.weight.t() + twin.bias)
    assert encoder(x.float()).grad_fn is None and encoder.weight.dtype == torch.float32
