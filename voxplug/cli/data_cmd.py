"""``voxplug data ...``: create, fill, inspect, check and publish a local speech dataset.

Every command takes the dataset folder first. Problems with single rows or files are reported one per line and
the rest carries on; the exit status is 1 when anything failed, so scripts can tell.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from voxplug.errors import DataError, VoxplugError

if TYPE_CHECKING:
    from rich.console import Console

    from voxplug.data.interface import RowProblem
    from voxplug.data.store import AddResult, DatasetStore, ImportReport
    from voxplug.data.validate import ValidationReport

ORIGINS_HELP = "How the clips were made: upload or recording."
JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON instead of tables.")
LANGUAGE_OPTION: Any = typer.Option(None, "--language", "-l", help="Language code (default: the dataset's).")
MAX_DURATION_OPTION: Any = typer.Option(30.0, "--max-duration", help="Reject clips longer than this (seconds).")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    group = typer.Typer(help="Create, fill, check and publish speech datasets.", no_args_is_help=True)
    for name, command in (
        ("create", create),
        ("add", add),
        ("import", import_folder),
        ("list", list_rows),
        ("remove", remove),
        ("summary", summary),
        ("validate", validate),
        ("push", push),
    ):
        group.command(name)(command)
    app.add_typer(group, name="data")


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _open(path: Path) -> DatasetStore:
    from voxplug.data.store import DatasetStore

    return DatasetStore.open(path)


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = _console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


# --- create / add / import -----------------------------------------------------------------------------------


def create(
    path: Path = typer.Argument(..., help="New (or empty) folder for the dataset."),
    language: str = typer.Option(None, "--language", "-l", help="Default language code of its rows, e.g. en."),
    licence: str = typer.Option(None, "--licence", "--license", help="Licence id for the card, e.g. cc-by-4.0."),
    name: str = typer.Option(None, "--name", help="Display name (default: the folder's name)."),
    description: str = typer.Option("", "--description", help="One paragraph for the dataset card."),
) -> None:
    """Create an empty dataset: data.jsonl, audio/ and dataset.json."""
    from voxplug.data.store import DatasetStore

    store = DatasetStore.create(path, language=language, licence=licence, name=name, description=description)
    _console().print(f"created dataset {store.metadata['name']!r} in {path}")


def add(
    path: Path = typer.Argument(..., help="The dataset folder."),
    audio: list[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG, MP3) to add."),
    text: str = typer.Option(None, "--text", "-t", help="Transcript of the (single) audio file."),
    texts_file: Path = typer.Option(None, "--texts-file", help="UTF-8 file with one transcript per audio file."),
    language: str = LANGUAGE_OPTION,
    origin: str = typer.Option("upload", "--origin", help=ORIGINS_HELP),
    max_duration: float = MAX_DURATION_OPTION,
) -> None:
    """Add audio files with their transcripts (--text, --texts-file, or a .txt beside each file)."""
    from voxplug.data.prepare import prepare_text

    store = _open(path)
    if origin not in ("upload", "recording"):
        raise typer.BadParameter(f"expected upload or recording, got {origin!r}", param_hint="--origin")
    console = _console()
    failed = 0
    transcripts = _transcripts(audio, text, texts_file)
    for number, (audio_file, transcript) in enumerate(zip(audio, transcripts, strict=True), start=1):
        try:
            if texts_file is not None:  # a transcript's problem names its line in the texts file
                prepare_text(str(transcript), name=f"{texts_file} line {number} (for {audio_file.name})")
            result = store.add(
                audio_file,
                _read_text(audio_file, transcript),
                language=language,
                origin=origin,
                max_duration_s=max_duration,
            )
        except VoxplugError as exc:
            failed += 1
            typer.echo(f"error: {exc}", err=True)
            continue
        _print_added(console, audio_file, result)
    if failed:
        raise typer.Exit(1)


def _transcripts(audio: list[Path], text: str | None, texts_file: Path | None) -> list[str | None]:
    """One transcript (or None: read the .txt beside the file) per audio file, or a clear error."""
    if text is not None and texts_file is not None:
        raise DataError("give --text or --texts-file, not both")
    if text is not None:
        if len(audio) != 1:
            raise DataError(f"--text gives one transcript but {len(audio)} audio files were named; use --texts-file")
        return [text]
    if texts_file is None:
        return [None] * len(audio)
    lines = _texts_file_lines(texts_file)
    if len(lines) != len(audio):
        raise DataError(
            f"{texts_file}: {len(lines)} transcript line(s) for {len(audio)} audio file(s); expected one line per file"
        )
    return lines


def _texts_file_lines(texts_file: Path) -> list[str]:
    from voxplug.data.text import decode_transcript_bytes

    try:
        data = texts_file.read_bytes()
    except OSError as exc:
        raise DataError(f"{texts_file}: cannot read the transcripts file ({exc.strerror})") from exc
    return decode_transcript_bytes(data, str(texts_file)).splitlines()


def _read_text(audio_file: Path, transcript: str | None) -> str:
    from voxplug.data.text import decode_transcript_bytes

    if transcript is not None:
        return transcript
    beside = audio_file.with_suffix(".txt")
    if not beside.is_file():
        raise DataError(f"{audio_file}: no transcript (expected --text, --texts-file or {beside.name} beside it)")
    return decode_transcript_bytes(beside.read_bytes(), str(beside))


def _print_added(console: Console, audio_file: Path, result: AddResult) -> None:
    row = result.row
    if result.added:
        typer.echo(f"added {audio_file} as row {row['id']} ({row['duration_s']:.2f} s)")
    else:
        typer.echo(f"{audio_file}: already in the dataset as row {row['id']}; not added again")
    for warning in result.warnings:
        typer.echo(f"warning: {warning.describe(str(audio_file))}")


def import_folder(
    path: Path = typer.Argument(..., help="The dataset folder."),
    folder: Path = typer.Argument(..., help="Folder of audio files to import."),
    manifest: Path = typer.Option(None, "--manifest", "-m", help="CSV, TSV or JSONL of audio paths and transcripts."),
    language: str = LANGUAGE_OPTION,
    max_duration: float = MAX_DURATION_OPTION,
    workers: int = typer.Option(None, "--workers", help="Decoding threads (default: twice the CPUs, at least 4)."),
) -> None:
    """Import a folder: with --manifest, or with a .txt transcript beside each audio file."""
    store = _open(path)
    with _progress_bar(f"importing {folder}") as update:
        report = store.import_folder(
            folder,
            manifest,
            language=language,
            max_duration_s=max_duration,
            progress=update,
            workers=workers,
            on_problem=lambda problem: typer.echo(f"error: {problem_line(problem)}", err=True),
        )
    _print_import_report(report)
    if report.problem_count:
        raise typer.Exit(1)


def problem_line(problem: RowProblem) -> str:
    """``where: why``, said once: a reason that already starts with the row's label keeps only its own wording."""
    reason = problem.reason
    if reason.startswith(problem.row):
        reason = reason[len(problem.row) :].lstrip(" :")
    return f"{problem.row}: {reason}"


