"""The Space's transcription on a CUDA GPU: transformers' ``generate`` with a static key/value cache (which transformers
compiles), as ``app.py`` runs where voxplug is not installed, gives the tokens of plain greedy ``generate``.

The app (``voxplug_space.demo_app``) imports gradio only to serve; :class:`Transcriber` is driven here directly. In
float32 the two paths must agree token for token (the same model, one clip at a time: only the cache layout and the
compiled kernels differ). In bfloat16, what a Space loads on a GPU, the static path must run without falling back;
its agreement with plain ``generate`` is recorded (near-ties of a random tiny model may flip in bf16).

Skipped without CUDA. Run on a GPU machine with ``python -m pytest tests/evaluation/test_gpu_space.py -m gpu``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from voxplug.data.audio import load_audio_16k

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
MAX_NEW_TOKENS = 24


@pytest.fixture(scope="module")
def audios(speech_clips: list[tuple[Path, str]]) -> list[np.ndarray]:
    return [load_audio_16k(path).samples for path, _ in speech_clips[:4]]


@pytest.fixture(scope="module")
def tiny_adapter(tiny_voxtral: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the tiny Voxtral's language model, with random (non-zero) B so that it changes the output."""
    from peft import LoraConfig, get_peft_model
    from transformers import VoxtralForConditionalGeneration

    torch.manual_seed(0)
    base = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj|down_proj)")
    model = get_peft_model(base, config)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    folder = tmp_path_factory.mktemp("tiny-adapter") / "adapter"
    model.save_pretrained(folder)
    return folder


def space_transcriber(monkeypatch: pytest.MonkeyPatch, spec: Any, dtype: torch.dtype) -> Any:
    """The app's :class:`Transcriber` as a Space builds it (no voxplug decoder), its model in ``dtype`` on CUDA."""
    from voxplug_space import demo_app

    monkeypatch.setattr(demo_app, "inference_device", lambda: ("cuda", dtype))
    transcriber = demo_app.Transcriber(spec, max_new_tokens=MAX_NEW_TOKENS, fast=False)
    assert transcriber.family is None and transcriber.static_cache  # the warm-up compiled without falling back
    return transcriber


def plain_generate(transcriber: Any, audio: np.ndarray) -> str:
    """The same model's greedy ``generate`` with its default (dynamic) cache, on the app's prompt."""
    processor, model = transcriber.processor, transcriber.model
    inputs = processor.apply_transcription_request(
        language=None, audio=[audio], model_id=transcriber.spec.model_ref, sampling_rate=16000, format=["WAV"]
    ).to(model.device, dtype=model.dtype)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()


def spec_of(kind: str, tiny_voxtral: Path, tiny_adapter: Path) -> Any:
    from voxplug_space.demo_app import ModelSpec

    if kind == "adapter":
        return ModelSpec(str(tiny_adapter), "adapter", base_model=str(tiny_voxtral))
    return ModelSpec(str(tiny_voxtral), "full")


@pytest.mark.parametrize("kind", ["full", "adapter"])
def test_the_static_cache_path_gives_the_plain_generate_tokens(
    kind: str,
    tiny_voxtral: Path,
    tiny_adapter: Path,
    audios: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transcriber = space_transcriber(monkeypatch, spec_of(kind, tiny_voxtral, tiny_adapter), torch.float32)
    space = [transcriber.transcribe(audio, None) for audio in audios]
    assert transcriber.static_cache  # no request fell back to the dynamic cache
    assert all(space), space
    assert space == [plain_generate(transcriber, audio) for audio in audios]


def test_a_bf16_space_decodes_with_the_static_cache(
    tiny_voxtral: Path,
    tiny_adapter: Path,
    audios: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
) -> None:
    transcriber = space_transcriber(monkeypatch, spec_of("adapter", tiny_voxtral, tiny_adapter), torch.bfloat16)
    space = [transcriber.transcribe(audio, None) for audio in audios]
    assert transcriber.static_cache and all(space), space
    plain = [plain_generate(transcriber, audio) for audio in audios]
    identical = f"{sum(a == b for a, b in zip(space, plain, strict=True))}/{len(plain)}"
    record_property("bf16_identical_clips", identical)
    print(f"bf16 Space transcripts identical to plain generate: {identical}")  # shown with pytest -rP
