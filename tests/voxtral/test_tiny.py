"""The tiny offline Voxtral checkpoint loads like a Hub checkpoint and carries Voxtral's real token ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REAL_VOXTRAL_SPECIALS = {
    0: "<unk>",
    1: "<s>",
    2: "</s>",
    3: "[INST]",
    4: "[/INST]",
    11: "<pad>",
    24: "[AUDIO]",
    25: "[BEGIN_AUDIO]",
    34: "[TRANSCRIBE]",
}


def test_loads_through_auto_classes_with_mistral_common_backend(voxtral_tiny_dir: Path, voxtral_processor) -> None:
    from transformers import VoxtralForConditionalGeneration

    model = VoxtralForConditionalGeneration.from_pretrained(voxtral_tiny_dir)
    assert type(voxtral_processor).__name__ == "VoxtralProcessor"
    assert type(voxtral_processor.tokenizer).__name__ == "MistralCommonBackend"
    assert model.config.audio_token_id == 24
    assert model.config.text_config.vocab_size == 3000 == len(voxtral_processor.tokenizer)
    generation = model.generation_config
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (1, 2, 11)


def test_folder_is_small_and_complete(voxtral_tiny_dir: Path) -> None:
    files = {path.name: path.stat().st_size for path in voxtral_tiny_dir.iterdir()}
    expected = {"config.json", "generation_config.json", "model.safetensors", "tekken.json", "processor_config.json"}
    assert expected <= set(files)
    assert sum(files.values()) < 2_000_000


def test_special_tokens_and_audio_section_match_voxtral(voxtral_tiny_dir: Path, voxtral_processor) -> None:
    tokenizer = voxtral_processor.tokenizer
    assert tokenizer.convert_ids_to_tokens(list(REAL_VOXTRAL_SPECIALS)) == list(REAL_VOXTRAL_SPECIALS.values())
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 11)
    tekken = json.loads((voxtral_tiny_dir / "tekken.json").read_text())
    assert tekken["config"]["version"] == "v7"
    assert tekken["config"]["default_num_special_tokens"] == len(tekken["special_tokens"]) == 1000
    assert tekken["audio"] == {
        "sampling_rate": 16000,
        "frame_rate": 12.5,
        "chunk_length_s": 30.0,
        "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
    }
    features = voxtral_processor.feature_extractor
    assert (features.feature_size, features.hop_length, features.n_fft, features.chunk_length) == (128, 160, 400, 30)


def test_text_ids_are_the_real_voxtral_ids(tmp_path: Path) -> None:
    """With enough ranks, 'lang:en' encodes to 9909 1058 1262 as in the published Voxtral prompt."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer
    from voxplug_voxtral.tiny import voxtral_tekken

    path = tmp_path / "tekken.json"
    path.write_text(json.dumps(voxtral_tekken(10_000)))
    assert Tekkenizer.from_file(path).encode("lang:en", bos=False, eos=False) == [9909, 1058, 1262]


def test_same_seed_gives_same_weights(tmp_path: Path, voxtral_tiny_dir: Path) -> None:
    from voxplug_voxtral.tiny import build_tiny_voxtral

    again = build_tiny_voxtral(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (voxtral_tiny_dir / "model.safetensors").read_bytes()


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = (
        "import sys; import voxplug_voxtral, voxplug_voxtral.tiny, voxplug_voxtral.loading, "
        "voxplug_voxtral.collator, voxplug_voxtral.generation, voxplug_voxtral.targets; "
        "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parents[2]
    env_path = f"{root}:{root / 'plugins'}"
    result = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": env_path}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