def _print_import_report(report: ImportReport) -> None:
    typer.echo(
        f"imported {report.added} clip(s) ({report.audio_seconds / 60:.1f} min of audio) in {report.elapsed_s:.1f} s\n"
        f"{report.duplicates} duplicate(s) skipped, {report.problem_count} row(s) rejected, "
        f"{report.warnings} warning(s)"
    )


# --- list / remove / summary ---------------------------------------------------------------------------------


def list_rows(
    path: Path = typer.Argument(..., help="The dataset folder."),
    limit: int = typer.Option(None, "--limit", "-n", help="Show at most this many rows."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the rows: id, language, duration, origin and transcript."""
    from itertools import islice

    from rich.table import Table

    rows = islice(_open(path).rows(), limit)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table("id", "language", "seconds", "origin", "text")
    for row in rows:
        table.add_row(
            row.get("id", ""),
            row.get("language") or "-",
            f"{row.get('duration_s', 0):.2f}",
            row.get("origin", ""),
            row.get("text", ""),
        )
    _console().print(table)


def remove(
    path: Path = typer.Argument(..., help="The dataset folder."),
    row_ids: list[str] = typer.Argument(..., help="Ids of the rows to remove (see `voxplug data list`)."),
) -> None:
    """Remove rows; an audio file is deleted once no row uses it."""
    store = _open(path)
    for row_id in row_ids:
        row = store.remove(row_id)
        typer.echo(f"removed row {row_id} ({row.get('text', '')!r})")


def summary(path: Path = typer.Argument(..., help="The dataset folder."), as_json: bool = JSON_OPTION) -> None:
    """Rows, hours, rows per language and origin, and a duration histogram."""
    totals = _open(path).summary()
    if as_json:
        typer.echo(json.dumps(totals, indent=2, ensure_ascii=False))
        return
    _print_totals(
        totals["rows"], totals["seconds"], totals["languages"], totals["durations"], origins=totals["origins"]
    )


def _print_totals(
    rows: int, seconds: float, languages: dict[str, int], durations: dict[str, int], origins: dict[str, int] | None
) -> None:
    from rich.table import Table

    table = Table("total", "value", show_header=False)
    table.add_row("rows", str(rows))
    table.add_row("audio", f"{seconds / 3600:.3f} h ({seconds / 60:.1f} min)")
    table.add_row("languages", ", ".join(f"{code}: {count}" for code, count in languages.items()) or "-")
    if origins is not None:
        table.add_row("origins", ", ".join(f"{name}: {count}" for name, count in origins.items()) or "-")
    table.add_row("durations", "  ".join(f"{label}: {count}" for label, count in durations.items() if count) or "-")
    _console().print(table)


# --- validate / push -----------------------------------------------------------------------------------------

MAX_FINDINGS_SHOWN = 200


def validate(
    path: Path = typer.Argument(..., help="A dataset folder, or a JSONL manifest."),
    fix: bool = typer.Option(False, "--fix", help="Repair what can be repaired; move the rest to quarantine/."),
    as_json: bool = JSON_OPTION,
    max_duration: float = MAX_DURATION_OPTION,
    model: str = typer.Option(
        None, "--model", "-m", help="Also check each row's language against what this model (folder or Hub id) takes."
    ),
) -> None:
    """Check every row (audio, format, length, transcript, language, duplicates); exit 1 if errors remain."""
    from voxplug.data.validate import validate_dataset

    languages = _model_languages(model) if model else None
    with _progress_bar(f"validating {path}") as update:
        report = validate_dataset(path, fix=fix, max_duration_s=max_duration, progress=update, languages=languages)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        _print_validation(report, fixed=fix)
    if not report.ok:
        raise typer.Exit(1)


def _model_languages(model: str) -> Any:
    """The language codes the model family of ``model`` accepts (its ``language_support``)."""
    from voxplug.models.detect import detect_family
    from voxplug.plugins import get_plugin_host

    return detect_family(model, get_plugin_host())().language_support(model)


def _print_validation(report: ValidationReport, *, fixed: bool) -> None:
    from rich.table import Table

    console = _console()
    if report.findings:
        table = Table("where", "severity", "problem", "fix", title="findings")
        for finding in report.findings[:MAX_FINDINGS_SHOWN]:
            style = "red" if finding.is_error else "yellow"
            fix = "--fix" if finding.fixable else ("quarantine" if finding.is_error else "")
            table.add_row(finding.where, f"[{style}]{finding.severity}[/]", f"{finding.code}: {finding.message}", fix)
        console.print(table)
        hidden = len(report.findings) - MAX_FINDINGS_SHOWN + report.findings_not_kept
        if hidden > 0:
            console.print(f"... and {hidden} more finding(s); use --json to see them all")
    _print_totals(report.usable_rows, report.seconds, report.languages, report.durations, origins=None)
    if report.rows and not report.usable_rows and all(f.code == "unreadable_line" for f in report.findings):
        console.print(
            f"no line of {report.path} is a JSON row: for a CSV or TSV manifest, import it with "
            "`voxplug data import DATASET FOLDER --manifest FILE`",
            soft_wrap=True,
        )
    verdict = "[green]OK[/]" if report.ok else f"[red]{report.errors} error(s)[/]"
    line = f"{report.rows} row(s) checked: {report.usable_rows} usable, {verdict}, {report.warnings} warning(s)"
    if fixed:
        line += (
            f"; fixed {report.fixed_rows} row(s), quarantined {report.quarantined_rows} row(s) "
            f"and {report.quarantined_files} file(s)"
        )
        if report.removed_temp_files:
            line += f", deleted {report.removed_temp_files} temporary file(s) of interrupted writes"
    console.print(line, soft_wrap=True)


SCRUB_HELP = "Scrub personal data from the pushed transcripts first, e.g. email,url,phone,digits (local copy kept)."
SCRUB_OPTION: Any = typer.Option(None, "--scrub", help=SCRUB_HELP)
SCRUB_REPORT_OPTION: Any = typer.Option(
    None, "--scrub-report", help="Write what was scrubbed, with the original text, to this JSON file (keep it private)."
)


def push(
    path: Path = typer.Argument(..., help="The dataset folder."),
    repo_id: str = typer.Argument(..., help="Hub dataset to create or update, e.g. your-name/my-voice."),
    public: bool = typer.Option(
        False, "--public", help="Push to a public repo (default: private; an existing repo must already match)."
    ),
    scrub: str = SCRUB_OPTION,
    scrub_report: Path = SCRUB_REPORT_OPTION,
) -> None:
    """Publish the dataset to the Hugging Face Hub (Parquet + Audio feature + card), in one commit.

    The token comes from HF_TOKEN or `hf auth login`.
    """
    from voxplug.data.push import push_dataset
    from voxplug.plugins import get_plugin_host

    scrubbers = _scrubbers_for_push(path, scrub, scrub_report)
    with _progress_bar(f"packing {path}") as update:
        result = push_dataset(
            path,
            repo_id,
            private=not public,
            host=get_plugin_host(),
            progress=lambda _stage, done, total: update(done, total),
            scrubbers=scrubbers,
        )
    visibility = "public" if public else "private"
    typer.echo(f"pushed {len(result.files) - 1} shard(s) and a card to {result.url} ({visibility})")


def _scrubbers_for_push(path: Path, names: str | None, report_path: Path | None) -> list[Any]:
    """The scrubbers ``--scrub`` names; prints what they will replace (counts and row ids, never the text)."""
    from voxplug.data.scrub import make_scrubbers, parse_scrubber_names, scrub_report_for_rows

    scrubbers = make_scrubbers(parse_scrubber_names(names))
    if not scrubbers:
        return []
    report = scrub_report_for_rows(_open(path).rows(), scrubbers)
    typer.echo(report.describe())
    for row in report.rows:
        kinds = ", ".join(sorted({item.scrubber for item in row.replacements}))
        typer.echo(f"  row {row.row}: {len(row.replacements)} replaced ({kinds})")
    if report_path is not None:
        typer.echo(f"full scrub report (with the replaced text): {report.write(report_path)}")
    return scrubbers
