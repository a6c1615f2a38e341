"""``voxplug evaluate``: WER/CER of any model (base, adapter folder or full fine-tune) on a dataset."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from voxplug.errors import DataError

if TYPE_CHECKING:
    from voxplug.evaluation.evaluate import EvaluationOutcome


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` command to ``app``."""
    app.command("evaluate")(evaluate)


def evaluate(
    model: str = typer.Option(
        ..., "--model", "-m", help="Hub id, model folder, or LoRA adapter folder (runs/x/model)."
    ),
    data: Path = typer.Option(..., "--data", "-d", help="JSONL manifest, or a dataset folder holding data.jsonl."),
    base: str = typer.Option(
        None, "--base", help="Also evaluate this base model and compare (default: the model's own base)."
    ),
    no_compare: bool = typer.Option(False, "--no-compare", help="Do not evaluate the base model."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for the results (default: evaluations/<model name>)."),
    language: str = typer.Option(None, "--language", help="Language for rows that name none (default: automatic)."),
    max_new_tokens: int = typer.Option(
        None, "--max-new-tokens", min=1, help="Most tokens of a transcript (default: from each clip's length)."
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Most clips decoded together (default: from free GPU memory; 8 on CPU)."
    ),
    cuda_graphs: bool = typer.Option(True, help="Replay each decoding step as a CUDA graph on GPUs."),
    all_rows: bool = typer.Option(
        False, "--all-rows", help="Also score the rows the model was trained on (default: only the held-out ones)."
    ),
) -> None:
    """Transcribe a dataset, write per-utterance results (reference, hypothesis, errors) and a comparison.

    For a model that `voxplug train` made, rows it was trained on are left out (and counted): scores on them
    measure memorisation, not how it does on new speech.
    """
    from voxplug.evaluation.evaluate import default_out_dir
    from voxplug.evaluation.evaluate import evaluate as run_evaluation
    from voxplug.evaluation.generation import GenerationSettings
    from voxplug.plugins import get_plugin_host

    settings = GenerationSettings(max_new_tokens, batch_size, None, language, cuda_graphs)
    with rows_to_score(model, data, all_rows=all_rows) as manifest:
        outcome = run_evaluation(
            model,
            manifest,
            out_dir=out or default_out_dir(model),
            host=get_plugin_host(),
            settings=settings,
            base=base,
            compare_with_base=not no_compare,
        )
    print_outcome(outcome, model)


def run_folder_of(model: str) -> Path | None:
    """The run folder of a model folder that `voxplug train` wrote (``runs/x/model`` -> ``runs/x``), if any."""
    from voxplug.training.outputs import DATA_SPLIT_FILE

    folder = Path(model)
    for candidate in (folder, folder.parent):
        if folder.is_dir() and (candidate / DATA_SPLIT_FILE).is_file():
            return candidate
    return None


def _row_key(manifest: Path, number: int, row: dict[str, Any]) -> str:
    """The key :func:`voxplug.training.outputs.clip_key` gives this row's example."""
    audio = row.get("audio_path", row.get("audio"))
    if isinstance(audio, str) and audio:
        return str((manifest.parent / audio).resolve())
    return f"id:{row.get('id') or f'{manifest.stem}-{number}'}"


@contextmanager
def rows_to_score(model: str, data: Path, *, all_rows: bool) -> Iterator[Path]:
    """The manifest to score: ``data`` less the rows ``model`` trained on (said on the console), or all of it.

    The held-out rows go to a temporary manifest beside ``data`` (so that audio paths resolve as they do in
    it), removed afterwards. A model without a run folder, or data it never trained on, is scored as given.
    """
    from voxplug.data.interface import RowProblem
    from voxplug.data.manifest import iter_jsonl
    from voxplug.training.outputs import read_data_split

    run_dir = run_folder_of(model)
    split = read_data_split(run_dir) if run_dir is not None else None
    manifest = data / "data.jsonl" if data.is_dir() else data
    if split is None or not manifest.is_file():
        yield data
        return
    rows = [(n, row) for n, row in iter_jsonl(manifest) if not isinstance(row, RowProblem)]
    held_out = [  # each keeps the id it has in ``data`` (rows without one are named by their line there)
        {**row, "id": row.get("id") or f"{manifest.stem}-{n}"}
        for n, row in rows
        if _row_key(manifest, n, row) not in split["train"]
    ]
    trained = len(rows) - len(held_out)
    if not trained:
        yield data
        return
    said = f"{data}: {trained} of {len(rows)} rows were trained on by this model (run folder {run_dir})"
    if all_rows:
        typer.echo(f"warning: {said}:\n  their scores measure memorisation, not new speech", err=True)
        yield data
        return
    if not held_out:
        raise DataError(
            f"{said}: none is held out, so nothing here measures new speech; score other recordings, or pass "
            "--all-rows to score the training rows anyway"
        )
    typer.echo(f"{said}\nscoring the {len(held_out)} held-out rows (--all-rows scores all {len(rows)})", err=True)
    temporary = manifest.parent / f".voxplug-held-out-{os.getpid()}.jsonl"
    try:
        temporary.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in held_out), "utf-8")
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def shown_ref(ref: str) -> str:
    """A model reference as the table shows it: a folder inside the working folder relative to it, else as given."""
    path = Path(ref)
    if ref and path.is_absolute() and path.exists() and path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd()))
    return ref


def print_outcome(outcome: EvaluationOutcome, model: str) -> None:
    """A table of WER/CER per model, and where the files are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{outcome.scores.samples} clips")
    model, base = shown_ref(model), shown_ref(str((outcome.comparison or {}).get("base", "")))
    for column in ("model", "WER", "CER"):
        table.add_column(column)
    if outcome.base_scores is not None and outcome.comparison is not None:
        table.add_row(f"base: {base}", f"{outcome.base_scores.wer:.3f}", f"{outcome.base_scores.cer:.3f}")
    table.add_row(model, f"{outcome.scores.wer:.3f}", f"{outcome.scores.cer:.3f}")
    console = Console()
    console.print(table)
    for name, path in outcome.files.items():
        console.print(f"{name}: {path}", highlight=False)
