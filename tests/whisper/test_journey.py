"""The whole journey with Whisper by changing only the model in the config: train, publish locally, evaluate.

``voxplug train -c whisper-tiny-en-lora`` (the preset) with the tiny offline Whisper and the bundled espeak-ng
clips, the local publisher, then ``voxplug evaluate`` on what was published.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def manifest(clips: list[tuple[Path, str]], folder: Path) -> Path:
    """A dataset folder: copies of the bundled clips and a JSONL manifest of them."""
    rows = []
    for audio, text in clips:
        shutil.copy(audio, folder / audio.name)
        rows.append({"audio_path": audio.name, "text": text, "language": "en"})
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def voxplug(*args: str) -> None:
    """Run a voxplug command in-process; a non-zero exit fails the test."""
    from voxplug.cli import main

    try:
        main(list(args))
    except SystemExit as exited:
        assert not exited.code, f"voxplug {' '.join(args)} exited with {exited.code}"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_train_publish_evaluate(
    method: str, whisper_tiny_dir: Path, speech_clips: list[tuple[Path, str]], tmp_path: Path
) -> None:
    data = manifest(speech_clips[:10], tmp_path)
    run_dir = tmp_path / "run"
    voxplug(
        "train",
        "-c",
        "whisper-tiny-en-lora",
        "--no-progress",
        f"model.name_or_path={whisper_tiny_dir}",
        f"data.jsonl.path={data}",
        "data.split.eval_fraction=0.2",
        f"training.method={method}",
        f"training.output_dir={run_dir}",
        "training.max_steps=3",
        "training.batch_size=2",
        "evaluation.max_new_tokens=4",
        f"publish.repo_id={tmp_path / 'published'}",
    )
    published = tmp_path / "published"
    assert json.loads((published / "voxplug.json").read_text(encoding="utf-8"))["family"] == "whisper"
    assert "whisper" in (published / "README.md").read_text(encoding="utf-8").lower()
    voxplug(
        "evaluate",
        "--model",
        str(published),
        "--data",
        str(data),
        "--max-new-tokens",
        "4",
        "--out",
        str(tmp_path / "evaluation"),
    )
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["samples"] == 10 and "wer" in metrics and "cer" in metrics
    assert (tmp_path / "evaluation" / "comparison.json").is_file()  # against the base the model names
