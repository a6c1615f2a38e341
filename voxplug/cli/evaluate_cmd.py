"""``voxplug evaluate``: WER/CER of any model (base, adapter folder or full fine-tune) on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

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
) -> None:
    """Transcribe a dataset, write per-utterance results (reference, hypothesis, errors) and a comparison."""
    from voxplug.evaluation.evaluate import default_out_dir
    from voxplug.evaluation.evaluate import evaluate as run_evaluation
    from voxplug.evaluation.generation import GenerationSettings
    from voxplug.plugins import get_plugin_host

    settings = GenerationSettings(max_new_tokens, batch_size, None, language, cuda_graphs)
    outcome = run_evaluation(
        model,
        data,
        out_dir=out or default_out_dir(model),
        host=get_plugin_host(),
        settings=settings,
        base=base,
        compare_with_base=not no_compare,
    )
    print_outcome(outcome, model)


def print_outcome(outcome: EvaluationOutcome, model: str) -> None:
    """A table of WER/CER per model, and where the files are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{outcome.scores.samples} clips")
    for column in ("model", "WER", "CER"):
        table.add_column(column)
    if outcome.base_scores is not None and outcome.comparison is not None:
        table.add_row(
            f"base: {outcome.comparison['base']}", f"{outcome.base_scores.wer:.3f}", f"{outcome.base_scores.cer:.3f}"
        )
    table.add_row(model, f"{outcome.scores.wer:.3f}", f"{outcome.scores.cer:.3f}")
    console = Console()
    console.print(table)
    for name, path in outcome.files.items():
        console.print(f"{name}: {path}", highlight=False)
