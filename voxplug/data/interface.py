"""The data-source extension type: where training and evaluation examples come from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.errors import DataError
from voxplug.extension import Extension

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Example:
    """One utterance: where its audio is, what was said and in which language.

    Audio is referenced, not held: :meth:`load_audio` decodes it to 16 kHz mono float32 when needed, so a source
    can yield millions of examples without holding their audio. ``language`` is the spoken language. A speech
    translation row (Granary's ``ast``) has ``task="translate"``, the translation as ``text`` and its language as
    ``target_language``.
    """

    id: str
    text: str
    language: str | None = None
    audio_path: Path | None = None
    audio_bytes: bytes | None = None
    duration_s: float | None = None
    origin: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    task: str = "transcribe"
    target_language: str | None = None

    def load_audio(self, max_duration_s: float | None = None) -> np.ndarray:
        """Decode this example's audio to 16 kHz mono float32, enforcing ``max_duration_s`` when given."""
        from voxplug.data.audio import load_audio_16k

        source: str | Path | bytes
        if self.audio_bytes is not None:
            source = self.audio_bytes
        elif self.audio_path is not None:
            source = self.audio_path
        else:
            raise DataError(f"{self.origin or self.id}: the row has no audio (expected a path or bytes)")
        clip = load_audio_16k(source, max_duration_s=max_duration_s, name_for_errors=self.origin or self.id)
        return clip.samples

    def read_duration_s(self) -> float:
        """This clip's duration in seconds, read from its audio header without decoding the samples.

        Sources whose rows carry no duration (or a wrong one) get it this way before a run starts, so a clip over
        the limit is rejected at the data stage instead of stopping training. Raises
        :class:`~voxplug.errors.AudioError` for audio that cannot be opened.
        """
        from voxplug.data.audio import header_duration_s

        source: Path | bytes | None = self.audio_bytes if self.audio_bytes is not None else self.audio_path
        if source is None:
            raise DataError(f"{self.origin or self.id}: the row has no audio (expected a path or bytes)")
        return header_duration_s(source, name_for_errors=self.origin or self.id)


@dataclass
class RowProblem:
    """A row a source could not use, kept so that nothing is dropped silently.

    ``code`` names the kind of problem for counting (``too_long``, ``missing_audio``, ``no_text``, ...);
    ``rejected`` when nothing more specific applies.
    """

    row: str
    reason: str
    severity: str = "error"
    code: str = "rejected"

    def __str__(self) -> str:
        return f"{self.row}: {self.reason}"


@dataclass(frozen=True)
class StreamPieces:
    """A split cut into pieces that can be read apart (files, stretches of one file), for streamed training.

    Each rank and data-loader worker reads only its own pieces. ``rows`` is how many rows the split holds in all,
    when the source knows it without reading them (it plans the epochs; None asks the user for ``max_steps``).
    """

    pieces: tuple[Any, ...]
    rows: int | None = None


class DataSource(Extension):
    """Yields :class:`Example` objects lazily for a split.

    Subclasses implement :meth:`examples`; a row they cannot use is appended to :attr:`problems` with the
    reason, never skipped silently. A choice the source made for the user (say, which column holds the
    transcript) is appended to :attr:`notices` as one sentence, which the run logs and keeps in its data summary.
    ``base_dir`` is the folder relative paths in the options resolve against (the config file's folder).
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
        self.notices: list[str] = []

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

    def stream_pieces(self, split: str = "train") -> StreamPieces | None:
        """``split`` as pieces that can be read apart (see :class:`StreamPieces`), or None when it can only be read
        from its start (each reader of a stream then reads it all and keeps its share of the rows)."""
        return None

    def piece_examples(self, piece: Any, split: str = "train") -> Iterator[Example]:
        """Yield the examples of one piece :meth:`stream_pieces` returned, in order; problems as :meth:`examples`."""
        raise NotImplementedError


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
