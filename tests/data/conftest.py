"""Shared fixtures for the data tests: the bad-audio zoo and datasets to work on.

Real speech comes from the ``speech_clips`` fixture of :mod:`voxplug.testing.pytest_plugin` (the bundled clips);
tests only read those files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplug.data.store import DatasetStore
from voxplug.testing.speech import make_bad_audio_files


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
