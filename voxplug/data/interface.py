"""The data-source extension type: where training and evaluation examples come from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.extension import Extension

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Example:
    """One utterance: where its audio is, what was said and in which language.

    Audio is referenced, not held: :meth:`load_audio` decodes it to 16 kHz mono float32 when needed, so a source
    can yield millions of examples without holding their audio.
    """

    id: str
    text: str
    language: str | None = None
    audio_path: Path | None = None
    audio_bytes: bytes | None = None
    duration_s: float | None = None
    origin: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def load_audio(self, max_duration_s: float | None = None) -> np.ndarray:
        """Decode this example's audio to 16 kHz mono float32, enforcing ``max_duration_s`` when given."""
        from voxplug.data.audio import load_audio_16k

        source: str | Path | bytes
        if self.audio_bytes is not None:
            source = self.audio_bytes
        elif self.audio_path is not None:
            source = self.audio_path
        else:
            from voxplug.errors import DataError

            raise DataError(f"{self.origin or self.id}: the row has no audio (expected a path or bytes)")
        clip = load_audio_16k(source, max_duration_s=max_duration_s, name_for_errors=self.origin or self.id)
        return clip.samples


@dataclass
class RowProblem:
    """A row a source could not use, kept so that nothing is dropped silently."""

    row: str
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.row}: {self.reason}"


class DataSource(Extension):
    """Yields :class:`Example` objects lazily for a split.

    Subclasses implement :meth:`examples`; a row they cannot use is appended to :attr:`problems` with the
    reason, never skipped silently. ``base_dir`` is the folder relative paths in the options resolve against
    (the config file's folder).
    """

    #: True when the source knows its splits itself (for example a Hub dataset's ``validation`` split); a
    #: subclass may decide it from its options with a property.
    has_eval_split: bool = False
    #: True when examples arrive as a stream (audio is then checked lazily, batch by batch).
    streaming: bool = False

    def __init__(self, options: Any = None, *, base_dir: Path | None = None) -> None:
        super().__init__(options)
        self.base_dir = base_dir or Path.cwd()
        self.problems: list[RowProblem] = []

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield the examples of ``split`` ("train" or "eval") one at a time."""
        raise NotImplementedError

    def dataset_id(self) -> str | None:
        """The Hub dataset id this data comes from, for model-card metadata, or None for local data."""
        return None

    def local_dataset(self) -> dict[str, str] | None:
        """How a model card names local data (no Hub id): ``{"name"}`` and, when known, ``{"license"}``; never a
        path. None when the source says nothing (the card then lists only Hub ids)."""
        return None


@dataclass
class Replacement:
    """One piece of personal data a scrubber replaced in a transcript."""

    scrubber: str
    original: str
    replacement: str


class TextScrubber(Extension):
    """Replaces personal data (e-mail addresses, phone numbers, ...) in transcripts.

    :meth:`scrub` returns the cleaned text and what it replaced, so that voxplug can report every change.
    """

    def scrub(self, text: str) -> tuple[str, list[Replacement]]:
        """Return ``text`` with this scrubber's kind of personal data replaced, and the replacements made."""
        raise NotImplementedError
