"""``voxplug quickstart``: dataset, tiny model, LoRA training, WER, local publish: one command, CPU, minutes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from voxplug.quickstart import QuickstartResult


def register(app: typer.Typer) -> None:
    """Add the ``quickstart`` command to ``app``."""
    app.command("quickstart")(quickstart)


def quickstart(
    out: Path = typer.Option(Path("voxplug-quickstart"), "--out", "-o", help="Folder for everything it makes."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier quickstart folder."),
    model: str = typer.Option(
        "voxtral", "--model", "-m", help="The model family: voxtral, or voxtral-realtime (streaming)."
    ),
) -> None:
    """Fine-tune a tiny Voxtral on the bundled clips with LoRA on CPU, evaluate it and publish it locally."""
    from voxplug.plugins import get_plugin_host
    from voxplug.quickstart import run_quickstart

    typer.echo(f"voxplug quickstart: everything goes to {out.resolve()}")
    typer.echo(report(run_quickstart(out, host=get_plugin_host(), force=force, model=model)))


def report(result: QuickstartResult) -> str:
    """What the quickstart made and measured, one line each."""
    run, clips = result.run, result.training_clips
    comparison = clips.comparison or {}
    base_wer = comparison.get("base_metrics", {}).get("wer")
    lines = [
        "",
        f"dataset:         {result.dataset_dir}",
        f"base model:      {result.base_model_dir} (tiny, random weights)",
        f"run folder:      {run.run_dir} (train.log, curves.png, train_results.json, eval_results.json)",
        f"fine-tuned:      {run.model_dir} ({'LoRA adapter' if 'adapter' in run.saved else 'full model'} + processor)",
    ]
    if run.published is not None:
        lines.append(f"published:       {run.published.destination} (laid out as a Hub repo)")
    lines.append(
        f"WER on the {clips.scores.samples} training clips: {clips.scores.wer:.3f}"
        + (f" (base model: {base_wer:.3f})" if base_wer is not None else "")
        + f"; details in {clips.out_dir}"
    )
    if "eval_wer" in run.eval_results:
        lines.append(
            f"WER on {run.eval_results['eval_samples']} held-out clips: {run.eval_results['eval_wer']:.3f} "
            "(a tiny random model memorises clips; it cannot learn English from 20 sentences)"
        )
    return "\n".join(lines)
