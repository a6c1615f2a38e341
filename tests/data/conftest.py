"""Shared fixtures for the data tests: real speech clips, the bad-audio zoo, and datasets to work on."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from voxplug.data.store import DatasetStore
from voxplug.testing.speech import make_bad_audio_files

SPEECH_DIR = Path(__file__).resolve().parents[2] / "examples" / "speech" / "en"


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Real English speech (the bundled espeak-ng clips): ``[(wav path, transcript)]``, copied to a temp folder."""
    folder = tmp_path_factory.mktemp("speech")
    with (SPEECH_DIR / "transcripts.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    clips = []
    for row in rows:
        target = folder / row["file"]
        shutil.copy(SPEECH_DIR / row["file"], target)
        clips.append((target, row["text"]))
    return clips


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The awkward-audio zoo of :func:`voxplug.testing.speech.make_bad_audio_files`."""
    return make_bad_audio_files(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    """An empty English dataset."""
    return DatasetStore.create(tmp_path / "voice", language="en", licence="cc-by-4.0")


@pytest.fixture
def filled_store(store: DatasetStore, speech_clips: list[tuple[Path, str]]) -> DatasetStore:
    """A dataset holding six real speech clips."""
    for path, text in speech_clips[:6]:
        store.add(path, text)
    return store
