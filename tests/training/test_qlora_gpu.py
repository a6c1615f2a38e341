"""QLoRA on a CUDA GPU: the tiny Voxtral's language model in bitsandbytes' 4-bit layers trains through the real run,
and merges into a bf16 base; and a per-process memory cap counts as a smaller card for the encoder cache.

Skipped without CUDA. Run on a GPU machine with ``python -m pytest tests/training/test_qlora_gpu.py -m gpu``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import bundled_rows, run_config, validated, write_manifest

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
pytest.importorskip("bitsandbytes")

STEPS = 30


@pytest.fixture(scope="module")
def tiny_model_4bit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxplug_voxtral.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("tiny-voxtral-64"), text_hidden=64)


def test_qlora_trains_on_the_gpu_and_merges_into_a_bf16_base(tmp_path: Path, tiny_model_4bit: Path) -> None:
    import bitsandbytes
    from peft import PeftModel
    from transformers import TrainerCallback, VoxtralForConditionalGeneration

    from voxplug.training.run import train

    seen: dict[str, Any] = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            layers = [m for m in model.modules() if isinstance(m, bitsandbytes.nn.Linear4bit)]
            seen["layers"] = len(layers)
            seen["devices"] = {m.weight.device.type for m in layers}
            seen["quant_type"] = {m.weight.quant_type for m in layers}

    manifest = write_manifest(tmp_path / "data", bundled_rows()[:12])
    config = run_config(
        tmp_path,
        tiny_model_4bit,
        manifest,
        model__quantization="nf4",
        training__max_steps=STEPS,
        training__learning_rate=2e-2,
        training__lr_scheduler="constant",
        training__eval_steps=STEPS,
        training__lora={"merge": True, "r": 16, "alpha": 32},
        evaluation__max_new_tokens=8,
    )
    result = train(validated(config, tmp_path), progress=False, callbacks=[Inspect()])
    # the language model's seven projections a layer, two layers, in 4-bit NF4 on the GPU; encoder and head are not
    assert seen == {"layers": 14, "devices": {"cuda"}, "quant_type": {"nf4"}}
    assert result.train_results["precision"] == "bf16"
    assert set(result.train_results["speed_stepped_aside"]) == {"cuda_graphs", "lora.one_node"}
    history = json.loads((result.run_dir / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, losses
    assert "eval_wer" in result.eval_results  # generation ran over the 4-bit layers

    merged_dir = result.saved["merged"]
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())
    base = VoxtralForConditionalGeneration.from_pretrained(tiny_model_4bit, dtype=torch.bfloat16).cuda()
    adapted = PeftModel.from_pretrained(base, str(result.saved["adapter"])).eval()
    merged = VoxtralForConditionalGeneration.from_pretrained(merged_dir).cuda().eval()
    assert next(merged.parameters()).dtype == torch.bfloat16
    ids = torch.tensor([[1, 3, 24, 24, 4, 100, 200, 2]], device="cuda")
    with torch.no_grad():
        want, got = adapted(input_ids=ids).logits.float(), merged(input_ids=ids).logits.float()
    assert torch.allclose(got, want, atol=0.05 * want.abs().max().item()), (got - want).abs().max()


def test_a_per_process_memory_cap_counts_as_a_smaller_card_for_the_encoder_cache() -> None:
    from voxplug.training.speed.encoder_cache import HEADROOM_BYTES, has_headroom

    device = torch.device("cuda", torch.cuda.current_device())
    _free, total = torch.cuda.mem_get_info(device)
    size = 2**30
    fits_the_card = total - HEADROOM_BYTES - torch.cuda.max_memory_allocated(device) - size > 2**30
    assert fits_the_card and has_headroom(device, size)
    try:
        torch.cuda.set_per_process_memory_fraction((HEADROOM_BYTES + size / 2) / total, device)
        assert not has_headroom(device, size)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)


def test_decoding_over_a_4bit_base_is_the_same_with_and_without_cuda_graphs(tiny_model_4bit: Path) -> None:
    """Evaluation replays each decoding step as a CUDA graph: over bitsandbytes' 4-bit layers it must give the
    transcripts of eager decoding."""
    import soundfile
    from voxplug_voxtral.family import VoxtralFamily

    from .conftest import SPEECH

    family = VoxtralFamily()
    model, processor = family.load(str(tiny_model_4bit), dtype="bf16", device="cuda", quantization="nf4")
    audios = [soundfile.read(SPEECH / row["file"], dtype="float32")[0] for row in bundled_rows()[:4]]
    languages = ["en"] * len(audios)
    graphed = family.transcribe(model, processor, audios, languages, max_new_tokens=12, cuda_graphs=True)
    eager = family.transcribe(model, processor, audios, languages, max_new_tokens=12, cuda_graphs=False)
    assert graphed == eager and any(graphed)
