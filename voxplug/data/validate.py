"""Check a dataset row by row, and repair or quarantine what is wrong (``voxplug data validate [--fix]``).

Every row of ``data.jsonl`` is checked: the line parses, the audio path stays inside the folder and exists, the
audio decodes, is stored as 16 kHz mono 16-bit WAV (in a voxplug dataset; elsewhere a warning), is not too long,
too short or silent, the transcript is not empty, the language is a code, and no clip appears twice. Findings are
errors (the row cannot be trained on) or warnings (a person should look), each naming the line, the row id, the
file and the reason.

With ``fix=True``: what can be repaired is (audio converted to 16 kHz mono WAV, transcripts cleaned, stale
durations and hashes updated); rows that cannot be repaired leave ``data.jsonl`` for ``quarantine/`` with a line in
``quarantine/quarantine.jsonl`` saying why (a line that is not UTF-8 keeps its exact bytes there, in base64). Files
are set aside in ``quarantine/audio/``, never deleted, and files outside the dataset folder are never touched.

Fixing survives being killed at any point (see :func:`_apply_fixes`): it works under the writer lock, copies files
before the new ``data.jsonl`` replaces the old one in one rename, deletes the originals only after that, and logs
each quarantined row once however often it is interrupted. Temporary files that killed writers left behind are
counted (``leftover_temp_file``) and, when fixing, deleted.
"""

from __future__ import annotations

import base64
import filecmp
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from voxplug.data.atomic_jsonl import AtomicJsonl, encode_row
from voxplug.data.audio import (
    MAX_DURATION_S,
    TARGET_RATE,
    analyse_clip,
    check_clip,
    content_hash,
    load_audio_16k,
    write_wav_16k,
)
from voxplug.data.folder_guard import FolderGuard
from voxplug.data.interface import RowProblem
from voxplug.data.languages import LanguageSupport, check_row_language
from voxplug.data.manifest import iter_jsonl
from voxplug.data.parallel import map_ordered
from voxplug.data.store import (
    AUDIO_DIR,
    DATA_FILE,
    META_FILE,
    audio_leftovers,
    duration_bucket_labels,
    duration_histogram,
    utc_now,
    writing_audio,
)
from voxplug.data.text import check_transcript, clean_transcript
from voxplug.errors import DataError
from voxplug.tempfiles import replaced_atomically

QUARANTINE_DIR = "quarantine"
QUARANTINE_FILE = "quarantine.jsonl"
MAX_KEPT_FINDINGS = 1_000
"""A report keeps this many findings in memory; the rest are counted (and passed to ``on_finding``)."""
_DURATION_TOLERANCE_S = 0.05


@dataclass
class Finding:
    """One problem with one row (or one file): where, how bad, a stable code, a sentence, and whether --fix mends it."""

    where: str
    severity: str
    code: str
    message: str
    fixable: bool = False

    @property
    def is_error(self) -> bool:
        """Whether the row cannot be used as it is."""
        return self.severity == "error"

    def __str__(self) -> str:
        return f"{self.where}: {self.message} ({self.severity}: {self.code})"


@dataclass
class ValidationReport:
    """Totals and findings of one validation run (see :func:`validate_dataset`)."""

    path: str
    rows: int = 0
    usable_rows: int = 0
    error_rows: int = 0
    warning_rows: int = 0
    errors: int = 0
    warnings: int = 0
    seconds: float = 0.0
    languages: dict[str, int] = field(default_factory=dict)
    durations: dict[str, int] = field(default_factory=lambda: dict.fromkeys(duration_bucket_labels(), 0))
    findings: list[Finding] = field(default_factory=list)
    findings_not_kept: int = 0
    fixed_rows: int = 0
    quarantined_rows: int = 0
    quarantined_files: int = 0
    temp_files: int = 0
    removed_temp_files: int = 0

    @property
    def ok(self) -> bool:
        """True when no error remains (after fixing, when fixing)."""
        return self.errors == 0

    @property
    def hours(self) -> float:
        """Hours of usable audio."""
        return self.seconds / 3600

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        data = asdict(self)
        data.update(ok=self.ok, hours=round(self.hours, 4), seconds=round(self.seconds, 3))
        return data


@dataclass
class _Target:
    """What is being validated: the manifest, the folder its paths are relative to, and whether it is a store."""

    manifest: Path
    folder: Path
    is_store: bool
    max_duration_s: float
    fix: bool
    guard: FolderGuard
    languages: LanguageSupport | None = None


