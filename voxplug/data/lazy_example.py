"""Examples whose audio is fetched only when a batch needs it, so that a big dataset is not held in memory.

:class:`LazyExample` keeps a small picklable *fetcher* instead of the audio bytes; :class:`DatasetAudio` is the
fetcher for a row of an Arrow-backed (memory-mapped) ``datasets.Dataset``, whose audio column holds either
``Audio(decode=False)`` values (``{"bytes", "path"}``) or the raw bytes of a file (a ``Value("binary")`` column, as
voxplug reads WebDataset shards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxplug.data.audio import header_duration_s, load_audio_16k
from voxplug.data.interface import Example
from voxplug.errors import AudioError

AudioFetcher = Callable[[], "bytes | Path"]


@dataclass
class LazyExample(Example):
    """An :class:`Example` whose audio comes from ``fetch_audio()`` (bytes or a path) when it is loaded."""

    fetch_audio: AudioFetcher | None = None

    def audio_source(self) -> bytes | Path:
        """The audio as bytes or a path: fetched, or the example's own ``audio_bytes`` / ``audio_path``."""
        if self.fetch_audio is not None:
            return self.fetch_audio()
        if self.audio_bytes is not None:
            return self.audio_bytes
        if self.audio_path is not None:
            return self.audio_path
        raise AudioError(f"{self.origin or self.id}: the row has no audio (expected a path or bytes)")

    def load_audio(self, max_duration_s: float | None = None) -> np.ndarray:
        """Fetch and decode the audio to 16 kHz mono float32, enforcing ``max_duration_s`` when given."""
        name = self.origin or self.id
        return load_audio_16k(self.audio_source(), max_duration_s=max_duration_s, name_for_errors=name).samples

    def read_duration_s(self) -> float:
        """The duration its audio header declares (the audio is fetched, not decoded)."""
        return header_duration_s(self.audio_source(), name_for_errors=self.origin or self.id)


@dataclass(frozen=True)
class DatasetAudio:
    """Fetches the audio of row ``index`` of a ``datasets.Dataset`` whose ``column`` is ``Audio(decode=False)``
    or raw file bytes."""

    dataset: Any
    index: int
    column: str

    def __call__(self) -> bytes | Path:
        value = self.dataset[self.index][self.column]
        if isinstance(value, bytes) and value:
            return value
        if not isinstance(value, dict):
            raise AudioError(f"row {self.index}: the audio is not available (column {self.column!r} is empty)")
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path") and Path(value["path"]).is_file():
            return Path(value["path"])
        raise AudioError(f"row {self.index}: the audio is not available (no bytes and no readable file)")
