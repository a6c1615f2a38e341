"""Full fine-tuning can save its model in half precision (half the size) while training on fp32 master weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_a_bf16_save_holds_the_same_trained_weights_at_half_the_size(
    make_config: Any, tmp_path: Path, tiny_model: Path
) -> None:
    from safetensors.torch import load_file
    from voxplug_voxtral.loading import load_voxtral

    from voxplug.training.run import train

    from .conftest import validated

    def run(save_dtype: str) -> Path:
        config = make_config(
            name=save_dtype,
            training__output_dir=str(tmp_path / save_dtype),
            training__method="full",
            training__max_steps=2,
            training__full={"save_dtype": save_dtype},
            evaluation__max_new_tokens=2,
        )
        return train(validated(config, tmp_path), progress=False).model_dir

    full, half = run("fp32"), run("bf16")
    floats = [t for t in load_file(half / "model.safetensors").values() if t.is_floating_point()]
    assert floats and {t.dtype for t in floats} == {torch.bfloat16}
    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size

    def weights(folder: Path) -> dict[str, Any]:
        model, _processor = load_voxtral(folder, dtype="fp32", device="cpu")
        return {name: parameter.detach() for name, parameter in model.named_parameters()}

    base, trained, halved = weights(tiny_model), weights(full), weights(half)
    assert trained.keys() == halved.keys() == base.keys()
    for name in trained:  # the same weights, rounded to bf16 (runs are seeded, so both trained alike)
        torch.testing.assert_close(halved[name], trained[name].to(torch.bfloat16).float(), rtol=0, atol=0)
    assert not torch.equal(trained["lm_head.weight"], base["lm_head.weight"])  # what loaded is the trained model