@dataclass
class _RowCheck:
    """The outcome of checking one line: findings, the usable row's facts, and its repaired form (if any)."""

    line: int
    where: str
    findings: list[Finding] = field(default_factory=list)
    row: dict[str, Any] | None = None
    duration_s: float | None = None
    sha256: str | None = None
    audio_file: Path | None = None
    replaced_file: Path | None = None

    @property
    def has_unfixable_error(self) -> bool:
        return any(finding.is_error and not finding.fixable for finding in self.findings)

    def add(self, severity: str, code: str, message: str, fixable: bool = False) -> None:
        self.findings.append(Finding(self.where, severity, code, message, fixable))


def find_manifest(path: Path) -> _Target:
    """Resolve ``path`` (a dataset folder or a JSONL file) to what will be validated."""
    path = Path(path)
    manifest = path / DATA_FILE if path.is_dir() else path
    if not manifest.is_file():
        raise DataError(f"{path}: no {DATA_FILE} here (expected a voxplug dataset folder or a JSONL manifest)")
    if manifest.suffix.lower() in (".csv", ".tsv"):
        raise DataError(
            f"{manifest} is a {manifest.suffix[1:].upper()} manifest; validate checks voxplug datasets and JSONL "
            f"manifests: import it first with `voxplug data create my-voice` and `voxplug data import my-voice "
            f"{manifest.parent} --manifest {manifest}`, then `voxplug data validate my-voice`"
        )
    folder = manifest.parent
    return _Target(manifest, folder, (folder / META_FILE).is_file(), MAX_DURATION_S, False, FolderGuard(folder))


