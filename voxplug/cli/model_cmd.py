"""``voxplug model tiny OUT``: write a tiny random offline checkpoint of a model family (tests, quickstart)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``model`` command group to ``app``."""
    group = typer.Typer(help="Model utilities.", no_args_is_help=True)
    group.command("tiny")(tiny)
    _add_plugin_commands(group)
    app.add_typer(group, name="model")


def _add_plugin_commands(group: typer.Typer) -> None:
    """Model commands that ship in plugins (``import-ct2`` from the whisper plugin), until a hook adds them."""
    try:
        from voxplug_whisper.cli import register_model_commands
    except ImportError:
        return
    register_model_commands(group)


def tiny(
    out: Path = typer.Argument(..., help="Folder to write the checkpoint (model + processor) to."),
    family: str = typer.Option("voxtral", "--family", help="Model family to build."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    """Write a tiny random checkpoint with the family's real processor; it loads like a Hub checkpoint."""
    from voxplug.plugins import get_plugin_host

    family_class = get_plugin_host().extension("model family", family)
    path = family_class().build_tiny(out, seed=seed)
    typer.echo(f"tiny {family} checkpoint written to {path}")
