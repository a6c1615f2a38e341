"""The voxtral-realtime family: loading with clear errors, LoRA scoped to the language model, options checked
before launch, the trained delay saved with the processor, and live transcription emitting what streaming does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from voxplug_voxtral_realtime.family import VoxtralRealtimeFamily, lora_target_regex
from voxplug_voxtral_realtime.generation import LiveTranscription, transcribe_streaming
from voxplug_voxtral_realtime.loading import load_realtime, load_realtime_processor, set_default_delay

from voxplug.errors import ConfigError, ModelError

from .conftest import manifest_rows


@pytest.fixture(scope="module")
def loaded(realtime_tiny_dir: Path):
    return load_realtime(realtime_tiny_dir, device="cpu")


def test_the_family_is_detected_from_the_checkpoint_and_loads_it(realtime_tiny_dir: Path, loaded) -> None:
    from voxplug.models.detect import detect_family
    from voxplug.plugins import PluginHost

    assert detect_family(str(realtime_tiny_dir), PluginHost().load()) is VoxtralRealtimeFamily
    model, processor = loaded
    assert type(model).__name__ == "VoxtralRealtimeForConditionalGeneration"
    assert type(processor).__name__ == "VoxtralRealtimeProcessor"
    assert processor.num_delay_tokens == 6 and processor.mistral_common_audio_config.n_left_pad_tokens == 32
    tokenizer = processor.tokenizer
    assert tokenizer.convert_ids_to_tokens([32, 33]) == ["[STREAMING_PAD]", "[STREAMING_WORD]"]


def test_loading_errors_name_what_is_wrong(tmp_path: Path, realtime_tiny_dir: Path, tiny_voxtral: Path) -> None:
    with pytest.raises(ModelError, match="not a Voxtral Realtime one"):
        load_realtime(tiny_voxtral, device="cpu")
    broken = tmp_path / "no-weights"
    shutil.copytree(realtime_tiny_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"missing: model\.safetensors"):
        load_realtime(broken, device="cpu")
    with pytest.raises(ModelError, match="no such folder"):
        load_realtime(tmp_path / "absent", device="cpu")


def test_lora_targets_only_the_language_model_by_default(loaded) -> None:
    import re

    model, _ = loaded
    names = [name for name, _ in model.named_modules()]
    default = re.compile(lora_target_regex(["language_model"]))
    matched = [name for name in names if default.fullmatch(name)]
    assert matched and all(".language_model.layers." in name for name in matched)
    assert {name.rsplit(".", 1)[1] for name in matched} == {"q_proj", "k_proj", "v_proj", "o_proj"} | {
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    everything = re.compile(lora_target_regex(["language_model", "audio_tower", "projector"]))
    assert any(".audio_tower." in name for name in names if everything.fullmatch(name))
    with pytest.raises(ConfigError, match="non-empty subset"):
        lora_target_regex(["decoder"])


def test_the_lora_trainer_adapts_the_decoder_and_leaves_the_encoder_without_autograd(realtime_tiny_dir: Path) -> None:
    from voxplug_trainers.lora import LoraMethod, LoraOptions

    from voxplug.config import validate_config
    from voxplug.training.context import decide
    from voxplug.training.freezing import is_frozen_without_grad

    model, _ = load_realtime(realtime_tiny_dir, device="cpu")
    config = validate_config({"model": {"name_or_path": "tiny"}}, base_dir=Path.cwd())
    family = VoxtralRealtimeFamily()
    peft_model = LoraMethod(LoraOptions()).prepare_model(model, family, decide(config, {}, train_rows=1, world_size=1))
    trainable = [name for name, parameter in peft_model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name and ".language_model." in name for name in trainable)
    assert is_frozen_without_grad(family.frozen_encoder(peft_model))


def test_collator_options_are_checked_before_launch(realtime_tiny_dir: Path) -> None:
    from voxplug.config import resolve_plugin_options, validate_config
    from voxplug.plugins import get_plugin_host

    def problems(options: dict) -> str:
        config = validate_config(
            {"model": {"name_or_path": str(realtime_tiny_dir), "voxtral-realtime-streaming": options}},
            base_dir=Path.cwd(),
        )
        with pytest.raises(ConfigError) as caught:
            resolve_plugin_options(config, get_plugin_host())
        return str(caught.value)

    assert "unknown aligner 'wisper'; did you mean 'whisper'?" in problems({"aligner": "wisper"})
    assert "aligner_options.modle" in problems({"aligner": "whisper", "aligner_options": {"modle": "x"}})
    assert "delay 500 ms: take a multiple of 80 ms" in problems({"delay_ms": 500})
    assert "not both" in problems({"delay_ms": 480, "delay_range_ms": [80, 960]})
    assert "low end is above the high end" in problems({"delay_range_ms": [960, 80]})


def test_the_saved_processor_keeps_the_default_delay_it_was_given(tmp_path: Path, realtime_tiny_dir: Path) -> None:
    processor = load_realtime_processor(realtime_tiny_dir)
    set_default_delay(processor, 960)
    assert processor.num_delay_tokens == 12
    folder = shutil.copytree(realtime_tiny_dir, tmp_path / "model")
    processor.save_pretrained(folder)
    saved = json.loads((folder / "tekken.json").read_text(encoding="utf-8"))
    assert saved["audio"]["transcription_delay_ms"] == 960
    assert load_realtime_processor(folder).num_delay_tokens == 12
    with pytest.raises(ModelError, match="multiple of 80 ms from 80 to 2400"):
        set_default_delay(processor, 100)


def test_live_transcription_emits_exactly_what_streaming_a_finished_clip_does(loaded, word_clips: Path) -> None:
    """Audio fed in uneven pieces while generate runs gives the same token stream as the whole clip at once."""
    model, processor = loaded
    audio = manifest_rows(word_clips)[1]["audio"]
    whole = transcribe_streaming(model, processor, [audio], delay_ms=240)[0]
    live = LiveTranscription(model, processor, delay_ms=240)
    for start in range(0, audio.shape[0], 3000):
        live.feed(audio[start : start + 3000])
    result = live.finish(timeout=120)
    assert live.delay_ms == 240
    assert len(result.token_ids) >= len(whole.token_ids) > 20
    assert result.token_ids[: len(whole.token_ids)] == whole.token_ids
    with pytest.raises(RuntimeError, match="finished"):
        live.feed(np.zeros(10, dtype=np.float32))


@pytest.mark.slow
def test_a_lora_run_saves_an_adapter_that_evaluates_at_its_trained_delay(
    tmp_path: Path, realtime_tiny_dir: Path, word_clips: Path, one_thread: None
) -> None:
    """LoRA through the real run at a non-default delay (960 ms): the adapter holds language-model adapters only,
    and ``voxplug evaluate``'s loader transcribes with the processor saved beside it, at 960 ms."""
    from safetensors import safe_open

    from voxplug.evaluation.evaluate import load_model_for_evaluation
    from voxplug.plugins import PluginHost
    from voxplug.training.run import train

    from ..training.conftest import run_config, validated

    config = run_config(
        tmp_path,
        realtime_tiny_dir,
        word_clips,
        training__max_steps=4,
        training__batch_size=4,
        training__eval_steps=4,
        training__save_total_limit=1,
        evaluation__batch_size=4,
        data__split={"eval_fraction": 0.2},
    )
    config["model"]["voxtral-realtime-streaming"] = {"delay_ms": 960}
    host = PluginHost().load()
    result = train(validated(config, tmp_path), host=host, progress=False)
    assert "eval_wer" in result.eval_results and result.eval_results["eval_samples"] == 4
    with safe_open(result.model_dir / "adapter_model.safetensors", "pt") as saved:
        names = list(saved.keys())
    assert names and all(".language_model.layers." in name and "lora_" in name for name in names)
    loaded = load_model_for_evaluation(str(result.model_dir), host)
    assert loaded.kind == "adapter" and loaded.processor.num_delay_tokens == 12

    # the published card records the delay, and its usage snippet runs when pasted
    import re
    import subprocess
    import sys

    from voxplug.publishing.publish import publish_model

    published = Path(publish_model(result.run_dir, target="local", destination=str(tmp_path / "pub")).destination)
    card = (published / "README.md").read_text(encoding="utf-8")
    assert "fine-tuned at a delay of **960 ms** (12 tokens of 80 ms)" in card
    snippet = re.search(r"```python\n(.*?)```", card, flags=re.DOTALL).group(1)
    # a card never names a local folder: the base of a run on a local model is a placeholder the reader fills in
    assert "<base model id>" in snippet and str(realtime_tiny_dir) not in card
    snippet = snippet.replace("<base model id>", str(realtime_tiny_dir))
    shutil.copy(word_clips.parent / "clip_001.wav", tmp_path / "speech.wav")
    ran = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]