def validate_dataset(
    path: Path,
    *,
    fix: bool = False,
    max_duration_s: float = MAX_DURATION_S,
    on_finding: Callable[[Finding], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    workers: int | None = None,
    languages: LanguageSupport | None = None,
) -> ValidationReport:
    """Validate the dataset at ``path`` (a folder with ``data.jsonl``, or a JSONL manifest) and return the report.

    Rows stream through a few decoding threads; only totals and the first :data:`MAX_KEPT_FINDINGS` findings are
    kept, so any size of dataset fits in memory. With ``fix``, repairs and quarantines as the module says; the
    report then counts what remains wrong. With ``languages`` (a model family's), each row's language must also
    be one that model accepts.
    """
    target = find_manifest(path)
    target.max_duration_s, target.fix, target.languages = max_duration_s, fix, languages
    report = ValidationReport(path=str(path))
    writer = AtomicJsonl(target.manifest)
    quarantine = _Quarantine(target.folder / QUARANTINE_DIR) if fix else None
    with writer.locked() if fix else nullcontext():
        if target.is_store:
            _check_leftovers(target, writer, report, on_finding)
        decisions = _check_all_rows(target, report, on_finding, progress, workers)
        if quarantine is not None:
            quarantine.remove_leftovers()
            _apply_fixes(target, writer, decisions, report, quarantine)
        if target.is_store:
            _check_orphan_files(target, report, on_finding, quarantine)
    return report


def _check_leftovers(
    target: _Target, writer: AtomicJsonl, report: ValidationReport, on_finding: Callable[[Finding], None] | None
) -> None:
    """Count the temporary files killed writers left (audio files, ``data.jsonl`` rewrites); delete them when fixing.

    Files a writer at work may still be writing are left alone: audio ones while another process holds the
    audio-writer lock, ``data.jsonl`` ones unless this run holds the writer lock (it does when fixing).
    """
    found = audio_leftovers(target.folder, remove=target.fix) or []
    with nullcontext(True) if target.fix else writer.locked_if_free() as no_rewrite_running:
        if no_rewrite_running:
            found += [path.name for path in writer.leftovers()]
            if target.fix:
                writer.remove_leftovers()
    report.temp_files = len(found)
    if target.fix:
        report.removed_temp_files = len(found)
        return
    for name in found:
        message = "a temporary file an interrupted write left behind; --fix deletes it"
        report.warnings += 1
        _keep_finding(report, Finding(name, "warning", "leftover_temp_file", message, fixable=True), on_finding)


def _check_all_rows(
    target: _Target,
    report: ValidationReport,
    on_finding: Callable[[Finding], None] | None,
    progress: Callable[[int, int | None], None] | None,
    workers: int | None,
) -> dict[int, _RowCheck]:
    """Check every line; return the checks of lines that --fix must change (empty when not fixing)."""
    total = _count_lines(target.manifest) if progress else None
    seen_hashes: dict[int, int] = {}
    seen_ids: dict[int, int] = {}
    decisions: dict[int, _RowCheck] = {}
    checks = map_ordered(lambda item: _check_line(target, *item), iter_jsonl(target.manifest), workers=workers)
    for done, (_item, check) in enumerate(checks, start=1):
        if isinstance(check, BaseException):
            raise check
        _check_duplicates(check, seen_hashes, seen_ids)
        _count_check(report, check, on_finding)
        if target.fix and (check.has_unfixable_error or _needs_rewrite(check)):
            decisions[check.line] = check
        if progress:
            progress(done, total)
    return decisions


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


# --- checking one row -------------------------------------------------------------------------------------


def _check_line(target: _Target, number: int, row: dict[str, Any] | RowProblem) -> _RowCheck:
    """Check one line of the manifest (runs in a worker thread; reads but never writes, unless fixing audio)."""
    where = f"{target.manifest.name} line {number}"
    if isinstance(row, RowProblem):
        check = _RowCheck(number, where)
        check.add("error", "unreadable_line", row.reason)
        return check
    if row.get("id"):
        where += f" (id {row['id']})"
    check = _RowCheck(number, where, row=dict(row))
    _check_text(check)
    _check_language_field(check, target.languages)
    _check_audio(target, check)
    return check


def _check_text(check: _RowCheck) -> None:
    assert check.row is not None
    text = check.row.get("text")
    if not isinstance(text, str):
        check.add("error", "no_text", f"text must be a string (the transcript), got {type(text).__name__}")
        return
    for issue in check_transcript(text):
        check.add(issue.severity, issue.code, issue.message)
    cleaned = clean_transcript(text)
    if not check.has_unfixable_error and cleaned != text:
        check.add("warning", "untidy_text", "the transcript has extra spaces or invisible characters", fixable=True)
        check.row["text"] = cleaned


def _check_language_field(check: _RowCheck, languages: LanguageSupport | None) -> None:
    assert check.row is not None
    try:
        language = check_row_language(check.row.get("language"), name="language")
        if languages is not None:
            languages.normalize(language, where="language")
    except DataError as exc:
        check.add("error", "bad_language", str(exc).removeprefix("language: "))


def _check_audio(target: _Target, check: _RowCheck) -> None:
    """Check the row's audio file: inside the folder, present, decodable, the right format and length."""
    assert check.row is not None
    relative = check.row.get("audio_path", check.row.get("audio"))
    if not isinstance(relative, str) or not relative:
        check.add("error", "no_audio_path", "no audio_path (expected a path relative to the dataset folder)")
        return
    try:
        real = target.guard.resolve(relative)
    except DataError as exc:
        check.add("error", "path_escape", f"{exc}; the file was not read")
        return
    if not os.path.isfile(real):
        check.add("error", "missing_file", f"audio file {relative} not found")
        return
    path = check.audio_file = Path(real)
    try:
        clip = load_audio_16k(path, max_duration_s=target.max_duration_s, name_for_errors=relative)
    except DataError as exc:
        code = "too_long" if "longer than" in str(exc) else "unreadable_audio"
        check.add("error", code, str(exc))
        return
    check.duration_s = clip.duration_s
    for issue in check_clip(analyse_clip(clip.samples), max_duration_s=target.max_duration_s):
        check.add(issue.severity, issue.code, f"{relative}: {issue.message}")
    if check.has_unfixable_error:
        return
    sha = content_hash(clip.samples)
    check.sha256 = sha
    _check_format(target, check, path, relative, clip.samples, sha)
    _check_recorded_facts(target, check, clip.duration_s, sha)


def _check_format(target: _Target, check: _RowCheck, path: Path, relative: str, samples: Any, sha: str) -> None:
    info = sf.info(str(path))
    if (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", TARGET_RATE, 1):
        return
    found = f"{info.format} {info.subtype}, {info.samplerate} Hz, {info.channels} channel(s)"
    message = f"{relative} is {found}; expected 16 kHz mono 16-bit WAV"
    check.add("error" if target.is_store else "warning", "wrong_format", message, fixable=True)
    if target.fix:
        converted = f"{AUDIO_DIR}/{sha}.wav"
        with writing_audio(target.folder) if target.is_store else nullcontext():
            write_wav_16k(target.folder / converted, samples)
        check.replaced_file = path
        check.row["audio_path"] = converted  # type: ignore[index]
        check.row.pop("audio", None)  # type: ignore[union-attr]


def _check_recorded_facts(target: _Target, check: _RowCheck, duration_s: float, sha: str) -> None:
    """Compare what the row says about its audio with the audio itself; repair stale values.

    Plain manifests may leave ``duration_s``, ``sha256`` and ``id`` out; dataset rows must have them.
    """
    row = check.row
    assert row is not None
    recorded = row.get("duration_s")
    if recorded is not None or target.is_store:
        if not isinstance(recorded, (int, float)) or abs(recorded - duration_s) > _DURATION_TOLERANCE_S:
            message = f"duration_s is {recorded!r} but the audio lasts {duration_s:.2f} s"
            check.add("warning", "stale_duration", message, fixable=True)
            row["duration_s"] = round(duration_s, 3)
    if (row.get("sha256") is not None or target.is_store) and row.get("sha256") != sha:
        check.add("warning", "stale_hash", "sha256 does not match the audio (the file was changed or replaced)", True)
        row["sha256"] = sha
    if target.is_store and not row.get("id"):
        check.add("warning", "no_id", "the row has no id", fixable=True)
        row["id"] = sha[:16]


def _check_duplicates(check: _RowCheck, seen_hashes: dict[int, int], seen_ids: dict[int, int]) -> None:
    """Flag a clip or an id seen on an earlier line (runs in order, in the main thread).

    The indexes keep 64-bit digests and line numbers, not strings, so a million rows cost tens of megabytes.
    """
    usable = not check.has_unfixable_error
    if check.sha256 is not None and usable:
        first = seen_hashes.setdefault(int(check.sha256[:16], 16), check.line)
        if first != check.line:
            check.add("error", "duplicate", f"the same audio as {check.where.split(' line ')[0]} line {first}")
    row_id = check.row.get("id") if check.row else None
    if isinstance(row_id, str) and row_id and usable:
        first = seen_ids.setdefault(_digest(row_id), check.line)
        if first != check.line:
            where = check.where.split(" line ")[0]
            check.add("error", "duplicate_id", f"the id {row_id!r} is also used by {where} line {first}")


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _needs_rewrite(check: _RowCheck) -> bool:
    return any(finding.fixable for finding in check.findings)


def _count_check(report: ValidationReport, check: _RowCheck, on_finding: Callable[[Finding], None] | None) -> None:
    report.rows += 1
    errors = [finding for finding in check.findings if finding.is_error]
    report.errors += len(errors)
    report.warnings += len(check.findings) - len(errors)
    report.error_rows += bool(errors)
    report.warning_rows += bool(check.findings) and not errors
    for finding in check.findings:
        _keep_finding(report, finding, on_finding)
    if not errors and check.row is not None:
        _count_usable_row(report, check.row, check.duration_s)


def _count_usable_row(report: ValidationReport, row: dict[str, Any], measured_s: float | None) -> None:
    """Add a usable row to the totals: its ``duration_s``, or the duration measured from its audio when the row
    records none (a plain manifest may leave it out)."""
    recorded = row.get("duration_s")
    duration = float(recorded if isinstance(recorded, (int, float)) else measured_s or 0.0)
    report.usable_rows += 1
    report.seconds += duration
    language = row.get("language") or "unknown"
    report.languages[language] = report.languages.get(language, 0) + 1
    for label, count in duration_histogram([duration]).items():
        report.durations[label] += count


def _keep_finding(report: ValidationReport, finding: Finding, on_finding: Callable[[Finding], None] | None) -> None:
    if len(report.findings) < MAX_KEPT_FINDINGS:
        report.findings.append(finding)
    else:
        report.findings_not_kept += 1
    if on_finding:
        on_finding(finding)


# --- fixing -----------------------------------------------------------------------------------------------


def _apply_fixes(
    target: _Target,
    writer: AtomicJsonl,
    decisions: dict[int, _RowCheck],
    report: ValidationReport,
    quarantine: _Quarantine,
) -> None:
    """Rewrite ``data.jsonl`` with repaired rows and without unfixable ones; quarantine those; update the totals.

    The steps run in an order a kill at any point cannot hurt (the writer lock is held throughout):

    1. the files to set aside are copied into ``quarantine/audio/`` (``data.jsonl`` still refers to the originals);
    2. each quarantined row is logged, unless an interrupted run logged that same line already;
    3. the new ``data.jsonl`` replaces the old one in one rename;
    4. the originals no remaining row refers to are deleted.

    Killed before step 3, the dataset is as it was with every file in place, and the next run does the same work
    again (reusing the copies and log lines already made). Killed during step 4, the originals left are orphans
    whose copies are in quarantine already: the next run deletes them without copying them twice.
    """
    if not decisions:
        return
    kept_paths = _kept_audio_paths(target, decisions)
    set_aside: dict[Path, Path] = {}  # original -> its copy in quarantine
    logged = quarantine.logged_lines()
    unfixable = {number for number, check in decisions.items() if check.has_unfixable_error}
    for number, line in _raw_lines(target.manifest, unfixable):
        check = decisions[number]
        original = _movable(target, check.audio_file, kept_paths)
        copy = quarantine.copy_in(original)
        if original is not None and copy is not None:
            set_aside[original] = copy
        quarantine.log_row(check, line, copy, logged)
    for check in decisions.values():
        original = None if check.has_unfixable_error else _movable(target, check.replaced_file, kept_paths)
        copy = quarantine.copy_in(original)
        if original is not None and copy is not None:
            set_aside[original] = copy

    def transform(number: int, line: bytes) -> bytes | None:
        check = decisions.get(number)
        if check is None:
            return line
        if check.has_unfixable_error:
            return None
        assert check.row is not None
        return encode_row(check.row).rstrip(b"\n")

    writer.rewrite(transform)
    for original, copy in set_aside.items():
        quarantine.delete_original(original, copy)
    _recount_after_fix(report, decisions, quarantine)


def _raw_lines(manifest: Path, numbers: set[int]) -> Iterator[tuple[int, bytes]]:
    """The lines ``numbers`` of ``manifest`` as they are (bytes, without the newline), in order."""
    if not numbers:
        return
    with manifest.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number in numbers:
                yield number, raw.rstrip(b"\n")


def _kept_audio_paths(target: _Target, decisions: dict[int, _RowCheck]) -> set[str]:
    """Resolved paths of the audio files rows that stay refer to (those files must not be moved)."""
    kept: set[str] = set()
    for number, row in iter_jsonl(target.manifest):
        check = decisions.get(number)
        if check is not None and check.has_unfixable_error:
            continue
        if check is not None:
            row = check.row or {}
        if isinstance(row, dict) and isinstance(row.get("audio_path"), str):
            try:
                kept.add(target.guard.resolve(row["audio_path"]))
            except DataError:
                continue
    return kept


def _movable(target: _Target, path: Path | None, kept: set[str]) -> Path | None:
    """``path`` if it may be moved to quarantine: inside the dataset folder and used by no remaining row."""
    if path is None or not path.is_file():
        return None
    try:
        resolved = target.guard.resolve(str(path))
    except DataError:
        return None
    return None if resolved in kept else Path(resolved)


def _recount_after_fix(report: ValidationReport, decisions: dict[int, _RowCheck], quarantine: _Quarantine) -> None:
    for check in decisions.values():
        errors = sum(finding.is_error for finding in check.findings)
        warnings = sum(not finding.is_error for finding in check.findings)
        fixable_warnings = sum(not finding.is_error and finding.fixable for finding in check.findings)
        if check.has_unfixable_error:
            report.quarantined_rows += 1
            report.errors -= errors
            report.warnings -= warnings
            report.error_rows -= 1
            continue
        report.fixed_rows += 1
        report.warnings -= fixable_warnings
        if errors:  # fixable errors only: the row becomes usable
            report.errors -= errors
            report.error_rows -= 1
            assert check.row is not None
            _count_usable_row(report, check.row, check.duration_s)
    report.quarantined_files = quarantine.files_moved


class _Quarantine:
    """The ``quarantine/`` folder: rows that could not be repaired, their files, and files replaced by repairs.

    Files are copied in atomically and the originals deleted only once nothing refers to them
    (:meth:`delete_original`); each log line records the hash of the row's line, so a row is logged once however
    often an interrupted ``--fix`` runs again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = AtomicJsonl(folder / QUARANTINE_FILE)
        self.audio_dir = folder / "audio"
        self.files_moved = 0
        self._copied: set[Path] = set()

    def remove_leftovers(self) -> None:
        """Delete the partial copies a killed run left (only ``--fix`` writes here, under the writer lock)."""
        if self.audio_dir.is_dir():
            for path in self.audio_dir.glob(".*.tmp"):
                path.unlink(missing_ok=True)

    def logged_lines(self) -> set[str]:
        """The line hashes of the rows logged already."""
        if not self.log.path.is_file():
            return set()
        hashes = set()
        for _number, entry in iter_jsonl(self.log.path):
            if isinstance(entry, dict) and isinstance(entry.get("line_sha256"), str):
                hashes.add(entry["line_sha256"])
        return hashes

    def log_row(self, check: _RowCheck, line: bytes, audio_copy: str | None, logged: set[str]) -> None:
        """Record why a row (``line``, exactly as it was) leaves ``data.jsonl``, unless it is logged already."""
        line_hash = hashlib.sha256(line).hexdigest()
        if line_hash in logged:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {
            "line": check.line,
            "row": _readable_row(line),
            "reasons": [f"{f.code}: {f.message}" for f in check.findings if f.is_error],
            "audio_moved_to": audio_copy,
            "quarantined": utc_now(),
            "line_sha256": line_hash,
        }
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            entry["row_base64"] = base64.b64encode(line).decode("ascii")
        self.log.append(entry)
        logged.add(line_hash)

    def copy_in(self, path: Path | None) -> str | None:
        """Copy ``path`` into ``quarantine/audio/`` unless an identical copy is there; return the copy's path
        relative to the dataset. The original stays until :meth:`delete_original`."""
        if path is None:
            return None
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        destination = self.audio_dir / path.name
        suffix = 0
        while destination.exists() and not filecmp.cmp(destination, path, shallow=False):
            suffix += 1
            destination = self.audio_dir / f"{path.stem}-{suffix}{path.suffix}"
        if not destination.exists():
            _copy_atomically(path, destination)
        if path not in self._copied:
            self._copied.add(path)
            self.files_moved += 1
        return str(destination.relative_to(self.folder.parent))

    def delete_original(self, original: Path, copy: str) -> None:
        """Delete ``original`` now that the dataset no longer refers to it and its copy ``copy`` is in quarantine."""
        kept = self.folder.parent / copy
        if kept.is_file() and original.is_file() and kept.stat().st_size == original.stat().st_size:
            original.unlink()

    def set_aside(self, path: Path) -> None:
        """Copy ``path`` into quarantine, then delete it (a file no row refers to)."""
        copy = self.copy_in(path)
        if copy is not None:
            self.delete_original(path, copy)


def _readable_row(line: bytes) -> Any:
    """A quarantined line for people: the row it held, or its text (undecodable bytes shown as U+FFFD)."""
    text = line.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _copy_atomically(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` through :func:`~voxplug.tempfiles.replaced_atomically`."""
    with open(source, "rb") as handle, replaced_atomically(destination) as copy:
        shutil.copyfileobj(handle, copy)


# --- files no row uses ------------------------------------------------------------------------------------


def _check_orphan_files(
    target: _Target,
    report: ValidationReport,
    on_finding: Callable[[Finding], None] | None,
    quarantine: _Quarantine | None,
) -> None:
    """Warn about files in ``audio/`` that no row refers to (left by an interrupted add or fix; harmless).

    When fixing, they move to ``quarantine/audio/`` (an identical copy there already is not made twice).
    """
    audio_dir = target.folder / AUDIO_DIR
    if not audio_dir.is_dir():
        return
    used = set(_referenced_names(target.manifest))
    for name in _orphan_names(audio_dir, used):
        if quarantine is not None:
            quarantine.set_aside(audio_dir / name)
            report.quarantined_files = quarantine.files_moved
            continue
        finding = Finding(f"{AUDIO_DIR}/{name}", "warning", "orphan_file", "no row refers to this file", fixable=True)
        report.warnings += 1
        _keep_finding(report, finding, on_finding)


def _referenced_names(manifest: Path) -> Iterator[str]:
    for _number, row in iter_jsonl(manifest):
        if isinstance(row, dict) and isinstance(row.get("audio_path"), str):
            yield Path(row["audio_path"]).name


def _orphan_names(audio_dir: Path, used: set[str]) -> Iterator[str]:
    with os.scandir(audio_dir) as entries:
        for entry in entries:
            if entry.is_file() and not entry.name.startswith(".") and entry.name not in used:
                yield entry.name


def load_quarantine(path: Path) -> list[dict[str, Any]]:
    """The entries of a dataset's ``quarantine/quarantine.jsonl`` (empty when nothing was quarantined)."""
    log = Path(path) / QUARANTINE_DIR / QUARANTINE_FILE
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
