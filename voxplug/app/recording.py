"""The Record tab's work, without gradio: clips into a workspace dataset, the rows table, edits, deletes, checks.

Clips go through :meth:`voxplug.data.store.DatasetStore.add`, so what the page saves is exactly the dataset
training reads, with no export step in between: 16 kHz mono WAV files named by content hash, rows appended
atomically, the same clip never stored twice, and the same checks as the command line (too long, silent, clipped,
empty transcript).
Every function returns a message for the page instead of raising, so a bad input never breaks the app.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxplug.app.markdown_text import literal
from voxplug.app.workspace import Workspace
from voxplug.data.issues import Issue
from voxplug.data.store import DatasetStore
from voxplug.errors import DataError

TABLE_HEADERS = ["#", "id", "transcript", "seconds", "language", "origin", "added"]


@dataclass
class SaveReport:
    """What saving one or more clips did, as lines for the page: saved, duplicates, warnings, errors."""

    saved: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing was refused."""
        return not self.errors

    def markdown(self) -> str:
        """The report as Markdown, errors first; transcripts and file names show as typed (:func:`literal`)."""
        lines = [f"✗ {literal(error)}" for error in self.errors]
        lines += [f"✓ saved: {literal(item)}" for item in self.saved]
        lines += [f"ℹ already in the dataset: {literal(item)}" for item in self.duplicates]
        lines += [f"⚠ {literal(warning)}" for warning in self.warnings]
        return "\n\n".join(lines) or "Nothing to save yet: record or upload a clip first."


def open_dataset(workspace: Workspace, name: str, *, language: str | None = None) -> DatasetStore:
    """Open dataset ``name`` of ``workspace``, creating it (with default ``language``) the first time."""
    path = workspace.dataset_path(name)
    if (path / "dataset.json").is_file():
        return DatasetStore.open(path)
    return DatasetStore.create(path, language=language or None, name=path.name)


def save_clip(
    workspace: Workspace,
    dataset: str,
    audio: str | Path | tuple | None,
    text: str | None,
    *,
    language: str | None,
    origin: str = "recording",
    label: str | None = None,
    report: SaveReport | None = None,
) -> SaveReport:
    """Add one clip (a file path or ``(samples, rate)``) with its transcript; problems go into the report."""
    report = report or SaveReport()
    label = label or (Path(audio).name if isinstance(audio, (str, Path)) else "the recording")
    if audio is None or audio == "":
        report.errors.append(
            f"{label}: no audio: record a clip or choose a file first (a recording that has just stopped may still "
            "be on its way to the server: save again in a moment)"
        )
        return report
    try:
        store = open_dataset(workspace, dataset, language=language)
        result = store.add(audio, text or "", language=language, origin=origin, source_name=label)  # type: ignore[arg-type]
    except DataError as exc:
        report.errors.append(_without_temp_path(str(exc), audio, label))
        return report
    summary = f"“{result.row['text']}” ({result.row['duration_s']:.1f} s)"
    (report.saved if result.added else report.duplicates).append(summary)
    report.warnings += [f"{label}: {_describe(issue)}" for issue in result.warnings]
    return report


def save_uploads(
    workspace: Workspace, dataset: str, files: list[str] | None, transcripts: str | None, *, language: str | None
) -> SaveReport:
    """Add uploaded files, one transcript line per file in the same order (a count mismatch is an error)."""
    report = SaveReport()
    files = [str(path) for path in files or []]
    lines = [line for line in (transcripts or "").splitlines() if line.strip()]
    if not files:
        report.errors.append("no files: choose one or more audio files to upload")
        return report
    if len(lines) != len(files):
        report.errors.append(
            f"{len(files)} file(s) but {len(lines)} transcript line(s): write one line per file, in the same order"
        )
        return report
    for path, text in zip(files, lines, strict=True):
        save_clip(workspace, dataset, path, text, language=language, origin="upload", report=report)
    return report


def _describe(issue: Issue) -> str:
    return f"{issue.message} ({issue.code})"


def _without_temp_path(message: str, audio: object, label: str) -> str:
    """Show the file's own name instead of gradio's temporary path in error messages."""
    return message.replace(str(audio), label) if isinstance(audio, (str, Path)) else message


