"""``voxplug train``: fine-tune a model from a run config, in one process or under ``accelerate launch``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from voxplug.cli.options import CONFIG_OPTION, NO_LOCAL_PLUGINS_OPTION, OVERRIDES_ARGUMENT

if TYPE_CHECKING:
    from voxplug.training.run import RunResult


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train")(train)


def train(
    config: list[str] = CONFIG_OPTION,
    overrides: list[str] = OVERRIDES_ARGUMENT,
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the run folder."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Print log lines instead of a progress bar."),
    no_local_plugins: bool = NO_LOCAL_PLUGINS_OPTION,
    allow_dropped: bool = typer.Option(
        False,
        "--allow-dropped",
        help="Train even when more than data.max_dropped_share of the rows cannot be used (they are listed first).",
    ),
) -> None:
    """Fine-tune a model: `voxplug train -c my-run.yaml training.epochs=5`.

    For several GPUs (DDP or DeepSpeed) start it with accelerate:
    `accelerate launch --config_file configs/accelerate/multi-gpu.yaml -m voxplug train -c my-run.yaml`.
    """
    from voxplug.cli.options import load_run_config
    from voxplug.plugins import get_plugin_host
    from voxplug.training.processes import is_main_process
    from voxplug.training.run import train as run_training

    allowed = ["data.max_dropped_share=1"] if allow_dropped else []
    run_config, options = load_run_config(config, [*(overrides or []), *allowed], no_local_plugins=no_local_plugins)
    progress = "lines" if no_progress else "auto"
    result = run_training(run_config, host=get_plugin_host(), options=options, resume=resume, progress=progress)
    if is_main_process():
        typer.echo(summary_lines(result))


def summary_lines(result: RunResult) -> str:
    """Where the run's outputs are and its final metrics, as a few lines for the terminal."""
    metrics = result.eval_results
    lines = [f"run folder: {result.run_dir}", f"model:      {result.model_dir}"]
    if "merged" in result.saved:
        lines.append(f"merged:     {result.saved['merged']}")
    if metrics.get("kept_because"):
        lines.append(f"kept:       {metrics['kept_because']}")
    if "eval_wer" in metrics:
        lines.append(
            f"eval WER {metrics['eval_wer']:.3f}  CER {metrics['eval_cer']:.3f} on {metrics['eval_samples']} clips "
            f"(the kept model, step {metrics['step']})"
        )
    if result.published is not None:
        lines.append(f"published:  {result.published.url or result.published.destination}")
    return "\n".join(lines)