def test_the_causal_encoders_stream_is_contiguous_with_the_same_output(realtime_tiny_dir: Path) -> None:
    """The embedder hands the layers a permuted view, as the offline encoders do; the loaded model's first layer
    gets a contiguous copy. The output equals the stock model's to rounding: the stock model's RMSNorms and
    projections read the strided layout, summing in another order (the offline encoders' LayerNorms copy their
    input first, so theirs are exact)."""
    import torch
    from transformers import VoxtralRealtimeForConditionalGeneration
    from voxplug_voxtral_realtime.loading import load_realtime

    ours, _ = load_realtime(realtime_tiny_dir, device="cpu")
    stock = VoxtralRealtimeForConditionalGeneration.from_pretrained(realtime_tiny_dir).eval()
    seen: list[tuple[str, bool]] = []
    for name, model in (("ours", ours), ("stock", stock)):
        model.model.audio_tower.norm.register_forward_pre_hook(
            lambda module, args, name=name: seen.append((name, args[0].is_contiguous()))
        )
    mel_bins = stock.config.audio_config.num_mel_bins
    features = torch.randn(1, mel_bins, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ours.model.audio_tower(features).last_hidden_state
        expected = stock.model.audio_tower(features).last_hidden_state
    assert seen == [("ours", True), ("stock", False)]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
