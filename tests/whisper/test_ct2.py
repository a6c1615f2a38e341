"""CTranslate2 import: the binary reader, round trips through ctranslate2's own converter, and the real tiny.en
giving token-for-token the greedy transcripts that ctranslate2 gives on the same audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voxplug_whisper.ct2 import convert_ct2_whisper, read_ct2_model
from voxplug_whisper.generation import log_mel_features, transcribe_ids
from voxplug_whisper.processor import whisper_tokens

from voxplug.errors import ModelError

EQUIVALENCE_CLIPS = 4


def test_reads_the_real_tiny_en(ct2_tiny_en_dir: Path) -> None:
    checkpoint = read_ct2_model(ct2_tiny_en_dir / "model.bin")
    assert (checkpoint.spec, checkpoint.revision) == ("WhisperSpec", 3)
    assert checkpoint.layer_count("encoder") == checkpoint.layer_count("decoder") == 4
    assert checkpoint.variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert checkpoint.variables["decoder/embeddings/weight"].dtype == np.float16
    assert checkpoint.resolve("decoder/projection/weight") == "decoder/embeddings/weight"
    assert checkpoint.scalar("encoder/num_heads") == 6


def test_bfloat16_values_are_widened() -> None:
    from voxplug_whisper.ct2 import _decode_array

    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)  # exactly representable in bfloat16
    upper_halves = (values.view(np.uint32) >> 16).astype(np.uint16)
    decoded = _decode_array(upper_halves.view(np.uint8), "bfloat16")
    assert decoded.tolist() == values.tolist()


@pytest.mark.parametrize(("quantization", "tolerance"), [("float32", 0.0), ("float16", 1e-3), ("int8_float32", 1e-2)])
def test_round_trip_through_ctranslate2(
    quantization: str, tolerance: float, whisper_tiny_dir: Path, tmp_path: Path
) -> None:
    """HF -> CTranslate2 (ctranslate2's own converter) -> voxplug's import gives back the same weights."""
    converters = pytest.importorskip("ctranslate2.converters")
    from transformers import WhisperForConditionalGeneration

    ct2_dir = tmp_path / "ct2"
    converter = converters.TransformersConverter(str(whisper_tiny_dir), copy_files=["tokenizer.json"])
    converter.convert(str(ct2_dir), quantization=quantization)
    back = convert_ct2_whisper(ct2_dir, tmp_path / "back")
    original = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_dir).state_dict()
    restored = WhisperForConditionalGeneration.from_pretrained(back).state_dict()
    assert set(restored) == set(original)
    for name, tensor in original.items():
        scale = float(tensor.abs().max()) or 1.0
        assert float((restored[name] - tensor).abs().max()) <= tolerance * scale, name


def ctranslate2_token_ids(ct2_dir: Path, processor: Any, audios: list[np.ndarray]) -> list[list[int]]:
    """Greedy token ids from ctranslate2 itself on the same log-mel features."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    tokens = whisper_tokens(processor.tokenizer)
    model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(log_mel_features(processor, audios).numpy()))
    prompts = [[tokens.sot, tokens.no_timestamps]] * len(audios)
    results = model.generate(features, prompts, beam_size=1, max_length=448)
    return [result.sequences_ids[0] for result in results]


@pytest.mark.slow
def test_converted_model_transcribes_like_ctranslate2(
    tiny_en_dir: Path, ct2_tiny_en_dir: Path, spoken: list[tuple[Any, str]]
) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from voxplug.data.text import wer_cer

    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir)
    picked = spoken[:: len(spoken) // EQUIVALENCE_CLIPS][:EQUIVALENCE_CLIPS]  # US, GB and fast voices
    audios, texts = [audio for audio, _ in picked], [text for _, text in picked]
    ours = transcribe_ids(model, processor, audios, [None] * len(audios), max_new_tokens=128)
    assert ours == ctranslate2_token_ids(ct2_tiny_en_dir, processor, audios)
    hypotheses = processor.tokenizer.batch_decode(ours, skip_special_tokens=True)
    assert wer_cer(texts, hypotheses)["wer"] < 0.5, hypotheses  # a real model, not two agreeing random ones


def test_greedy_loop_matches_transformers_generate(tiny_en_dir: Path, spoken: list[tuple[Any, str]]) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_en_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_dir).eval()
    audio = spoken[1][0]
    ours = transcribe_ids(model, processor, [audio], [None], max_new_tokens=40)[0]
    with torch.no_grad():
        generated = model.generate(log_mel_features(processor, [audio]), max_new_tokens=40)[0].tolist()
    eot = whisper_tokens(processor.tokenizer).eot
    assert ours == [token for token in generated if token != eot]


def test_converted_folder_is_a_complete_checkpoint(tiny_en_dir: Path) -> None:
    from transformers import GenerationConfig, WhisperConfig

    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= {
        path.name for path in tiny_en_dir.iterdir()
    }
    config = WhisperConfig.from_pretrained(tiny_en_dir)
    assert (config.d_model, config.encoder_layers, config.vocab_size, config.num_mel_bins) == (384, 4, 51864, 80)
    generation = GenerationConfig.from_pretrained(tiny_en_dir)
    assert generation.is_multilingual is False
    assert (generation.decoder_start_token_id, generation.no_timestamps_token_id) == (50257, 50362)
    assert generation.begin_suppress_tokens == [220, 50256]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``voxplug model import-ct2 ARGS`` in-process; return (exit code, stdout, stderr)."""
    from voxplug.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["model", "import-ct2", *args])
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def test_cli_imports_and_refuses_clearly(
    whisper_tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    converters = pytest.importorskip("ctranslate2.converters")
    ct2_dir = tmp_path / "ct2"
    converters.TransformersConverter(str(whisper_tiny_dir), copy_files=["tokenizer.json"]).convert(str(ct2_dir))
    code, out, err = run_cli(capsys, str(ct2_dir), str(tmp_path / "out"))
    assert code == 0, err
    assert "wrote a transformers Whisper checkpoint" in out
    code, _, err = run_cli(capsys, str(ct2_dir), str(tmp_path / "out"))
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: ") and "--overwrite" in err
    (ct2_dir / "tokenizer.json").unlink()
    code, _, err = run_cli(capsys, str(ct2_dir), str(tmp_path / "other"))
    assert code == 1 and "missing tokenizer.json" in err


def test_reader_errors_name_the_file(tmp_path: Path) -> None:
    truncated = tmp_path / "model.bin"
    truncated.write_bytes((6).to_bytes(4, "little") + b"\x05\x00Whis")
    with pytest.raises(ModelError, match=r"model.bin: truncated"):
        read_ct2_model(truncated)
    truncated.write_bytes((99).to_bytes(4, "little"))
    with pytest.raises(ModelError, match="binary version 99 is not supported"):
        read_ct2_model(truncated)
