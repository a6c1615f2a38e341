"""Publishing and demoing a family without Voxtral's transcription request (Whisper): pipeline-based usage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from publishing_helpers import build_whisper_run

from voxplug.publishing.publish import publish_model


@pytest.fixture(scope="module")
def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxplug_whisper.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("whisper") / "base", multilingual=True)


@pytest.fixture(scope="module", params=["full", "adapter"])
def published_whisper(request, whisper_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("whisper-runs")
    run = build_whisper_run(runs / f"whisper-{request.param}", whisper_base, request.param)
    return Path(publish_model(run, target="local", destination=str(runs / "published")).destination)


@pytest.mark.slow
def test_card_snippet_uses_the_pipeline_and_runs(
    published_whisper: Path, whisper_base: Path, speech_wav: Path, tmp_path: Path, monkeypatch, capsys, plugin_host
) -> None:
    """The base was a local folder: the card names neither it nor the published folder's path, only placeholders a
    reader fills in (the folder's name, ``<base model id>``)."""
    card = (published_whisper / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---\n")[1])
    kind = yaml.safe_load((published_whisper / "voxplug.json").read_text())["kind"]
    assert metadata["library_name"] == ("peft" if kind == "adapter" else "transformers")
    assert "whisper" in metadata["tags"] and "apply_transcription_request" not in card
    assert str(whisper_base) not in card and str(published_whisper) not in card and "base_model" not in metadata
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace('max_new_tokens": 256', 'max_new_tokens": 4')
    assert '"./published"' in snippet and ('"<base model id>"' in snippet) == (kind == "adapter")
    snippet = snippet.replace('"./published"', repr(str(published_whisper)))
    snippet = snippet.replace('"<base model id>"', repr(str(whisper_base)))
    shutil.copyfile(speech_wav, tmp_path / "speech.wav")
    monkeypatch.chdir(tmp_path)
    exec(snippet, {})
    assert capsys.readouterr().out.endswith("\n")  # the transcript was printed (a random model's may be empty)


@pytest.mark.slow
def test_demo_transcribes_with_the_pipeline(
    published_whisper: Path, whisper_base: Path, speech_wav: Path, plugin_host
) -> None:
    from voxplug_space.demo_app import Transcriber, read_model_spec

    spec = read_model_spec(str(published_whisper), base_model=str(whisper_base))  # as `voxplug demo --base-model`
    transcriber = Transcriber(spec, max_new_tokens=4)
    for language in ("Auto", "fr"):
        assert isinstance(transcriber(str(speech_wav), language), str)
