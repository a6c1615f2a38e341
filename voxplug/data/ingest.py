"""What ``voxplug data import`` reads: audio files paired with transcripts, one item at a time.

Two layouts are understood:

* a **manifest** (``.csv``, ``.tsv`` or ``.jsonl``) with one row per clip: an audio column (``audio_path``,
  ``audio``, ``file``, ``path``, ``file_name``, ``filename``, ``audio_filepath`` or ``wav``), a text column
  (``text``, ``transcript``, ``transcription`` or ``sentence``) and optionally a language column (``language``,
  ``lang`` or ``locale``); audio paths are relative to the imported folder and may not leave it;
* **transcripts beside the audio**: ``clip.wav`` with ``clip.txt`` next to it, anywhere under the folder.

Rows are yielded lazily (a manifest of any length is never held in memory); a row that cannot be read becomes an
:class:`ImportItem` carrying its ``problem``, so the caller reports it and carries on.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxplug.data.folder_guard import FolderGuard
from voxplug.data.manifest import iter_jsonl
from voxplug.data.text import clean_transcript, decode_transcript_bytes
from voxplug.errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
"""File endings treated as audio when pairing ``.txt`` transcripts."""
AUDIO_COLUMNS = ("audio_path", "audio", "file", "path", "file_name", "filename", "audio_filepath", "wav")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence")
LANGUAGE_COLUMNS = ("language", "lang", "locale")
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl")


@dataclass
class ImportItem:
    """One clip to import: where its audio is, its transcript and language, or why it cannot be read."""

    label: str
    audio_path: Path | None = None
    text: str | None = None
    language: str | None = None
    problem: str | None = None


def iter_import_items(folder: Path, manifest: Path | None = None) -> Iterator[ImportItem]:
    """Yield the clips of ``folder``: from ``manifest`` when given, else from ``.txt`` files beside the audio."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected a folder of audio files to import)")
    if manifest is None:
        yield from _items_beside_audio(folder)
    else:
        yield from _items_from_manifest(folder, Path(manifest))


def count_import_items(folder: Path, manifest: Path | None = None) -> int:
    """Count the items :func:`iter_import_items` will yield, cheaply (no audio or transcript is read)."""
    if manifest is None:
        return sum(1 for _ in _audio_files(Path(folder)))
    manifest = Path(manifest)
    with manifest.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - (0 if manifest.suffix.lower() == ".jsonl" else 1)


# --- transcripts beside the audio -------------------------------------------------------------------------


def _audio_files(folder: Path) -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(folder):
        subdirectories.sort()
        for name in sorted(files):
            if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith("."):
                yield Path(directory) / name


def _items_beside_audio(folder: Path) -> Iterator[ImportItem]:
    for audio in _audio_files(folder):
        label = str(audio.relative_to(folder))
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            yield ImportItem(label, audio, problem=f"no transcript: expected {transcript.name} beside it")
            continue
        try:
            text = decode_transcript_bytes(transcript.read_bytes(), str(transcript.relative_to(folder)))
        except DataError as exc:
            yield ImportItem(label, audio, problem=str(exc))
            continue
        if clean_transcript(text) == "":  # the file to fix is the .txt, not the audio the row is named by
            what = "is empty" if text == "" else "holds only whitespace or invisible characters"
            yield ImportItem(label, audio, problem=f"{transcript.name} {what} (expected the words of {audio.name})")
            continue
        yield ImportItem(label, audio, text=text)


# --- manifests ------------------------------------------------------------------------------------------


def _items_from_manifest(folder: Path, manifest: Path) -> Iterator[ImportItem]:
    suffix = manifest.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise DataError(f"{manifest}: unknown manifest type {suffix or '(none)'!r} (expected .csv, .tsv or .jsonl)")
    if not manifest.is_file():
        raise DataError(f"{manifest}: no such file (expected a manifest of audio paths and transcripts)")
    rows = _jsonl_rows(manifest) if suffix == ".jsonl" else _delimited_rows(manifest, "\t" if suffix == ".tsv" else ",")
    guard = FolderGuard(folder, label="the imported folder")
    for label, row in rows:
        if isinstance(row, str):
            yield ImportItem(label, problem=row)
        else:
            yield _item_from_row(guard, label, row)


def _jsonl_rows(manifest: Path) -> Iterator[tuple[str, dict[str, Any] | str]]:
    for number, row in iter_jsonl(manifest):
        label = f"{manifest.name} line {number}"
        yield label, row if isinstance(row, dict) else row.reason


def _delimited_rows(manifest: Path, delimiter: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """Yield CSV/TSV rows as dicts keyed by the (lower-cased) header; a non-UTF-8 row yields its problem."""
    with manifest.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        header = [column.strip().lower() for column in next(reader, [])]
        _require_columns(manifest, header)
        for cells in reader:
            label = f"{manifest.name} line {reader.line_num}"
            if not any(cell.strip() for cell in cells):
                continue
            if any(_has_undecodable_bytes(cell) for cell in cells):
                yield label, "not UTF-8 text (expected the manifest to be saved as UTF-8)"
                continue
            if len(cells) != len(header):
                yield label, f"has {len(cells)} columns, the header has {len(header)} ({', '.join(header)})"
                continue
            yield label, dict(zip(header, cells, strict=True))


def _has_undecodable_bytes(cell: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in cell)


def _require_columns(manifest: Path, header: list[str]) -> None:
    for wanted in (AUDIO_COLUMNS, TEXT_COLUMNS):
        if not any(column in header for column in wanted):
            raise DataError(
                f"{manifest}: the header row ({', '.join(header) or 'empty'}) has no {wanted[0]} column "
                f"(expected one of: {', '.join(wanted)})"
            )


def _first(row: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if row.get(name) not in (None, ""):
            return row[name]
    return None


def _item_from_row(guard: FolderGuard, label: str, row: dict[str, Any]) -> ImportItem:
    audio = _first(row, AUDIO_COLUMNS)
    if not isinstance(audio, str):
        return ImportItem(label, problem=f"no audio path (expected a column named one of: {', '.join(AUDIO_COLUMNS)})")
    label = f"{label} ({audio})"
    try:
        path = guard.resolve(audio)
    except DataError as exc:
        return ImportItem(label, problem=str(exc))
    if not os.path.isfile(path):
        return ImportItem(label, problem=f"audio file {audio} not found in {guard.folder}")
    text = _first(row, TEXT_COLUMNS)
    if text is None:
        text = row.get("text", "")  # an empty transcript is reported by the transcript check
    language = _first(row, LANGUAGE_COLUMNS)
    return ImportItem(label, Path(path), text=text, language=language)