def rows_table(workspace: Workspace, dataset: str | None) -> list[list[Any]]:
    """The rows of ``dataset`` for the page's table (newest last); empty when it does not exist yet."""
    store = _existing(workspace, dataset)
    if store is None:
        return []
    return [
        [
            number,
            row.get("id", ""),
            row.get("text", ""),
            round(float(row.get("duration_s") or 0.0), 2),
            row.get("language") or "",
            row.get("origin") or "",
            (row.get("added") or "")[:19].replace("T", " "),
        ]
        for number, row in enumerate(store.rows(), start=1)
    ]


def summary_markdown(workspace: Workspace, dataset: str | None) -> str:
    """One line about the dataset: clips, minutes, languages."""
    store = _existing(workspace, dataset)
    name = literal(dataset or "?")
    if store is None:
        return f"Dataset **{name}** is empty: record or upload a first clip to create it."
    summary = store.summary()
    if not summary["rows"]:
        return f"Dataset **{name}** has no clips yet: record or upload a first one."
    languages = ", ".join(f"{code} {count}" for code, count in summary["languages"].items())
    seconds = summary["seconds"]
    length = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
    return (
        f"Dataset **{name}**: {summary['rows']} clip(s), {length} of audio (languages: {literal(languages)}). "
        "Stored as 16 kHz mono WAV in your workspace; training reads it as it is."
    )


def row_audio(workspace: Workspace, dataset: str | None, row_id: str | None) -> tuple[str | None, str]:
    """The audio file path and transcript of one row, for the player and the edit box."""
    store = _existing(workspace, dataset)
    if store is None or not row_id:
        return None, ""
    try:
        row = store.row(row_id)
    except DataError:
        return None, ""
    return str(store.audio_file(row)), str(row.get("text", ""))


def edit_row_text(workspace: Workspace, dataset: str | None, row_id: str | None, text: str) -> str:
    """Replace one row's transcript (cleaned and checked like a new one), atomically; returns a message."""
    from voxplug.data.atomic_jsonl import encode_row
    from voxplug.data.prepare import prepare_text

    store = _existing(workspace, dataset)
    if store is None or not row_id:
        return "✗ select a row in the table first"
    try:
        cleaned, _warnings = prepare_text(text or "", name=f"row {row_id}")
    except DataError as exc:
        return f"✗ {literal(exc)}"
    changed: list[str] = []

    def replace_text(_number: int, line: bytes) -> bytes | None:
        row = _parse(line)
        if row is None or row.get("id") != row_id:
            return line
        changed.append(row_id)
        return encode_row({**row, "text": cleaned}).rstrip(b"\n")

    with store.rows_file.locked():
        store.rows_file.rewrite(replace_text)
    if not changed:
        return f"✗ no row {literal(row_id)} in {literal(dataset)}"
    return f"✓ transcript of row {literal(row_id)} updated"


def delete_row(workspace: Workspace, dataset: str | None, row_id: str | None) -> str:
    """Delete one row (and its audio, when no other row uses it); returns a message."""
    store = _existing(workspace, dataset)
    if store is None or not row_id:
        return "✗ select a row in the table first"
    try:
        removed = store.remove(row_id)
    except DataError as exc:
        return f"✗ {literal(exc)}"
    return f"✓ deleted row {literal(row_id)} (“{literal(removed.get('text', ''))}”)"


def check_dataset(workspace: Workspace, dataset: str | None) -> str:
    """Validate every row of the dataset (``voxplug data validate``) and list the findings as Markdown."""
    from voxplug.data.validate import validate_dataset

    store = _existing(workspace, dataset)
    if store is None:
        return "The dataset is empty."
    report = validate_dataset(store.path, workers=1)
    head = (
        f"{report.rows} row(s): {report.usable_rows} usable, {report.error_rows} with errors, "
        f"{report.warning_rows} with warnings."
    )
    findings = [f"- {'✗' if finding.is_error else '⚠'} {literal(finding)}" for finding in report.findings[:50]]
    return "\n".join([head, *findings])


def _existing(workspace: Workspace, dataset: str | None) -> DatasetStore | None:
    if not dataset:
        return None
    try:
        path = workspace.dataset_path(dataset)
    except DataError:
        return None
    return DatasetStore.open(path) if (path / "dataset.json").is_file() else None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None
